"""One authenticated WebSocket: a bounded send queue and the requests awaiting replies.

Each request that goes to settlement gets a number on this connection; its stream
entry carries `<conn>/<n>` (the route), and the reply comes back addressed to it,
so a reply always describes the request it answers, whatever the interleaving.
Events carry the user's `seq`: a connection passes each seq on at most once (a
replay after a worker crash, a claim or a resume race is dropped here), and the
reply to a request is the event itself, with the request's `id`, not a copy.

An idle connection costs no task: the writer task exists only while frames are
queued, and the queue is created on first use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import orjson

from server.gateway.http_limits import prepared_text
from server.metrics import DUPLICATES_DROPPED, FRAMES_OUT

log = logging.getLogger("giftwire.gateway")

# held while catching up: (seq, request no or 0, event json), or (REPLY_ONLY, request no, frame)
Buffered = tuple[int, int, str]
REPLY_ONLY = -1  # a buffered `R` reply: not an event, it has no seq
BUFFERED_EVENT_BYTES = 256  # a typical event's size, to bound the catch-up buffer by bytes
# what a connection's own frames may put in its transport's buffer at once: asyncio's (and
# uvloop's) default high-water mark, where the awaiting path would have paused too
TRANSPORT_BUFFER_MAX = 64 * 1024


class Connection:
    __slots__ = ("_close", "_next_request", "_queue", "_queue_max_bytes", "_queued_bytes",
                 "_send_text", "_tasks", "_writing", "buffer", "channel", "channels", "closed", "device",
                 "held", "id", "ip", "kick_reason", "last_seq", "live", "on_gap", "pending",
                 "pending_since", "user", "write_prepared")

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
        # request no → the client's request id; numbers are ours, so two requests that share
        # a client id (or a gift id) still get one reply each
        self.pending: dict[int, str] = {}
        self.pending_since: dict[int, float] = {}  # request no → when it was sent (monotonic)
        self._next_request = 0
        self.last_seq = 0  # newest event seq passed on; older ones are never sent again
        # while the connection catches up from the log, live events wait here (bounded by
        # the send queue's byte limit, like any frame)
        self.buffer: list[Buffered] | None = None
        self.live = False  # the first catch-up is done (see go_live)
        self.held = False  # the hub lost its subscription: buffer until it catches us up
        self.channels: set[str] = set()  # the hub's channels this connection is on
        # the transport's own writer for frames serialized once for many (http_limits'
        # write_prepared), when the server offers it
        self.write_prepared: Callable[[bytes, int], bool] | None = None
        self.device = ""  # the token's device fingerprint (v2 tokens), for the risk engine
        self.channel = ""  # the partner app whose secret signed the token ("": the platform)
        # a user's events are numbered without gaps: an event past `last_seq + 1` means one
        # went missing live (around a slot move); the gateway fills it in from the log
        self.on_gap: Callable[[Connection], None] | None = None
        self.ip = ""  # the client's address (peers.client_address)

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
            if self.write_prepared is not None:
                asyncio.get_running_loop().call_soon(self._write_queued)
            else:
                self._spawn(self._drain())

    def _write_queued(self) -> None:
        """Everything queued by now, framed here and written in one system call: a gift's
        confirmations and received events come in bursts (a worker batch), and a frame
        through Starlette's send costs a task, the ASGI chain and a system call of its own.
        A transport that is paused or would hold over TRANSPORT_BUFFER_MAX falls back to the
        awaiting writer, which waits for it."""
        queue = self._queue
        if self.closed or not queue:
            self._writing = False
            return
        assert self.write_prepared is not None
        try:
            frames = b"".join(prepared_text(text.encode()) for text in queue)
            # only into a transport below its high-water mark: past it the awaiting writer
            # keeps the rest in the counted queue, so a client that does not read is cut off
            # at `_queue_max_bytes` queued, as before
            written = self.write_prepared(frames, TRANSPORT_BUFFER_MAX)
        except Exception:  # the socket went away; the endpoint notices and cleans up
            self.closed = True
            self._writing = False
            return
        if written:
            FRAMES_OUT.inc(len(queue))
            queue.clear()
            self._queued_bytes = 0
            self._writing = False
        else:
            self._spawn(self._drain())

    def push_shared(self, frame: bytes, text: str, max_bytes: int) -> bool:
        """An at-most-once frame shared by many connections (a room frame), as `frame`
        (`prepared_text`) and `text`: written straight to the socket when nothing of this
        connection waits before it, else queued like `push_droppable`. False: missed."""
        if self.closed:
            return False
        if not self._writing and self.write_prepared is not None:
            if self.write_prepared(frame, max_bytes):
                FRAMES_OUT.inc()
                return True
            return False
        return self.push_droppable(text, max_bytes)  # counted out when its writer sends it

    def push_droppable(self, text: str, max_bytes: int) -> bool:
        """Queue an at-most-once frame (a room frame) unless `max_bytes` are already queued:
        a slow viewer misses it (False) rather than being cut off or delaying its own events."""
        if self.closed or self._queued_bytes + len(text) > max_bytes:
            return False
        self.push(text)
        return True

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

    async def flushed(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until every queued frame is written: the replies to the
        frames before a close are owed, and the close frame must not overtake them."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        # polled, once per connection closed for abuse: an Event would cost every push
        while (self._writing or self._queue) and not self.closed \
                and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

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
    @property
    def pending_count(self) -> int:
        return len(self.pending)

    def expect(self, request_id: str) -> int:
        """Number a request whose reply comes through the hub; its route is `<conn id>/<n>`."""
        self._next_request += 1
        self.pending[self._next_request] = request_id
        self.pending_since[self._next_request] = time.monotonic()
        return self._next_request

    def forget(self, request_no: int) -> None:
        self.pending.pop(request_no, None)
        self.pending_since.pop(request_no, None)

    def expire(self, older_than: float, frame: Callable[[str], str]) -> int:
        """Answer the requests waiting since before `older_than` (monotonic) with `frame(id)`
        (a `timeout` error): each request still gets exactly one reply, and its slot is freed
        even when its answer was lost. A late answer is then dropped as already answered."""
        late = [n for n, since in self.pending_since.items() if since < older_than]
        for n in late:
            request_id = self.pending.pop(n)
            self.pending_since.pop(n)
            self.push(frame(request_id))
        return len(late)

    def start_buffering(self) -> None:
        self.buffer = []

    def go_live(self, after_seq: int) -> None:
        """Deliver what arrived while catching up, minus events at or before `after_seq`
        (the log already gave them, or they predate what the client asked for). A held
        connection keeps buffering: the hub's catch-up releases it."""
        self.live = True
        if self.held:
            self.last_seq = max(self.last_seq, after_seq)
            return
        self.resume([], after_seq)

    def resume(self, missed: list[Buffered], current: int) -> None:
        """Leave buffering: first the events the log gave (`missed`, in seq order, each the
        reply to its request if that still waits), then what arrived live meanwhile; every
        one at most once by seq."""
        buffered, self.buffer, self.held = self.buffer or [], None, False
        for seq, request_no, event_json in missed:
            self.event(seq, request_no, event_json)
        self.last_seq = max(self.last_seq, current)
        for seq, request_no, frame_json in buffered:
            if seq == REPLY_ONLY:
                self.reply(request_no, frame_json)
            else:
                self.event(seq, request_no, frame_json)

    def event(self, seq: int, request_no: int, event_json: str) -> None:
        """An event of this user; when `request_no` names a request of ours still waiting,
        the event is that request's reply."""
        if self.buffer is not None:
            self.buffer.append((seq, request_no, event_json))
            if len(self.buffer) * BUFFERED_EVENT_BYTES > self._queue_max_bytes:
                self.kick("slow_consumer")
            return
        if seq > self.last_seq + 1 and self.live and self.on_gap is not None:
            self.held = True  # buffer this and what follows until the log fills the gap
            self.buffer = [(seq, request_no, event_json)]
            self.on_gap(self)
            return
        if request_no and request_no in self.pending:
            self.last_seq = max(self.last_seq, seq)
            self._answer(request_no, event_json)
            return
        if seq <= self.last_seq:
            DUPLICATES_DROPPED.inc()  # already passed on (a replay, or the log gave it)
            return
        self.last_seq = seq
        self.push(event_json)

    def reply(self, request_no: int, frame_json: str) -> None:
        """A reply addressed to one request only; dropped when it was answered already
        (a step re-run after a crash answers again, and the first answer stands)."""
        if self.buffer is not None:
            self.buffer.append((REPLY_ONLY, request_no, frame_json))
        elif request_no in self.pending:
            self._answer(request_no, frame_json)
        else:
            DUPLICATES_DROPPED.inc()

    def _answer(self, request_no: int, frame_json: str) -> None:
        request_id = self.pending.pop(request_no)
        self.pending_since.pop(request_no, None)
        # every frame is a JSON object without an `id`, and request ids match
        # [A-Za-z0-9_.:-]: splice the id in rather than decode and encode the frame
        assert frame_json.startswith("{"), frame_json[:40]
        self.push('{"id":' + orjson.dumps(request_id).decode() + "," + frame_json[1:])

