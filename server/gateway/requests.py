"""Client message type → the gateway handler that serves it, with the reply types it
may get. Filled by each subsystem's `module.py`; a type the protocol declares but no
module handles is refused at start-up, and one a module handles but the protocol does
not declare too: nothing is routed to a default."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocol.messages import CLIENT, SERVER
from server.gateway.connection import Connection

if TYPE_CHECKING:
    from server.gateway.endpoint import Gateway

Handler = Callable[["Gateway", Connection, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class RequestKind:
    type: str
    handler: Handler
    replies: tuple[str, ...]


class Requests:
    def __init__(self) -> None:
        self._by_type: dict[str, RequestKind] = {}

    def add(self, type_: str, handler: Handler, replies: tuple[str, ...]) -> None:
        if type_ not in CLIENT:
            raise ValueError(f"{type_!r} is not a client message of the protocol")
        if type_ in self._by_type:
            raise ValueError(f"two handlers for {type_!r}")
        unknown = [r for r in replies if r not in SERVER]
        if unknown:
            raise ValueError(f"{type_!r} replies with undeclared types {unknown}")
        self._by_type[type_] = RequestKind(type_, handler, replies)

    def get(self, type_: str) -> RequestKind:
        return self._by_type[type_]

    def check_complete(self) -> None:
        missing = sorted(set(CLIENT) - set(self._by_type))
        if missing:
            raise ValueError(f"client messages no module handles: {missing}")

    def kinds(self) -> list[RequestKind]:
        return list(self._by_type.values())
