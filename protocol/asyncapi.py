"""Generates the AsyncAPI 3 document of protocol v1 from `protocol.messages`.

    python -m protocol.asyncapi > protocol/asyncapi.json

A test fails when the committed document drifts from the types.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from protocol import PROTOCOL_VERSION
from protocol.errors import CLOSE_CODES, ERRORS, REJECTIONS
from protocol.messages import CLIENT_TYPES, SERVER_TYPES, Field, MessageType
from protocol.schema import AMOUNT_MAX, ASSET_PATTERN, DEFAULT_LENGTH, ID_PATTERN, REQUEST_ID_PATTERN

# patterns the Rules above the tables describe once (ids, assets): not repeated per field
RULES_PATTERNS = frozenset({ID_PATTERN, REQUEST_ID_PATTERN, ASSET_PATTERN})
SHOWN_PATTERN_MAX = 40  # a longer pattern is left to asyncapi.json (its field says the form)


def _schema(f: Field) -> dict[str, Any]:
    s: dict[str, Any] = {"description": f.doc}
    if f.kind == "str":
        s["type"] = "string"
        s["maxLength"] = f.max_length
        if f.pattern:
            s["pattern"] = f.pattern
        if f.enum:
            s["enum"] = list(f.enum)
    elif f.kind == "int":
        s["type"] = "integer"
        if f.minimum is not None:
            s["minimum"] = f.minimum
        if f.maximum is not None:
            s["maximum"] = f.maximum
    elif f.kind == "bool":
        s["type"] = "boolean"
    elif f.kind == "object":
        s["type"] = "object"
    elif f.kind == "objects":
        s["type"] = "array"
        s["items"] = {"type": "object"}
        s["maxItems"] = f.max_length
    elif f.kind in ("strs", "ints"):
        item = Field(f.name, "str" if f.kind == "strs" else "int", "", True, f.pattern,
                     f.minimum, f.maximum, f.enum)
        s["type"] = "array"
        s["items"] = {k: v for k, v in _schema(item).items() if k != "description"}
        s["maxItems"] = f.max_length
    else:
        s["type"] = "object"
        s["additionalProperties"] = {"type": "integer"}
    return s


def _message(t: MessageType) -> dict[str, Any]:
    props = {"type": {"const": t.name}} | {f.name: _schema(f) for f in t.fields}
    return {
        "name": t.name,
        "summary": t.doc,
        "payload": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type"] + [f.name for f in t.fields if f.required],
            "properties": props,
        },
    }


def _key(name: str) -> str:
    return name.replace(".", "_")


def generate() -> dict[str, Any]:
    messages = {_key(t.name): _message(t) for t in CLIENT_TYPES + SERVER_TYPES}

    def refs(types: tuple[MessageType, ...]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/gifting/messages/{_key(t.name)}"} for t in types]

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "giftwire",
            "version": str(PROTOCOL_VERSION),
            "description": "Real-time gifting over WebSocket: JSON text frames, one object each.",
        },
        "servers": {"local": {"host": "127.0.0.1:8700", "protocol": "ws", "pathname": "/ws"}},
        "channels": {
            "gifting": {
                "address": "/ws",
                "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in messages},
            }
        },
        "operations": {
            "request": {"action": "receive", "channel": {"$ref": "#/channels/gifting"},
                        "summary": "client → server", "messages": refs(CLIENT_TYPES)},
            "push": {"action": "send", "channel": {"$ref": "#/channels/gifting"},
                     "summary": "server → client", "messages": refs(SERVER_TYPES)},
        },
        "components": {
            "messages": messages,
            "x-error-codes": {c.code: {"message": c.message, "temporary": c.temporary}
                              for c in ERRORS.values()},
            "x-rejection-codes": {c.code: {"message": c.message, "temporary": c.temporary}
                                  for c in REJECTIONS.values()},
            "x-close-codes": {str(c.code): {"reason": c.reason, "reconnect": c.reconnect,
                                            "message": c.message}
                              for c in CLOSE_CODES.values()},
        },
    }


def _bounds(f: Field) -> str:
    """A client field's bounds as the decoder checks them, e.g. ` (1–1,000)`: ids and
    amounts are bounded by the Rules (their pattern, the bound on every amount)."""

    def num(n: int) -> str:
        return f"{n:,}"

    out = []
    if f.kind in ("int", "ints") and f.minimum is not None:
        if f.maximum is None or f.maximum >= AMOUNT_MAX:
            out.append(f"≥ {num(f.minimum)}")
        else:
            out.append(f"{num(f.minimum)}–{num(f.maximum)}")
    if f.kind in ("ints", "strs", "objects"):
        out.append(f"≤ {num(f.max_length)} items")
    elif f.kind == "str" and not f.enum:
        if f.pattern is not None and f.pattern not in RULES_PATTERNS and len(f.pattern) <= SHOWN_PATTERN_MAX:
            out.append(f"`{f.pattern}`")  # a short form of its own: said here
        if f.max_length != DEFAULT_LENGTH and f.pattern not in RULES_PATTERNS:
            out.append(f"≤ {num(f.max_length)} characters")
    return f" ({', '.join(out)})" if out else ""


def type_tables() -> str:
    """The message tables of protocol/README.md, from the catalogue (a test keeps them equal)."""

    def row(t: MessageType) -> str:
        fields = ", ".join(f"`{f.name}`" + ("" if f.required else "?")
                           + (_bounds(f) if t.direction == "client" else "") for f in t.fields)
        return f"| `{t.name}` | {fields} | {t.doc} |"

    out = []
    for title, types in (("Client → server", CLIENT_TYPES), ("Server → client", SERVER_TYPES)):
        out += [f"### {title}", "", "| type | fields (? = optional) | meaning |", "| --- | --- | --- |"]
        out += [row(t) for t in types]
        out.append("")
    return "\n".join(out)


def code_tables() -> str:
    """The error, rejection and close code tables of protocol/README.md (a test keeps the
    README equal to this)."""

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    out = ["### Error codes (`error.code`; the connection stays open)", "",
           "The `message` column is each code's general meaning. The `message` a frame carries "
           "is for people and may be more specific (the field, the limit, the type it saw: "
           "`gift.send needs 'gift_id'`, `frame is larger than 4096 bytes`): match on `code` "
           "and `temporary`, never on `message`.", "",
           "| code | temporary | message |", "| --- | --- | --- |"]
    out += [f"| `{c.code}` | {yes(c.temporary)} | {c.message} |" for c in ERRORS.values()]
    out += ["", "### Rejection codes (`gift.rejected.code`)", "",
            "| code | temporary | message |", "| --- | --- | --- |"]
    out += [f"| `{c.code}` | {yes(c.temporary)} | {c.message} |" for c in REJECTIONS.values()]
    out += ["", "### Close codes", "",
            "Every code the server can close with (and 1006, which clients see when a "
            "connection drops, and those a proxy in front of the gateway may send: 1001, "
            "1005, 1013, 1014). Clients should follow the reconnect advice (`protocol/client.py` "
            "does with `auto_reconnect=True`, the JavaScript client by default) and treat a "
            "code not listed here as final. Both reconnect at once after a connection that was "
            "up a while, then back off; a connection lost within 5 s of its `welcome` counts as "
            "a failed attempt, so a server that closes each one at once is not redialled in a "
            "tight loop. The gateway's own closes (4000–4013) carry the table's reason as their "
            "close frame's text, and its 1007 and 1011 say `invalid UTF-8` and `unavailable`; "
            "those of the WebSocket layer beneath it (1002, 1009, 1011 for a missed pong, 1012) "
            "carry that layer's own text, "
            "or none. A client that closes first gets its own code echoed back, as RFC 6455 "
            "asks, whatever it is.", "",
            "| code | reason | reconnect? | when |", "| --- | --- | --- | --- |"]
    out += [f"| {c.code} | `{c.reason}` | {yes(c.reconnect)} | {c.message} |"
            for c in sorted(CLOSE_CODES.values(), key=lambda c: c.code)]
    return "\n".join(out) + "\n"


def render() -> bytes:
    return orjson.dumps(generate(), option=orjson.OPT_INDENT_2) + b"\n"


if __name__ == "__main__":  # `--tables`: the README's code tables instead
    if sys.argv[1:] == ["--tables"]:
        sys.stdout.write(type_tables() + "\n" + code_tables())
        raise SystemExit(0)
    sys.stdout.buffer.write(render())
