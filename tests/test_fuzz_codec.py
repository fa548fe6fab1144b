"""Property-based tests of the strict codec (`protocol.messages`), pure and fast.

Whatever a peer sends (arbitrary bytes, text or JSON), decoding never raises: it
returns a `Decoded` message or a `DecodeError` carrying a documented error code.
Frames one mutation away from a valid message get that mutation's specific code,
and valid messages round-trip through `encode`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ERRORS
from protocol.groups import NOT_BLANK
from protocol.messages import (
    CLIENT,
    CLIENT_TYPES,
    REQUEST_ID_PATTERN,
    SERVER,
    SERVER_TYPES,
    Decoded,
    DecodeError,
    Field,
    MessageType,
    decode_client,
    decode_server,
    encode,
)

MAX = 4096
BIG = 1 << 20  # a frame limit no generated frame reaches, for tests about content
FAST = settings(max_examples=200, deadline=None, derandomize=True, database=None)
SLOW = settings(max_examples=150, deadline=None, derandomize=True, database=None)
MUTATION = settings(max_examples=60, deadline=None, derandomize=True, database=None)
# Regression tests for two bugs this file found (a trailing newline passed every pattern; text
# frames were measured in characters, not bytes).
REGRESSION = settings(max_examples=50, deadline=None, derandomize=True, database=None)

Result = Decoded | DecodeError
Decoder = Callable[[str | bytes], Result]
DECODERS: dict[str, tuple[Decoder, tuple[MessageType, ...], dict[str, MessageType]]] = {
    "client": (lambda frame: decode_client(frame, BIG), CLIENT_TYPES, CLIENT),
    "server": (decode_server, SERVER_TYPES, SERVER),
}
ALL_TYPES = (*CLIENT_TYPES, *SERVER_TYPES)
TYPE_NAMES = sorted({t.name for t in ALL_TYPES})
FIELD_NAMES = sorted({f.name for t in ALL_TYPES for f in t.fields} | {"type"})
# Characters outside every pattern's classes: inserting one always breaks the pattern.
FOREIGN = " /#!@é\x00\t\u2028😀"


def valid_request_id(value: object) -> bool:
    """Whether `value` is a request id the protocol accepts (the whole string matches)."""
    return isinstance(value, str) and re.fullmatch(REQUEST_ID_PATTERN, value) is not None


# ---------------------------------------------------------------- arbitrary JSON

def _leaves(finite: bool = False) -> st.SearchStrategy[Any]:
    """JSON scalars; `finite` leaves out nan and ±inf, and raw surrogates (for strict frames)."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([2**53 + 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**63) - 1, -(2**70), 10**12 + 1]),
        # nan and ±inf are written as NaN/Infinity, which strict JSON refuses
        st.floats(allow_nan=not finite, allow_infinity=not finite),
        # lone surrogates included: escaped, or raw in text frames
        st.text(st.characters(codec="utf-8") if finite else st.characters(), max_size=12),
        st.sampled_from([*TYPE_NAMES, "r1", "bob", "note.do", "bob:g1", ""]),
    )


JSON: st.SearchStrategy[Any] = st.recursive(
    _leaves(),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), children, max_size=6),
    ),
    max_leaves=20,
)


# ---------------------------------------------------------------- valid, almost valid, shaped

UNICODE = st.characters(codec="utf-8")  # no lone surrogates: orjson cannot encode them


