"""python -m loadtest.codec_bench — what decoding + validating one client frame costs:
today's hand-written codec (`protocol.messages.decode_client`: orjson, then checks per
declared field) against msgspec Structs generated from the same declarations (a tagged
union on `type`, unknown fields forbidden, patterns, lengths and ranges as `msgspec.Meta`).

Reports µs per frame (best of several rounds, `time.perf_counter_ns`) for realistic
frames (gift.send, ping, balance.get) and malformed ones, and a mix; msgspec is timed
twice: to a Struct only, and to the `Decoded`/`DecodeError` the gateway consumes today.
It also decodes a set of edge frames with both and lists where the outcome (error code,
recovered request id, data) differs.

msgspec is not a dependency of giftwire: install it to run this (`pip install msgspec`);
without it only the hand-written codec is timed.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import operator
import re
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from protocol.messages import (
    CLIENT,
    REQUEST_ID_PATTERN,
    Decoded,
    DecodeError,
    Field,
    MessageType,
    decode_client,
)

MAX_BYTES = 4096  # the gateway's default `frame_max_bytes`
Decode = Callable[[str, int], Any]

GIFT = ('{"type":"gift.send","id":"r123456","gift_id":"g-1795376853-42","to":"u0000042",'
        '"asset":"note.do","count":1}')
FRAMES: dict[str, str] = {
    "gift.send": GIFT,
    "gift.send+room": GIFT[:-1] + ',"room":"room_42"}',
    "ping": '{"type":"ping","id":"r123457"}',
    "balance.get": '{"type":"balance.get","id":"r123458"}',
    "bad_json": '{"type":"gift.send","id":"r1",',
    "not_object": '["gift.send"]',
    "unknown_type": '{"type":"gift.sned","id":"r9"}',
    "unknown_field": GIFT[:-1] + ',"colour":"red"}',
    "missing_field": '{"type":"gift.send","id":"r10","gift_id":"g1","to":"u1","asset":"note.do"}',
    "bad_field:count": GIFT.replace('"count":1', '"count":0'),
    "bad_field:pattern": GIFT.replace('"note.do"', '"Note Do"'),
}
# gifts dominate a gateway's traffic; a few reads, pings and mistakes
MIX = (["gift.send"] * 80 + ["gift.send+room"] * 10 + ["ping"] * 4 + ["balance.get"] * 3
       + ["unknown_field", "bad_field:count", "bad_json"])
# frames where two honest codecs could disagree: the outcome of each is compared
EDGE: list[str] = [
    *FRAMES.values(),
    '{"type":"gift.send","id":"r1\\n","gift_id":"g1","to":"u1","asset":"note.do","count":1}',
    '{"type":"ping","id":"r1","id":"r2"}',
    '{"id":"r3","type":"ping"}',
    '{"type":5,"id":"r4"}',
    '{"id":"r5"}',
    '"ping"',
    '{"type":"ping","id":7}',
    '{"type":"ping","id":"bad id!"}',
    GIFT.replace('"count":1', '"count":true'),
    GIFT.replace('"count":1', '"count":1.0'),
    GIFT.replace('"count":1', '"count":18446744073709551616'),
    GIFT.replace('"count":1', '"count":1000000000001'),
    GIFT[:-1] + ',"room":null}',
    GIFT.replace('"count":1', '"count":0')[:-1] + ',"colour":"red"}',  # two faults
    '{"type":"gift.send","id":"r6","count":0}',  # missing fields and a bad one
    '{"type":"auth","id":"r7","token":"' + "t" * 600 + '"}',
    '{"type":"auth","id":"r8","token":"tok","since":-1}',
    '{"type":"room.wish","id":"r9","room":"x","open":1}',
    '{"type":"gift.send","id":"r1","gift_id":"g\u00e9","to":"u1","asset":"note.do","count":1}',
]


def _anchored(pattern: str) -> str:
    """msgspec matches a pattern with `re.search`, where `$` lets a final newline by: end
    it with `\\Z`, as the hand-written codec's `fullmatch` does."""
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern


