"""The catalogue of protocol v1: every message type, gathered from the subsystem
modules, and the decoders bound to it. Pure: no I/O.

Each subsystem declares its messages in its own module (`CLIENT_TYPES` and
`SERVER_TYPES` tuples of `protocol.schema.MessageType`); a new subsystem is one
module appended to `SUBSYSTEMS`. The codec itself is `protocol.schema`; its names
are re-exported here so callers import one module.
"""

from __future__ import annotations

from typing import Protocol

from protocol import gifting, groups, notes, popularity, risk, rooms, session
from protocol.gifting import rejection
from protocol.schema import (
    AMOUNT_MAX,
    ASSET_PATTERN,
    ID_PATTERN,
    REQUEST_ID_PATTERN,
    TRANSFER_ID_PATTERN,
    Decoded,
    DecodeError,
    Field,
    Kind,
    MessageType,
    decode,
    encode,
    validate,
)

__all__ = [
    "AMOUNT_MAX",
    "ASSET_PATTERN",
    "CLIENT",
    "CLIENT_TYPES",
    "ID_PATTERN",
    "REQUEST_ID_PATTERN",
    "SERVER",
    "SERVER_TYPES",
    "SUBSYSTEMS",
    "TRANSFER_ID_PATTERN",
    "DecodeError",
    "Decoded",
    "Field",
    "Kind",
    "MessageType",
    "decode_client",
    "decode_server",
    "encode",
    "rejection",
    "validate",
]


class Subsystem(Protocol):
    """What a subsystem's protocol module declares."""

    CLIENT_TYPES: tuple[MessageType, ...]
    SERVER_TYPES: tuple[MessageType, ...]


# The one list of subsystems. Their order is the order of the types in the AsyncAPI
# document, so append new ones at the end.
SUBSYSTEMS: tuple[Subsystem, ...] = (session, gifting, rooms, groups, popularity, risk, notes)

CLIENT_TYPES: tuple[MessageType, ...] = tuple(t for s in SUBSYSTEMS for t in s.CLIENT_TYPES)
SERVER_TYPES: tuple[MessageType, ...] = tuple(t for s in SUBSYSTEMS for t in s.SERVER_TYPES)


def _index(types: tuple[MessageType, ...], direction: str) -> dict[str, MessageType]:
    """Name → type. Refuses, at import, a type declared twice (two subsystems picking the same
    name would otherwise shadow each other silently) or listed under the wrong direction."""
    out: dict[str, MessageType] = {}
    for t in types:
        if t.direction != direction:
            raise ValueError(f"message type {t.name!r} is a {t.direction} type among {direction} types")
        if t.name in out:
            raise ValueError(f"message type {t.name!r} is declared twice")
        out[t.name] = t
    return out


CLIENT = _index(CLIENT_TYPES, "client")
SERVER = _index(SERVER_TYPES, "server")
# one AsyncAPI components table holds both directions, so a name is unique across them too
if set(CLIENT) & set(SERVER):
    raise ValueError(f"message types in both directions: {sorted(set(CLIENT) & set(SERVER))}")


def decode_client(frame: str | bytes, max_bytes: int) -> Decoded | DecodeError:
    """Decode one client frame, refusing anything the schema does not declare."""
    return decode(frame, CLIENT, max_bytes)


def decode_server(frame: str | bytes) -> Decoded | DecodeError:
    """Decode one server frame strictly (clients and tests use this)."""
    return decode(frame, SERVER, None)
