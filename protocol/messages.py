"""Every message of protocol v1 and its strict codec. Pure: no I/O.

A frame is one JSON object with a `type`. Decoding refuses unknown types,
missing or undeclared fields, wrong types and out-of-range values, each with its
own error code (see `protocol.errors`), and recovers the request `id` when it
can so the error reply still reaches the right request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from protocol.errors import REJECTIONS

Kind = Literal["str", "int", "bool", "balances"]

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
TRANSFER_ID_PATTERN = r"^\$?[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_:$-]{1,80}$"
ASSET_PATTERN = r"^[a-z_]{1,24}(\.[a-z0-9_]{1,24})?$"
# Amounts stay far below 2**53: Lua numbers are doubles and cjson prints 14 digits.
AMOUNT_MAX = 10**12


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
    max_length: int = 4096


@dataclass(frozen=True)
class MessageType:
    name: str
    direction: Literal["client", "server"]
    doc: str
    fields: tuple[Field, ...] = field(default_factory=tuple)

    def field_map(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}


def _req_id(required: bool = True) -> Field:
    return Field(
        "id", "str", "client-chosen request id, echoed by the reply", required, REQUEST_ID_PATTERN
    )


def _user(name: str, doc: str) -> Field:
    return Field(name, "str", doc, pattern=ID_PATTERN)


_TID = Field("transfer_id", "str", "`<sender>:<gift_id>`, unique", pattern=TRANSFER_ID_PATTERN)
_GIFT_ID = Field("gift_id", "str", "sender-chosen gift id (idempotency key)", pattern=ID_PATTERN)
_ASSET = Field("asset", "str", "asset name, e.g. `note.do`", pattern=ASSET_PATTERN)
_COUNT = Field("count", "int", "cards the recipient gets", minimum=1, maximum=AMOUNT_MAX)
_ROOM = Field("room", "str", "live room the gift was sent in", False, ID_PATTERN)
_SEQ = Field("seq", "int", "per-user event sequence number", minimum=1)
_BALANCE = Field("balance", "int", "your balance of `asset` after this event", minimum=0)
_QUOTA = Field("quota_left", "int", "gifts you may still send today", minimum=0)

CLIENT_TYPES: tuple[MessageType, ...] = (
    MessageType(
        "auth",
        "client",
        "Authenticate (first message) unless the token was in the query string.",
        (
            _req_id(),
            Field("token", "str", "platform-signed token", max_length=512),
            Field("since", "int", "resume: the last event `seq` you saw", False, minimum=0),
        ),
    ),
    MessageType("ping", "client", "Liveness probe; answered by `pong`.", (_req_id(),)),
    MessageType(
        "gift.send",
        "client",
        "Send `count` cards of `asset` to `to`. Replied by `gift.confirmed` or `gift.rejected`.",
        (_req_id(), _GIFT_ID, _user("to", "recipient user id"), _ASSET, _COUNT, _ROOM),
    ),
    MessageType(
        "gift.accept",
        "client",
        "Accept a pending offer. Replied by `gift.received` or `gift.rejected` (e.g. "
        "`offer_expired` after the timeout, `offer_declined` after a decline).",
        (_req_id(), Field("offer_id", "str", "`transfer_id` of the offer", pattern=TRANSFER_ID_PATTERN)),
    ),
    MessageType(
        "gift.decline",
        "client",
        "Decline a pending offer. Replied by `gift.voided` or `gift.rejected` (e.g. "
        "`offer_accepted` when it was accepted first).",
        (_req_id(), Field("offer_id", "str", "`transfer_id` of the offer", pattern=TRANSFER_ID_PATTERN)),
    ),
    MessageType("balance.get", "client", "Read your balances. Replied by `balance`.", (_req_id(),)),
)

SERVER_TYPES: tuple[MessageType, ...] = (
    MessageType(
        "welcome",
        "server",
        "Authentication succeeded.",
        (
            _req_id(False),
            _user("user", "the authenticated user"),
            Field("protocol", "int", "protocol version", minimum=1),
            Field("server_time_ms", "int", "server clock, Unix ms", minimum=0),
            Field("seq", "int", "your latest event `seq`: live events continue from it", minimum=0),
            Field("recovered", "bool", "when resuming: true if every missed event follows, "
                  "false if the log no longer holds them (re-read your balances)", False),
        ),
    ),
    MessageType("pong", "server", "Reply to `ping`.", (_req_id(),)),
    MessageType(
        "error",
        "server",
        "A request was malformed or refused; the connection stays open.",
        (
            _req_id(False),
            Field("code", "str", "stable error code"),
            Field("message", "str", "human-readable explanation"),
            Field("temporary", "bool", "true when retrying later may succeed"),
        ),
    ),
    MessageType(
        "balance",
        "server",
        "Reply to `balance.get`.",
        (_req_id(), Field("balances", "balances", "asset → amount (absent means 0)")),
    ),
    MessageType(
        "gift.confirmed",
        "server",
        "To the sender: the gift settled (`delivery: instant`) or awaits the "
        "recipient's confirmation (`delivery: pending`).",
        (
            _req_id(False), _TID, _GIFT_ID, _user("to", "recipient"), _ASSET, _COUNT,
            Field("cost", "int", "cards debited (festival pricing, free quota)", minimum=0),
            Field("free", "int", "cards paid by the newcomer promotion", minimum=0),
            Field("delivery", "str", "instant or pending", enum=("instant", "pending")),
            _BALANCE, _QUOTA, _ROOM, _SEQ,
        ),
    ),
    MessageType(
        "gift.rejected",
        "server",
        "The gift (or offer action) was refused; nothing moved or all was refunded.",
        (
            _req_id(False), _TID, _GIFT_ID,
            Field("code", "str", "stable rejection code"),
            Field("message", "str", "human-readable explanation"),
            Field("temporary", "bool", "true when retrying later may succeed"),
            Field("balance", "int", "sender balance after any refund", False, minimum=0),
            Field("asset", "str", "asset of the gift", False, ASSET_PATTERN),
            Field("seq", "int", "per-user event sequence number", False, minimum=1),
        ),
    ),
    MessageType(
        "gift.received",
        "server",
        "To the recipient: cards were credited (instantly, or on accepting an offer).",
        (_req_id(False), _TID, _GIFT_ID, _user("from", "sender"), _ASSET, _COUNT, _ROOM,
         _BALANCE, _SEQ),
    ),
    MessageType(
        "gift.offer",
        "server",
        "To a recipient who confirms gifts: accept or decline before `expires_at_ms`.",
        (
            _TID, _GIFT_ID, _user("from", "sender"), _ASSET, _COUNT, _ROOM,
            Field("expires_at_ms", "int", "when the offer times out, Unix ms", minimum=0),
            Field("seq", "int", "sequence number of the event that offered it", minimum=1),
        ),
    ),
    MessageType(
        "gift.accepted",
        "server",
        "To the sender: the recipient accepted a pending gift.",
        (_TID, _GIFT_ID, _user("to", "recipient"), _ASSET, _COUNT, _SEQ),
    ),
    MessageType(
        "gift.voided",
        "server",
        "To both sides: a pending gift was declined or timed out; the sender got "
        "the cards and the daily quota back.",
        (
            _req_id(False), _TID, _GIFT_ID, _ASSET, _COUNT,
            Field("reason", "str", "declined or timeout", enum=("declined", "timeout")),
            Field("balance", "int", "your balance of `asset` now", False, minimum=0),
            Field("quota_left", "int", "sender only: gifts left today", False, minimum=0),
            _SEQ,
        ),
    ),
    MessageType(
        "balance.changed",
        "server",
        "A grant, revocation or reward changed your balance.",
        (
            _TID, _ASSET,
            Field("delta", "int", "signed change", minimum=-AMOUNT_MAX, maximum=AMOUNT_MAX),
            Field("reason", "str", "grant, revoke or mentor_reward",
                  enum=("grant", "revoke", "mentor_reward")),
            _BALANCE, _SEQ,
        ),
    ),
)

CLIENT = {t.name: t for t in CLIENT_TYPES}
SERVER = {t.name: t for t in SERVER_TYPES}
_PATTERNS: dict[str, re.Pattern[str]] = {}


@dataclass(frozen=True)
class DecodeError:
    code: str
    detail: str
    request_id: str | None = None


@dataclass(frozen=True)
class Decoded:
    type: str
    data: dict[str, Any]


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
    return None


def validate(obj: Any, types: dict[str, MessageType]) -> Decoded | DecodeError:
    """Check a parsed JSON value against the declared message types."""
    if not isinstance(obj, dict):
        return DecodeError("bad_json", "a frame must be a JSON object")
    rid = obj.get("id")
    request_id = rid if isinstance(rid, str) and _regex(REQUEST_ID_PATTERN).fullmatch(rid) else None
    name = obj.get("type")
    mtype = types.get(name) if isinstance(name, str) else None
    if mtype is None:
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


def decode_client(frame: str | bytes, max_bytes: int) -> Decoded | DecodeError:
    """Decode one client frame, refusing anything the schema does not declare."""
    # the limit is in bytes: a text frame of 4-byte characters is four times its length
    size = len(frame) if isinstance(frame, bytes) or len(frame) * 4 <= max_bytes \
        else len(frame.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return DecodeError("frame_too_large", f"frame is larger than {max_bytes} bytes")
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return DecodeError("bad_json", "frame is not valid JSON")
    return validate(obj, CLIENT)


def decode_server(frame: str | bytes) -> Decoded | DecodeError:
    """Decode one server frame strictly (clients and tests use this)."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return DecodeError("bad_json", "frame is not valid JSON")
    return validate(obj, SERVER)


def encode(type_: str, **fields: Any) -> bytes:
    """Encode a message; `None` fields are left out."""
    body: dict[str, Any] = {"type": type_}
    body.update((k, v) for k, v in fields.items() if v is not None)
    return orjson.dumps(body)


def rejection(tid: str, gift_id: str, code: str, request_id: str | None = None) -> str:
    """A `gift.rejected` reply that no Lua step emitted (checked at the gateway, or a replay
    conflict): the code's message and temporary flag come from `protocol.errors`."""
    r = REJECTIONS[code]
    return encode("gift.rejected", id=request_id, transfer_id=tid, gift_id=gift_id, code=code,
                  message=r.message, temporary=r.temporary).decode()