def valid_value(f: Field) -> st.SearchStrategy[Any]:
    """Values the schema accepts for `f`."""
    if f.kind == "bool":
        return st.booleans()
    if f.kind == "balances":
        return st.dictionaries(st.text(UNICODE, max_size=8), st.integers(-(2**63), 2**63 - 1), max_size=4)
    if f.kind == "object":
        return st.dictionaries(st.text(UNICODE, max_size=8), st.integers(-10, 10), max_size=3)
    if f.kind == "objects":
        return st.lists(st.dictionaries(st.text(UNICODE, max_size=8), st.integers(-10, 10),
                                        max_size=3), max_size=min(3, f.max_length))
    if f.kind in ("strs", "ints"):
        item = Field(f.name, "str" if f.kind == "strs" else "int", "", True, f.pattern,
                     f.minimum, f.maximum, f.enum)
        return st.lists(valid_value(item), max_size=min(3, f.max_length))
    if f.kind == "int":
        lo = f.minimum if f.minimum is not None else -(2**63)
        hi = f.maximum if f.maximum is not None else (2**64 - 1 if lo >= 0 else 2**63 - 1)
        return st.integers(lo, hi)
    if f.enum:
        return st.sampled_from(f.enum)
    if f.pattern:
        return st.from_regex(f.pattern, fullmatch=True)
    return st.text(UNICODE, max_size=f.max_length)


def wrong_type(f: Field) -> st.SearchStrategy[Any]:
    """Values of the wrong JSON type for `f` (bools are not ints, 2.0 is not an int)."""
    containers = st.lists(st.integers(), max_size=2) | st.dictionaries(
        st.text(max_size=3), st.none(), max_size=2)
    floats = st.floats(allow_nan=False, allow_infinity=False)
    text = st.text(UNICODE, max_size=8)
    if f.kind == "str":
        return st.none() | st.booleans() | st.integers() | floats | containers
    if f.kind == "int":
        return st.none() | st.booleans() | floats | text | containers
    if f.kind == "bool":
        return st.none() | st.integers() | floats | text | containers
    if f.kind == "object":
        return st.none() | st.booleans() | st.integers() | floats | text | st.lists(st.integers(), max_size=2)
    if f.kind == "objects":
        return (st.none() | st.booleans() | st.integers() | text
                | st.dictionaries(text, st.integers(), max_size=2)
                | st.lists(st.integers(), min_size=1, max_size=2))
    if f.kind == "strs":
        return (st.none() | st.booleans() | st.integers() | text
                | st.lists(st.integers() | st.none(), min_size=1, max_size=2))
    if f.kind == "ints":
        return (st.none() | st.booleans() | st.integers() | text
                | st.lists(text | st.none() | floats | st.booleans(), min_size=1, max_size=2))
    bad_amount = st.none() | st.booleans() | floats | text
    return (st.none() | st.booleans() | st.integers() | text | st.lists(st.integers(), max_size=2)
            | st.dictionaries(text, bad_amount, min_size=1, max_size=3))


def out_of_range(f: Field) -> st.SearchStrategy[int] | None:
    """Integers outside `f`'s bounds (huge ones included), or None when it is unbounded."""
    options = []
    if f.minimum is not None:
        options.append(st.integers(max_value=f.minimum - 1) | st.just(-(2**70)))
    if f.maximum is not None:
        options.append(st.integers(min_value=f.maximum + 1) | st.just(2**70))
    return st.one_of(options) if options else None


