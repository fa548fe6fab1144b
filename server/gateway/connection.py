"""One authenticated WebSocket: a bounded send queue and the requests awaiting replies.

Events for the user arrive from the hub. When an event answers a request this
connection made (same transfer id, a reply type for that request), the
request's `id` is attached, so the client can match it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import orjson

log = logging.getLogger("giftwire.gateway")

# which event types answer which request kind
REPLY_TYPES = {
    "send": frozenset({"gift.confirmed", "gift.rejected"}),
    "accept": frozenset({"gift.received", "gift.voided", "gift.rejected"}),
    "decline": frozenset({"gift.voided", "gift.rejected"}),
}


class Connection:
    def __init__(self, conn_id: str, user: str, send_text: Callable[[str], Awaitable[None]],
                 queue_max_bytes: int) -> None:
        self.id = conn_id
        self.user = user
        self._send_text = send_text
        self._queue: deque[str] = deque()
        self._queued_bytes = 0
        self._queue_max_bytes = queue_max_bytes
        self._wakeup = asyncio.Event()
        self.closed = False
        self.kicked = asyncio.Event()  # set when the server must close this connection
        self.kick_reason = ""
        self.pending: dict[str, deque[tuple[str, str]]] = {}
        self.pending_count = 0

    # -- sending ----------------------------------------------------------
    def push(self, text: str) -> None:
        """Queue a frame; a client that lets the queue overflow is cut off."""
        if self.closed:
            return
        if self._queued_bytes + len(text) > self._queue_max_bytes:
            self.kick("slow_consumer")
            return
        self._queue.append(text)
        self._queued_bytes += len(text)
        self._wakeup.set()

    async def writer(self) -> None:
        """Drain the queue into the socket until the connection closes."""
        while not self.closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue and not self.closed:
                text = self._queue.popleft()
                self._queued_bytes -= len(text)
                await self._send_text(text)

    def kick(self, reason: str) -> None:
        """Ask the endpoint to close with `reason` (a close reason of protocol.errors)."""
        if not self.kicked.is_set():
            self.closed = True
            self.kick_reason = reason
            self.kicked.set()
            self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    # -- request matching -------------------------------------------------
    def expect(self, tid: str, request_id: str, kind: str) -> None:
        self.pending.setdefault(tid, deque()).append((request_id, kind))
        self.pending_count += 1

    def forget(self, tid: str) -> None:
        waiting = self.pending.get(tid)
        if waiting:
            waiting.pop()
            self.pending_count -= 1
            if not waiting:
                del self.pending[tid]

    def deliver(self, event_json: str) -> None:
        """An event or reply for this user; attach the request id if it answers one."""
        if self.pending:
            event = orjson.loads(event_json)
            waiting = self.pending.get(event.get("transfer_id", ""))
            if waiting and event.get("type") in REPLY_TYPES[waiting[0][1]]:
                request_id, _ = waiting.popleft()
                self.pending_count -= 1
                if not waiting:
                    del self.pending[event["transfer_id"]]
                event["id"] = request_id
                event_json = orjson.dumps(event).decode()
        self.push(event_json)
