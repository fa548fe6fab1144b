"""One authenticated WebSocket: a bounded send queue and the requests awaiting replies.

Events for the user arrive from the hub. When an event answers a request this
connection made (same transfer id, a reply type for that request), the
request's `id` is attached, so the client can match it.

An idle connection costs no task: the writer task exists only while frames are
queued, and the queue and the pending map are created on first use.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import orjson

from server.metrics import FRAMES_OUT

log = logging.getLogger("giftwire.gateway")

# which event types answer which request kind
REPLY_TYPES = {
    "send": frozenset({"gift.confirmed", "gift.rejected"}),
    "accept": frozenset({"gift.received", "gift.voided", "gift.rejected"}),
    "decline": frozenset({"gift.voided", "gift.rejected"}),
}


class Connection:
    __slots__ = ("_close", "_queue", "_queue_max_bytes", "_queued_bytes", "_send_text", "_tasks",
                 "_writing", "buffer", "closed", "id", "kick_reason", "pending", "pending_count",
                 "user")

    def __init__(self, conn_id: str, user: str, send_text: Callable[[str], Awaitable[None]],
                 close: Callable[[str], Awaitable[None]], queue_max_bytes: int) -> None:
        self.id = conn_id
        self.user = user
        self._send_text = send_text
        self._close = close
        self._queue: deque[str] | None = None
        self._queued_bytes = 0
        self._queue_max_bytes = queue_max_bytes
        self._tasks: set[asyncio.Task[None]] = set()
        # True from the moment a writer is spawned until it has seen the queue empty; a task's
        # own done-callback runs a loop iteration later, too late to tell a push to start one
        self._writing = False
        self.closed = False
        self.kick_reason = ""
        self.pending: dict[str, deque[tuple[str, str]]] = {}
        self.pending_count = 0
        # while the connection catches up from the log, live events wait here (bounded by
        # the send queue's byte limit, like any frame)
        self.buffer: list[str] | None = None

    # -- sending ----------------------------------------------------------
    def push(self, text: str) -> None:
        """Queue a frame; a client that lets the queue overflow is cut off."""
        if self.closed:
            return
        if self._queued_bytes + len(text) > self._queue_max_bytes:
            self.kick("slow_consumer")
            return
        if self._queue is None:
            self._queue = deque()
        self._queue.append(text)
        self._queued_bytes += len(text)
        if not self._writing:
            self._writing = True
            self._spawn(self._drain())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        queue = self._queue
        try:
            while queue and not self.closed:
                text = queue.popleft()
                self._queued_bytes -= len(text)
                await self._send_text(text)
                FRAMES_OUT.inc()
        except Exception:  # the socket went away; the endpoint notices and cleans up
            self.closed = True
        finally:
            self._writing = False

    def kick(self, reason: str) -> None:
        """Close the connection with `reason` (a close reason of protocol.errors)."""
        if not self.closed:
            log.info("closing connection %s of %s: %s", self.id, self.user, reason)
            self.closed = True
            self.kick_reason = reason
            self._spawn(self._close(reason))

    def close(self) -> None:
        self.closed = True
        for task in list(self._tasks):
            task.cancel()

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

    def start_buffering(self) -> None:
        self.buffer = []

    def go_live(self, after_seq: int) -> None:
        """Deliver what arrived while catching up, minus events at or before `after_seq`
        (the log already gave them, or they predate what the client asked for)."""
        buffered, self.buffer = self.buffer or [], None
        for event_json in buffered:
            seq = orjson.loads(event_json).get("seq")
            if seq is None or seq > after_seq:
                self.deliver(event_json)

    def deliver(self, event_json: str) -> None:
        """An event or reply for this user; attach the request id if it answers one."""
        if self.buffer is not None:
            self.buffer.append(event_json)
            if len(self.buffer) * 256 > self._queue_max_bytes:
                self.kick("slow_consumer")
            return
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