@st.composite
def broken_string(draw: st.DrawFn, f: Field) -> str:
    """A string `f` refuses: outside the pattern or enum, or longer than its limit."""
    if not (f.pattern or f.enum):
        unit = draw(st.text(UNICODE, min_size=1, max_size=3))
        return unit * (f.max_length // len(unit) + 1)
    if f.pattern == NOT_BLANK:  # free text: only blank or too long is refused
        return draw(st.sampled_from(["", " \n\t", "x" * (f.max_length + 1)]))
    good = draw(valid_value(f))
    how = draw(st.sampled_from(["empty", "foreign", "long"]))
    if how == "empty":
        return ""
    if how == "long":
        return "a" * 200  # longer than any pattern or enum allows, and no ':' for transfer ids
    at = draw(st.integers(0, len(good)))
    return f"{good[:at]}{draw(st.sampled_from(FOREIGN))}{good[at:]}"


@st.composite
def valid_message(draw: st.DrawFn, mtype: MessageType) -> dict[str, Any]:
    """A message of `mtype` the schema accepts, optional fields present or not."""
    msg: dict[str, Any] = {"type": mtype.name}
    for f in mtype.fields:
        if f.required or draw(st.booleans()):
            msg[f.name] = draw(valid_value(f))
    return msg


def _small_json(finite: bool) -> st.SearchStrategy[Any]:
    return st.recursive(_leaves(finite), lambda children: st.lists(children, max_size=2) | st.dictionaries(
        st.text(UNICODE, max_size=3), children, max_size=2), max_leaves=4)


SMALL_JSON = _small_json(finite=False)
FINITE_JSON = _small_json(finite=True)  # what the strict encoder in `dumps` accepts


@st.composite
def objects(draw: st.DrawFn, types: tuple[MessageType, ...]) -> dict[str, Any]:
    """A JSON object shaped like one of `types`: each field absent, valid or junk, sometimes extras."""
    mtype = draw(st.sampled_from(types))
    obj: dict[str, Any] = {}
    how = draw(st.sampled_from(["name"] * 6 + ["other", "junk", "absent"]))
    if how != "absent":
        names = {"name": st.just(mtype.name), "other": st.sampled_from(TYPE_NAMES), "junk": SMALL_JSON}
        obj["type"] = draw(names[how])
    for f in mtype.fields:
        how = draw(st.sampled_from(["valid"] * 6 + ["junk", "absent"]))
        if how != "absent":
            obj[f.name] = draw(valid_value(f)) if how == "valid" else draw(SMALL_JSON)
    if draw(st.integers(0, 7)) == 0:
        obj.update(draw(st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), SMALL_JSON,
                                        max_size=2)))
    return obj


# ---------------------------------------------------------------- never raises