class MsgspecCodec:
    """The client catalogue as msgspec Structs, built from the same `MessageType`s."""

    def __init__(self, ms: Any, types: Mapping[str, MessageType]) -> None:
        self.ms = ms
        structs = [self._struct(t) for t in types.values()]
        self.decoder = ms.json.Decoder(functools.reduce(operator.or_, structs))
        self.to_builtins = ms.to_builtins  # a dict with the tag, absent (UNSET) fields left out
        self.untyped = ms.json.Decoder()
        self.request_id = re.compile(REQUEST_ID_PATTERN)

    def _type(self, f: Field) -> Any:
        ms = self.ms
        annotated: Any = Annotated
        literal: Any = Literal
        if f.kind == "str":
            if f.enum:
                return literal[f.enum]
            meta: dict[str, Any] = {"max_length": f.max_length}
            if f.pattern:
                meta["pattern"] = _anchored(f.pattern)
            return annotated[str, ms.Meta(**meta)]
        if f.kind == "int":
            bounds = {k: v for k, v in (("ge", f.minimum), ("le", f.maximum)) if v is not None}
            return annotated[int, ms.Meta(**bounds)] if bounds else int
        if f.kind == "bool":
            return bool
        if f.kind == "balances":
            return dict[str, int]
        if f.kind == "object":
            return dict[str, Any]
        return annotated[list[dict[str, Any]], ms.Meta(max_length=f.max_length)]  # objects

    def _struct(self, t: MessageType) -> Any:
        ms = self.ms
        fields: list[Any] = []
        for f in t.fields:
            typ = self._type(f)
            fields.append((f.name, typ) if f.required else (f.name, typ | ms.UnsetType, ms.UNSET))
        name = "".join(p.title() for p in re.split(r"[._]", t.name))
        return ms.defstruct(name, fields, tag_field="type", tag=t.name, forbid_unknown_fields=True,
                            kw_only=True, frozen=True)

    def struct(self, frame: str, max_bytes: int) -> Any:
        """Decode and validate to a Struct; errors raise (the cheapest msgspec can do)."""
        if len(frame) * 4 > max_bytes and len(frame.encode("utf-8", "surrogatepass")) > max_bytes:
            raise ValueError("frame_too_large")
        return self.decoder.decode(frame)

    def decode(self, frame: str, max_bytes: int) -> Decoded | DecodeError:
        """As `decode_client`: a `Decoded` with the fields present, or the error code and
        the request id recovered by a second, untyped parse (on the error path only)."""
        if len(frame) * 4 > max_bytes and len(frame.encode("utf-8", "surrogatepass")) > max_bytes:
            return DecodeError("frame_too_large", f"frame is larger than {max_bytes} bytes")
        try:
            msg = self.decoder.decode(frame)
        except self.ms.ValidationError as e:
            return self._error(frame, str(e))
        except self.ms.DecodeError:
            return DecodeError("bad_json", "frame is not valid JSON")
        data = self.to_builtins(msg)
        return Decoded(data.pop("type"), data)

    def _error(self, frame: str, detail: str) -> DecodeError:
        obj = self.untyped.decode(frame)
        if not isinstance(obj, dict):
            return DecodeError("bad_json", "a frame must be a JSON object")
        rid = obj.get("id")
        request_id = rid if isinstance(rid, str) and self.request_id.fullmatch(rid) else None
        if "`$.type`" in detail or detail.endswith("required field `type`"):
            return DecodeError("unknown_type", detail, request_id)
        if "unknown field" in detail:
            return DecodeError("unknown_field", detail, request_id)
        if "missing required field" in detail:
            return DecodeError("missing_field", detail, request_id)
        return DecodeError("bad_field", detail, request_id)


def load_msgspec() -> Any | None:
    """msgspec if installed (it is not a giftwire dependency), else None."""
    try:
        return importlib.import_module("msgspec")
    except ImportError:
        return None


def time_per_frame(fn: Decode, frames: list[str], rounds: int, repeat: int) -> float:
    """µs per frame: the best of `rounds` runs of `repeat` passes over `frames`."""
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter_ns()
        for _ in range(repeat):
            for frame in frames:
                fn(frame, MAX_BYTES)
        best = min(best, (time.perf_counter_ns() - started) / (repeat * len(frames)))
    return best / 1000


def _safe(fn: Decode) -> Decode:
    def call(frame: str, max_bytes: int) -> Any:
        try:
            return fn(frame, max_bytes)
        except Exception as e:  # msgspec's Struct-only path raises on a bad frame
            return e
    return call


def outcome(result: Decoded | DecodeError) -> tuple[Any, ...]:
    if isinstance(result, Decoded):
        return ("ok", result.type, result.data)
    return (result.code, result.request_id)


def compare(codec: MsgspecCodec) -> list[str]:
    """The edge frames whose outcome differs between the two codecs."""
    out = []
    for frame in EDGE:
        a, b = outcome(decode_client(frame, MAX_BYTES)), outcome(codec.decode(frame, MAX_BYTES))
        if a != b:
            out.append(f"  {frame[:70]!s:72} hand-written {a[:2]}  msgspec {b[:2]}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.codec_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds; the best counts")
    p.add_argument("--repeat", type=int, default=20_000, help="passes over the frames per round")
    args = p.parse_args(argv)
    ms = load_msgspec()
    codec = MsgspecCodec(ms, CLIENT) if ms is not None else None
    if codec is None:
        print("msgspec is not installed (`pip install msgspec`): timing the hand-written codec only")
    cases = {name: [frame] for name, frame in FRAMES.items()}
    cases["mix (90% gifts)"] = [FRAMES[n] for n in MIX]
    head = f"{'frame':20} {'hand-written':>13}"
    if codec:
        head += f" {'msgspec Struct':>15} {'msgspec→Decoded':>16} {'ratio':>6}"
    print(f"µs per frame, best of {args.rounds} rounds\n{head}")
    for name, frames in cases.items():
        repeat = max(1, args.repeat // len(frames))
        hand = time_per_frame(decode_client, frames, args.rounds, repeat)
        line = f"{name:20} {hand:13.2f}"
        if codec:
            raw = time_per_frame(_safe(codec.struct), frames, args.rounds, repeat)
            full = time_per_frame(codec.decode, frames, args.rounds, repeat)
            line += f" {raw:15.2f} {full:16.2f} {hand / full:5.2f}×"
        print(line)
    if codec:
        diffs = compare(codec)
        print(f"\noutcome (error code, request id, data) on {len(EDGE)} edge frames: "
              f"{len(EDGE) - len(diffs)} agree" + (", these differ:" if diffs else ""))
        print("\n".join(diffs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
