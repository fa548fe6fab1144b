"""The strict codec of protocol v1: how a message type is declared (`Field`,
`MessageType`) and how a frame is checked against declared types. Pure: no I/O,
and no message declarations (those live per subsystem and are gathered by
`protocol.messages`).

A frame is one JSON object with a `type`. Decoding refuses unknown types,
missing or undeclared fields, wrong types and out-of-range values, each with its
own error code (see `protocol.errors`), and recovers the request `id` when it
can so the error reply still reaches the right request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

# objects: a list of JSON objects; object: one JSON object
# strs / ints: a list of strings (each matching `pattern`) / of integers (each in
# [minimum, maximum]), at most `max_length` items
Kind = Literal["str", "int", "bool", "balances", "objects", "object", "strs", "ints"]

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# characters that show nothing: format characters (zero-width spaces and joiners, bidi marks,
# the BOM, the soft hyphen); text made only of them and spaces is blank (in `[...]`, with \s)
INVISIBLE = r"\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff"
# white space as Python's `\s` reads it, spelt so that an ECMAScript reader of the published
# patterns (asyncapi.json) agrees: its `\s` leaves out the separators \x1c-\x1f and NEL
SPACES = r"\s\x1c-\x1f\x85"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# (the part after the first colon holds up to two ids: an enterprise's `$ent:<enterprise>:<id>`)
TRANSFER_ID_PATTERN = r"^\$?[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_:$-]{1,160}$"
# an asset: a name (`popularity`), or a family and a member: `note.<kind>`, a creator's
# fan-club cards `small_card.<creator>` (a member may be any user id)
ASSET_PATTERN = r"^[a-z_]{1,24}(\.[A-Za-z0-9_-]{1,64})?$"
# Amounts stay far below 2**53: Lua numbers are doubles and cjson prints 14 digits.
FRAME_EVENTS_MAX = 1000  # events in one shared-channel frame (a room's or group's tick)
AMOUNT_MAX = 10**12
DEFAULT_LENGTH = 4096  # a field's length when it names none: the frame's own bound


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    doc: str
    required: bool = True
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    enum: tuple[str, ...] = ()
    max_length: int = DEFAULT_LENGTH


@dataclass(frozen=True)
class MessageType:
    name: str
    direction: Literal["client", "server"]
    doc: str
    fields: tuple[Field, ...] = field(default_factory=tuple)

    def field_map(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}


def req_id(required: bool = True) -> Field:
    """The request `id` field: a client request carries it, its reply echoes it."""
    return Field(
        "id", "str", "client-chosen request id, echoed by the reply", required, REQUEST_ID_PATTERN
    )


def user_field(name: str, doc: str) -> Field:
    """A field holding a user id."""
    return Field(name, "str", doc, pattern=ID_PATTERN)


@dataclass(frozen=True)
class DecodeError:
    code: str
    detail: str
    request_id: str | None = None


@dataclass(frozen=True)
class Decoded:
    type: str
    data: dict[str, Any]


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


def _check(f: Field, value: Any) -> str | None:
    """Why `value` is not valid for `f`, or None."""
    if f.kind == "str":
        if not isinstance(value, str):
            return f"{f.name} must be a string"
        if len(value) > f.max_length:
            return f"{f.name} is longer than {f.max_length}"
        if f.pattern and not _regex(f.pattern).fullmatch(value):  # `$` lets a final \n by
            return f"{f.name} must match {f.pattern}"
        if f.enum and value not in f.enum:
            return f"{f.name} must be one of {', '.join(f.enum)}"
    elif f.kind == "int":
        if isinstance(value, float) and value.is_integer() and abs(value) >= 2**64:
            value = int(value)  # a whole number past 64 bits (the JSON parser made it a float)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{f.name} must be an integer"
        if f.minimum is not None and value < f.minimum:
            return f"{f.name} must be >= {f.minimum}"
        if f.maximum is not None and value > f.maximum:
            return f"{f.name} must be <= {f.maximum}"
    elif f.kind == "bool":
        if not isinstance(value, bool):
            return f"{f.name} must be true or false"
    elif f.kind == "balances":
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in value.items()
        )
        if not ok:
            return f"{f.name} must map asset names to integers"
    elif f.kind == "object":
        if not isinstance(value, dict):
            return f"{f.name} must be an object"
    elif f.kind == "objects":
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            return f"{f.name} must be a list of objects"
        if len(value) > f.max_length:
            return f"{f.name} has more than {f.max_length} items"
    elif f.kind in ("strs", "ints"):
        if not isinstance(value, list):
            return f"{f.name} must be a list"
        if len(value) > f.max_length:
            return f"{f.name} has more than {f.max_length} items"
        item = Field(f.name + " item", "str" if f.kind == "strs" else "int", "", True, f.pattern,
                     f.minimum, f.maximum, f.enum)
        for x in value:
            problem = _check(item, x)
            if problem:
                return problem
    return None


def validate(obj: Any, types: Mapping[str, MessageType]) -> Decoded | DecodeError:
    """Check a parsed JSON value against the declared message types."""
    if not isinstance(obj, dict):
        return DecodeError("bad_json", "a frame must be a JSON object")
    request_id = _request_id(obj)
    name = obj.get("type")
    mtype = types.get(name) if isinstance(name, str) else None
    if mtype is None:
        if name is None:
            return DecodeError("unknown_type", "a message needs a `type`", request_id)
        return DecodeError("unknown_type", f"unknown message type {name!r}", request_id)
    fields = mtype.field_map()
    for key in obj:
        if key != "type" and key not in fields:
            return DecodeError("unknown_field", f"{name} has no field {key!r}", request_id)
    for f in mtype.fields:
        if f.name not in obj:
            if f.required:
                return DecodeError("missing_field", f"{name} needs {f.name!r}", request_id)
            continue
        problem = _check(f, obj[f.name])
        if problem:
            return DecodeError("bad_field", problem, request_id)
    data = {k: v for k, v in obj.items() if k != "type"}
    return Decoded(mtype.name, data)


def decode(frame: str | bytes, types: Mapping[str, MessageType],
           max_bytes: int | None) -> Decoded | DecodeError:
    """Parse one frame and validate it against `types`; `max_bytes=None` skips the size check."""
    if max_bytes is not None:
        # the limit is in bytes: a text frame of 4-byte characters is four times its length
        size = len(frame) if isinstance(frame, bytes) or len(frame) * 4 <= max_bytes \
            else len(frame.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            # (parsed only to answer its `id`: a client waiting on it is not left hanging;
            # the whole message is bounded by the WebSocket's own limit)
            return DecodeError("frame_too_large", f"frame is larger than {max_bytes} bytes",
                               _id_of(frame))
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        return _not_json(frame, "surrogate" in str(exc))
    return validate(obj, types)


def _request_id(obj: Any) -> str | None:
    rid = obj.get("id") if isinstance(obj, dict) else None
    return rid if isinstance(rid, str) and _regex(REQUEST_ID_PATTERN).fullmatch(rid) else None


def _id_of(frame: str | bytes) -> str | None:
    try:
        return _request_id(orjson.loads(frame))
    except orjson.JSONDecodeError:
        return None


def _not_json(frame: str | bytes, surrogate: bool) -> DecodeError:
    """Not JSON to orjson. A string escaping half a surrogate pair (`"\\ud800"`, not
    Unicode) is what the standard library still reads: said so, with the frame's `id`.
    Anything else (`NaN`, a number past a double, broken syntax) is plainly not JSON."""
    if surrogate:
        try:
            obj = json.loads(frame)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            return DecodeError("bad_json", "frame is not valid JSON: a string escapes half a "
                               "surrogate pair (\\ud800-\\udfff must come in pairs)",
                               _request_id(obj))
    return DecodeError("bad_json", "frame is not valid JSON")


def encode(type_: str, **fields: Any) -> bytes:
    """Encode a message; `None` fields are left out."""
    body: dict[str, Any] = {"type": type_}
    body.update((k, v) for k, v in fields.items() if v is not None)
    return orjson.dumps(body)