@st.composite
def frames_of(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> tuple[Any, str | bytes]:
    """A JSON value and a frame carrying it: text or bytes, ASCII-escaped or raw UTF-8."""
    value = draw(values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        return value, text
    return value, text.encode("utf-8", "surrogatepass")  # raw surrogates: invalid UTF-8


def check_result(out: object, frame: str | bytes) -> None:
    """`out` is a Decoded or a documented DecodeError; a parsed object's valid id is echoed."""
    assert isinstance(out, Decoded | DecodeError)
    if isinstance(out, Decoded):
        return
    assert out.code in ERRORS, out
    assert isinstance(out.detail, str) and out.detail.strip(), out
    try:
        parsed = orjson.loads(frame)
    except orjson.JSONDecodeError:
        assert out.code in ("bad_json", "frame_too_large"), out
        try:  # (the standard library reads half a surrogate pair: its id is answered)
            lenient = json.loads(frame)
        except (ValueError, RecursionError):
            lenient = None
        rid = lenient.get("id") if isinstance(lenient, dict) else None
        assert out.request_id is None or (out.request_id == rid and valid_request_id(rid)), out
        return
    rid = parsed.get("id") if isinstance(parsed, dict) else None
    if out.code != "frame_too_large" and valid_request_id(rid):
        assert out.request_id == rid, out
    else:
        assert out.request_id is None or out.request_id == rid, out


@FAST
@given(frame=st.binary(max_size=64) | st.text(max_size=64))
def test_client_arbitrary_bytes_and_text_never_raise(frame: str | bytes) -> None:
    """decode_client turns arbitrary bytes or text into a documented result, never an exception."""
    check_result(decode_client(frame, MAX), frame)


@FAST
@given(frame=frames_of(JSON))
def test_client_arbitrary_json_never_raises(frame: tuple[Any, str | bytes]) -> None:
    """decode_client turns any JSON value (huge ints, nan, surrogates, nesting) into a documented result."""
    check_result(decode_client(frame[1], BIG), frame[1])


@FAST
@given(frame=frames_of(objects(CLIENT_TYPES)))
def test_client_arbitrary_objects_echo_request_id(frame: tuple[Any, str | bytes]) -> None:
    """For any message-shaped JSON object, an error reply carries the frame's valid request id."""
    check_result(decode_client(frame[1], BIG), frame[1])


@FAST
@given(frame=st.binary(max_size=64) | st.text(max_size=64) | frames_of(JSON).map(lambda p: p[1]))
def test_server_arbitrary_input_never_raises(frame: str | bytes) -> None:
    """decode_server turns arbitrary bytes, text or JSON into a documented result, never an exception."""
    check_result(decode_server(frame), frame)


@FAST
@given(frame=frames_of(objects(SERVER_TYPES)))
def test_server_arbitrary_objects_echo_request_id(frame: tuple[Any, str | bytes]) -> None:
    """decode_server also recovers a valid request id from any refused JSON object."""
    check_result(decode_server(frame[1]), frame[1])


# ---------------------------------------------------------------- valid and one mutation away

def dumps(obj: dict[str, Any], as_text: bool) -> str | bytes:
    """Serialize with the stdlib (it writes ints beyond 64 bits, which orjson refuses)."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    return text if as_text else text.encode()


WHOLE = Field("type", "str", "stands for the message as a whole")
MUTATIONS: dict[str, tuple[str, Callable[[MessageType], list[Field]]]] = {
    # name: (expected code, what of a message type it can break; [] when nothing)
    "drop_field": ("missing_field", lambda t: [f for f in t.fields if f.required]),
    "add_field": ("unknown_field", lambda t: [WHOLE]),
    "bad_type_name": ("unknown_type", lambda t: [WHOLE]),
    "no_type": ("unknown_type", lambda t: [WHOLE]),
    "wrong_type": ("bad_field", lambda t: list(t.fields)),
    "out_of_range": ("bad_field", lambda t: [f for f in t.fields if out_of_range(f) is not None]),
    "break_string": ("bad_field", lambda t: [f for f in t.fields if f.kind == "str"]),
}


@st.composite
def mutated(draw: st.DrawFn, direction: str, how: str) -> tuple[dict[str, Any], str]:
    """(frame object, what changed): a valid message of `direction` with one thing broken by `how`."""
    _, types, known = DECODERS[direction]
    applicable = MUTATIONS[how][1]
    mtype = draw(st.sampled_from([t for t in types if applicable(t)]))
    msg = draw(valid_message(mtype))
    f = draw(st.sampled_from(applicable(mtype)))
    if how == "drop_field":
        del msg[f.name]
    elif how == "add_field":
        fields = mtype.field_map()
        extra = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
        name = draw(extra.filter(lambda k: k != "type" and k not in fields))
        msg[name] = draw(FINITE_JSON)
        return msg, f"added {name!r}"
    elif how == "bad_type_name":
        msg["type"] = draw(st.sampled_from(TYPE_NAMES).filter(lambda n: n not in known)
                           | st.text(max_size=12).filter(lambda n: n not in known)
                           | FINITE_JSON.filter(lambda v: not isinstance(v, str)))
    elif how == "no_type":
        del msg["type"]
        return msg, "no type"
    elif how == "wrong_type":
        msg[f.name] = draw(wrong_type(f))
    elif how == "out_of_range":
        strategy = out_of_range(f)
        assert strategy is not None
        msg[f.name] = draw(strategy)
    else:
        msg[f.name] = draw(broken_string(f))
    return msg, f"{how} {f.name}"


@pytest.mark.parametrize("direction", ["client", "server"])
@SLOW
@given(data=st.data())
def test_valid_messages_decode_and_round_trip(direction: str, data: st.DataObject) -> None:
    """Every valid message decodes to its fields, and encode() of those decodes to the same."""
    decode, types, _ = DECODERS[direction]
    mtype = data.draw(st.sampled_from(types))
    msg = data.draw(valid_message(mtype))
    out = decode(dumps(msg, data.draw(st.booleans())))
    assert isinstance(out, Decoded)
    assert out == Decoded(mtype.name, {k: v for k, v in msg.items() if k != "type"})
    assert decode(encode(out.type, **out.data)) == out
    assert decode(encode(out.type, **out.data).decode()) == out


@pytest.mark.parametrize("how", sorted(MUTATIONS))
@pytest.mark.parametrize("direction", ["client", "server"])
@MUTATION
@given(data=st.data())
def test_almost_valid_messages_get_their_code(direction: str, how: str, data: st.DataObject) -> None:
    """One mutation of a valid message yields that mutation's documented code, never Decoded."""
    decode = DECODERS[direction][0]
    code = MUTATIONS[how][0]
    msg, what = data.draw(mutated(direction, how))
    out = decode(dumps(msg, data.draw(st.booleans())))
    assert isinstance(out, DecodeError), (what, msg, out)
    assert out.code == code and code in ERRORS, (what, msg, out)
    assert out.detail, (what, out)
    rid = msg.get("id")
    assert out.request_id == (rid if valid_request_id(rid) else None), (what, msg, out)


@REGRESSION
@given(data=st.data())
def test_trailing_newline_breaks_the_pattern(data: st.DataObject) -> None:
    """A pattern field with a trailing newline is refused, and such an id is not echoed."""
    mtype = data.draw(st.sampled_from([t for t in CLIENT_TYPES if any(f.pattern for f in t.fields)]))
    msg = data.draw(valid_message(mtype))
    f = data.draw(st.sampled_from([f for f in mtype.fields if f.pattern]))
    msg[f.name] = data.draw(valid_value(f)) + "\n"
    out = decode_client(dumps(msg, data.draw(st.booleans())), BIG)
    assert isinstance(out, DecodeError) and out.code == "bad_field", (msg, out)
    assert out.request_id is None or valid_request_id(out.request_id), (msg, out)


# ---------------------------------------------------------------- frame size

@FAST
@given(limit=st.integers(0, MAX), extra=st.integers(1, 64), head=st.binary(max_size=32) | st.just(b""),
       pad=st.sampled_from([b" ", b"\n", b"x", b"\xff", b"{"]), as_text=st.booleans())
def test_frames_over_the_limit_are_too_large(
    limit: int, extra: int, head: bytes, pad: bytes, as_text: bool
) -> None:
    """Any frame longer than max_bytes gets frame_too_large, whatever it contains."""
    raw = head.ljust(limit + extra, pad)
    out = decode_client(raw.decode("latin-1") if as_text else raw, limit)
    assert isinstance(out, DecodeError) and out.code == "frame_too_large", out
    assert out.detail and out.request_id is None


@SLOW
@given(data=st.data())
def test_valid_frames_at_the_limit_are_not_too_large(data: st.DataObject) -> None:
    """A valid frame padded to exactly max_bytes decodes; one byte more is too large."""
    mtype = data.draw(st.sampled_from(CLIENT_TYPES))
    frame = orjson.dumps(data.draw(valid_message(mtype)))
    limit = data.draw(st.integers(len(frame), len(frame) + 64))
    padded = frame.ljust(limit, b" ")
    assert isinstance(decode_client(padded, limit), Decoded)
    out = decode_client(padded + b" ", limit)
    assert isinstance(out, DecodeError) and out.code == "frame_too_large"


@REGRESSION
@given(wide=st.sampled_from(["é", "€", "😀"]), size=st.integers(64, 512), data=st.data())
def test_text_frames_are_measured_in_bytes(wide: str, size: int, data: st.DataObject) -> None:
    """A text frame whose UTF-8 encoding exceeds max_bytes is too large, even with fewer characters."""
    frame = orjson.dumps({"type": "auth", "id": "r1", "token": wide * size}).decode()
    limit = data.draw(st.integers(len(frame), len(frame.encode()) - 1))
    out = decode_client(frame, limit)
    assert isinstance(out, DecodeError) and out.code == "frame_too_large", (len(frame.encode()), limit, out)
