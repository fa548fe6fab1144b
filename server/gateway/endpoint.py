"""The WebSocket endpoint: authenticate, then read frames and route requests.

Malformed frames get an error reply and the connection stays open; only abuse
(more than `bad_frames_max` bad frames within `bad_frames_window_s`) closes it.
The user id always comes from the token, never from a frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from protocol import PROTOCOL_VERSION
from protocol.errors import CLOSE_CODES, ERRORS, close_code
from protocol.messages import Decoded, DecodeError, decode_client, encode
from server.clock import Clock
from server.config import Settings
from server.gateway.auth import TokenError, token_device, verify_signed
from server.gateway.broadcast import Broadcast
from server.gateway.connection import Connection
from server.gateway.http_limits import hold_handshake, prepared_writer
from server.gateway.hub import Hub
from server.gateway.peers import client_address, parse_trusted
from server.gateway.requests import Requests
from server.lifetime import stop_if_cancelled
from server.metrics import BACKLOG, DISCONNECTS, FRAMES_IN, GAPS_FILLED, HELD, REFUSED
from server.settlement import entries
from server.settlement.producer import StreamProducer
from server.store import keys
from server.store.pipeline import CLUSTER_MOVING, STORAGE_AWAY

SEQ_BEYOND = 2**63  # a `since` past any seq a log can reach

# the close codes the WebSocket layer sends by itself (the rest of RFC 6455's are a client's)
TRANSPORT_CLOSES = {c.code: c.reason for c in CLOSE_CODES.values()
                    if c.reason in ("invalid_utf8", "message_too_big")}

log = logging.getLogger("giftwire.gateway")
UNAVAILABLE_LOG_S = 10.0  # at most one line this often about connections closed for want of Redis
EXPIRE_CHECK_S = 1.0  # how often waiting requests are checked against request_timeout_s
DRAIN_TIMEOUT_S = 5.0  # a graceful stop waits this long for clients to take their close frame
FLUSH_BEFORE_CLOSE_S = 2.0  # an abuse close waits this long for the replies queued before it


def error_frame(code: str, request_id: str | None = None, detail: str | None = None) -> str:
    e = ERRORS[code]
    return encode("error", id=request_id, code=code, message=detail or e.message,
                  temporary=e.temporary).decode()


@dataclass
class BadFrames:
    """Counts bad frames in a sliding window to tell mistakes from abuse."""

    limit: int
    window_s: float
    count: int = 0
    since: float = 0.0

    def hit(self, now: float) -> bool:
        if now - self.since > self.window_s:
            self.since, self.count = now, 0
        self.count += 1
        return self.count > self.limit


@dataclass
class TokenBucket:
    """Requests per connection: `rate_per_s` sustained, bursts up to `burst`."""

    rate_per_s: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate_per_s)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Gateway:
    def __init__(self, redis: Any, hub: Hub, settings: Settings, token_secrets: dict[str, str],
                 requests: Requests, clock: Clock, rounds: Any = None) -> None:
        self.redis = redis
        self.hub = hub
        self.s = settings
        # channel → secret: "" the platform's, then partner apps' (Parts.token_secrets)
        self.secrets = token_secrets
        self.requests = requests
        self.clock = clock
        self.ext: dict[str, Any] = {}  # what modules keep per gateway (set by their setup)
        self.broadcast = Broadcast(hub, settings)  # shared channels: rooms, groups
        self.trusted_proxies = parse_trusted(settings.trusted_proxies)
        # set by modules: checks on a new connection (a close reason refuses it), and guards
        # on every request before its handler (an error code refuses it): in memory, so a
        # clean request costs no Redis call
        self.connect_checks: list[Callable[[Connection], Awaitable[str | None]]] = []
        # run for a user's channel after the hub followed it to its slot's new node: state a
        # module keeps from the channel's messages that are not in the log may have been
        # missed (a publish on the new node before the subscription got there)
        self.recover_hooks: list[Callable[[str], Awaitable[None]]] = []
        self.guards: list[Callable[[Connection, str, dict[str, Any]], str | None]] = []
        self.backlog = 0  # sampled stream length, refreshed by `sample_backlog`
        self.appended = 0  # entries this gateway appended since the sample in `backlog` was read
        self.draining = False  # shutting down: a connection that still gets in is sent away
        # a user's connections past the limit check but not yet on the hub (joining it waits
        # for a subscription): counted too, or logins at one instant all passed the check
        self.admitting: dict[str, int] = {}
        # requests' XADDs go out as bounded pipelined rounds (`store.pipeline.execute`)
        self.producer = StreamProducer(redis if rounds is None else rounds,
                                       settings.xadd_batch_max)
        hub.on_lost, hub.recover = self._hold, self._recover
        self._gap_tasks: set[asyncio.Task[None]] = set()
        self.unavailable_closes, self.unavailable_logged_at = 0, -UNAVAILABLE_LOG_S

    async def expire_requests(self) -> None:
        """Once a second: requests waiting longer than `request_timeout_s` get `timeout`."""
        while True:
            await asyncio.sleep(EXPIRE_CHECK_S)
            older_than = time.monotonic() - self.s.request_timeout_s
            for conn in list(self.hub.by_id.values()):
                if conn.pending:
                    conn.expire(older_than, lambda rid: error_frame("timeout", rid))

    async def sample_backlog(self) -> None:
        """Refresh the settlement backlog every 250 ms (gift.send is refused above the bound),
        and whether a worker holds each partition (none: its settlement waits for one)."""
        parts = range(self.s.partitions)
        failing = False  # one line when samples start failing, not one every 250 ms
        while True:
            try:
                counted = self.appended  # appends from here on may miss this sample: kept
                found = await self._sample(parts)
                lengths = [x[0] for x in found if x is not None]
                for p, got in zip(parts, found, strict=True):
                    if got is not None:
                        BACKLOG.set(got[0], partition=str(p))
                    HELD.set(got[1] if got is not None else 0, partition=str(p))
                self.backlog = max(lengths)
                self.appended -= counted
                failing = False
            except STORAGE_AWAY as exc:  # (cluster errors too: uncaught, they ended the
                # sampling for good)
                if not failing:
                    log.warning("backlog sample failed (%s); partitions shown unheld", exc)
                failing = True
                for p in parts:  # Redis away: no worker settles anything (it was left at 1)
                    HELD.set(0, partition=str(p))
            stop_if_cancelled()
            await asyncio.sleep(0.25)

    async def _sample(self, parts: range) -> list[tuple[int, int] | None]:
        """Each partition's (backlog, held), in one round trip; on a cluster where that fails
        (a partition's slot moving), each partition alone, so only the moving one is shown
        unknown (None) and the others keep their figures. None of them: raised."""
        pipe = self.redis.pipeline(transaction=False)
        for p in parts:
            pipe.xlen(keys.settle_stream(p))
            pipe.exists(keys.settle_owner(p))
        try:
            found = await pipe.execute()
            return [(int(found[2 * i]), int(found[2 * i + 1])) for i in range(len(parts))]
        except STORAGE_AWAY:
            if not self.s.redis_cluster or len(parts) == 1:
                raise
        out: list[tuple[int, int] | None] = []
        for p in parts:
            try:
                one = self.redis.pipeline(transaction=False)  # (one slot: one node)
                one.xlen(keys.settle_stream(p))
                one.exists(keys.settle_owner(p))
                length, held = await one.execute()
                out.append((int(length), int(held)))
            except STORAGE_AWAY:
                out.append(None)
        if all(x is None for x in out):
            raise RedisConnectionError("no partition could be sampled")
        return out

    async def serve(self, ws: WebSocket) -> None:
        # a handshake (GIFTWIRE_HANDSHAKES_MAX) until the token is checked, not just accepted
        admitted = hold_handshake(ws.scope)
        try:
            await ws.accept()
            if self.draining:  # (accepted just before the listener closed) reconnect elsewhere
                await self._send_away(ws)
                return
            auth = await self._authenticate(ws)
        finally:  # checked (or refused)
            admitted()
        if auth is None:
            return
        user, channel, request_id, since, device = auth
        held = len(list(self.hub.on(keys.user(user).channel))) + self.admitting.get(user, 0)
        if held >= self.s.connections_per_user_max:
            DISCONNECTS.inc(reason="too_many_connections")
            await self._close(ws, "too_many_connections")
            return
        endpoint_task = asyncio.current_task()

        async def close(reason: str) -> None:
            try:
                await asyncio.wait_for(self._close(ws, reason), self.s.close_timeout_s)
            except TimeoutError:
                # the client is not reading, so not even a close frame gets out: stop
                # waiting for it (the endpoint returns and uvicorn drops the transport)
                if endpoint_task is not None:
                    endpoint_task.cancel()

        conn = Connection(self.hub.new_conn_id(), user, ws.send_text, close,
                          self.s.send_queue_max_bytes)
        conn.write_prepared = prepared_writer(ws.scope)
        conn.device = device or ""
        conn.channel = channel  # a partner app's users: their gifts carry it
        conn.on_gap = self._gap
        peer = ws.client.host if ws.client else ""
        forwarded = ",".join(ws.headers.getlist("x-forwarded-for")) or None
        conn.ip = client_address(peer, forwarded, self.trusted_proxies)
        conn.start_buffering()  # subscribe first, then read the log: no gap
        self.admitting[user] = self.admitting.get(user, 0) + 1
        try:
            await self.hub.add(conn)
        except STORAGE_AWAY:  # Redis is away: the client reconnects later
            DISCONNECTS.inc(reason="unavailable")
            await self._unavailable(ws)
            return
        finally:  # on the hub now (counted there), or never
            left = self.admitting.pop(user) - 1
            if left:
                self.admitting[user] = left
        if self.draining:  # drain() ran while this one authenticated: it was not kicked
            conn.close()
            await self.hub.remove(conn)
            await self._send_away(ws)
            return
        try:
            # after subscribing, so a decision published meanwhile is not missed
            for check in self.connect_checks:  # e.g. a blacklisted device may not connect
                refused = await check(conn)
                if refused:
                    conn.kick_reason = refused
                    await self._close(ws, refused)
                    return
            await self._catch_up(conn, request_id, since)
            reason = await self._read_loop(ws, conn)  # this coroutine is the reader
            if reason is not None:
                conn.kick_reason = reason
                # the errors owed to the frames before it go first (a client that reads
                # nothing holds them up at most this long)
                await conn.flushed(FLUSH_BEFORE_CLOSE_S)
                await self._close(ws, reason)
        except (WebSocketDisconnect, RuntimeError):
            pass
        except STORAGE_AWAY:
            # Redis went away (restarting), hung, or a cluster is out of reach: the client
            # reconnects and resumes
            conn.kick_reason = "unavailable"
            await self._unavailable(ws)
        except asyncio.CancelledError:
            if not conn.kick_reason:
                raise  # not ours: the server is stopping
        finally:
            DISCONNECTS.inc(reason=conn.kick_reason or "client")
            conn.close()
            try:
                await self.hub.remove(conn)
            except STORAGE_AWAY:  # the UNSUBSCRIBE could not go out: off the hub all the same
                log.debug("unsubscribe failed for a closed connection")

    async def _catch_up(self, conn: Connection, request_id: str | None, since: int | None) -> None:
        """Welcome, then the missed events (or pending offers), then the live ones."""
        current, missed = await self._read_log(conn.user, since)
        recovered = None if since is None else missed is not None
        conn.push(encode("welcome", id=request_id, user=conn.user, protocol=PROTOCOL_VERSION,
                         server_time_ms=self.clock.now_ms(), seq=current,
                         recovered=recovered, channel=conn.channel or None).decode())
        if missed is not None:
            for event_json, _ in missed:
                conn.push(event_json)
        else:  # a fresh start: offers still waiting for an answer come again, oldest first
            offers = sorted((int(orjson.loads(offer).get("seq", 0)), offer)
                            for offer in await self.redis.hvals(keys.user(conn.user).offers))
            for seq, offer in offers:
                # one made after `current` was read is buffered live (the subscription came
                # first) and comes from there, in its place: sent here too, it would have
                # made the events buffered before it look seen, and they were dropped
                if seq <= current:
                    conn.push(offer)
        conn.go_live(current)

    def _hold(self, channel: str) -> None:
        """The hub may be missing live events on `channel`: its connections buffer (even
        through their first catch-up) until `_recover`."""
        if "{u:" not in channel:
            return  # a room channel: at most once, viewers see the gap in its frames
        for conn in self.hub.on(channel):
            conn.held = True
            if conn.buffer is None:
                conn.start_buffering()

    async def _recover(self, channel: str, ok: bool) -> None:
        """After the hub followed a user's channel to its new node: each connection gets
        what the log holds after the last seq it passed on (a request whose answer is among
        them gets it as its reply). A connection still in its first catch-up, or one the log
        cannot complete, is closed with `resync` and resumes by itself."""
        if "{u:" not in channel:
            return
        for conn in list(self.hub.on(channel)):
            await self._from_log(conn, ok)
        for hook in self.recover_hooks:
            try:
                await hook(keys.owner_of(channel))
            except RedisError:  # the next connection or decision brings it
                log.warning("re-reading %s's state after a slot move failed", channel,
                            exc_info=True)

    def _gap(self, conn: Connection) -> None:
        """An event came past the next seq: the one before it was lost live (a publish on a
        slot's new node before the subscription got there). The connection buffers; the log
        fills the gap."""
        GAPS_FILLED.inc()
        task = asyncio.create_task(self._from_log(conn, True))
        self._gap_tasks.add(task)
        task.add_done_callback(self._gap_tasks.discard)

    async def _from_log(self, conn: Connection, ok: bool) -> None:
        """A held connection gets what the log holds after the last seq it passed on, then
        what it buffered; one the log cannot complete is closed with `resync`."""
        try:
            since = conn.last_seq
            current, missed = (await self._read_log(conn.user, since) if ok and conn.live
                               else (0, None))
        except RedisError:
            log.warning("catching %s up from the log failed", conn.id, exc_info=True)
            missed = None
        if missed is None:
            conn.kick("resync")
            return
        events = []
        for offset, (event_json, route) in enumerate(missed):
            target, _, no = route.partition("/")
            events.append((since + 1 + offset, int(no) if target == conn.id else 0, event_json))
        conn.resume(events, current)

    async def _read_log(self, user: str, since: int | None
                        ) -> tuple[int, list[tuple[str, str]] | None]:
        """The user's latest seq and the events after `since` (each with the route of the
        request it answered, or `-`), or None when they are not all in the log any more (or
        no resume was asked for)."""
        uk = keys.user(user)
        current = int(await self.redis.hget(uk.profile, "seq") or 0)
        if since is None or since > current or current - since > self.s.events_per_user_max * 2:
            return current, None
        events: list[tuple[str, str]] = []
        expected = since + 1
        while expected <= current:  # bounded: at most current - since events, in pages
            page = await self.redis.xrange(uk.events, min=f"{expected}-0", max=f"{current}-0",
                                           count=self.s.resume_page_max)
            for eid, fields in page:
                if int(eid.partition("-")[0]) != expected:
                    return current, None  # trimmed or expired: a gap
                events.append((fields["e"], fields.get("r", keys.NO_ROUTE)))
                expected += 1
            if not page:
                return current, None
        return current, events

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Graceful shutdown: close every client with `shutdown` (4000: reconnect elsewhere);
        a connection arriving meanwhile is sent away the same way."""
        self.draining = True
        for conn in list(self.hub.by_id.values()):
            conn.kick("shutdown")  # the close ends the connection's read loop
        deadline = time.monotonic() + timeout_s
        while self.hub.by_id and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.02)

    async def _send_away(self, ws: WebSocket) -> None:
        """A connection that got in while the gateway drained: reconnect elsewhere (4000)."""
        DISCONNECTS.inc(reason="shutdown")
        await self._close(ws, "shutdown")

    async def _unavailable(self, ws: WebSocket) -> None:
        """Redis did not answer while this connection was being set up or served: 1011, which
        clients reconnect after (one warning line: a Redis restart is an operator's event,
        not a bug to trace)."""
        self.unavailable_closes += 1
        now = time.monotonic()
        if now - self.unavailable_logged_at >= UNAVAILABLE_LOG_S:  # one line, not one per client
            log.warning("Redis unavailable: %d connection(s) closed with 1011 since the last line",
                        self.unavailable_closes)
            self.unavailable_logged_at, self.unavailable_closes = now, 0
        await self._close(ws, "internal_error", text="unavailable")

    async def _close(self, ws: WebSocket, reason: str, text: str | None = None) -> None:
        """Close with `reason`'s code; the frame says `text`, else the reason itself."""
        if ws.application_state == WebSocketState.CONNECTED:
            try:
                await ws.close(code=close_code(reason).code, reason=text or reason)
            except (RuntimeError, WebSocketDisconnect, OSError):
                pass  # the transport closed it first (a server stopping: 1012), or it dropped

    async def _authenticate(self, ws: WebSocket
                            ) -> tuple[str, str, str | None, int | None, str | None] | None:
        """(user, channel, auth request id, resume point, device) from the query string or a first
        `auth` message; closes the connection on failure."""
        token = ws.query_params.get("token")
        request_id: str | None = None
        raw_since = ws.query_params.get("since")
        since = None  # not a whole number: ignored, as the docs say
        if raw_since and raw_since.isascii() and raw_since.isdigit():
            # any whole number counts; one too long for a seq is past every log (recovered:false)
            since = int(raw_since) if len(raw_since) < 19 else SEQ_BEYOND
        if token is None:
            try:
                msg = await asyncio.wait_for(ws.receive(), self.s.auth_timeout_s)
            except TimeoutError:
                DISCONNECTS.inc(reason="auth_timeout")
                await self._close(ws, "auth_timeout")
                return None
            text = msg.get("text")
            decoded = decode_client(text, self.s.frame_max_bytes) if text else None
            if not isinstance(decoded, Decoded) or decoded.type != "auth":
                DISCONNECTS.inc(reason="auth_required")
                await self._close(ws, "auth_required")
                return None
            token, request_id = decoded.data["token"], decoded.data["id"]
            since = decoded.data.get("since")
        result = verify_signed(self.secrets, token, self.clock.now_ms() / 1000)
        if isinstance(result, TokenError):
            DISCONNECTS.inc(reason=result.reason)
            await self._close(ws, result.reason)
            return None
        device = token_device(token)
        if device is None and self.s.token_device_required:  # the device rules need one
            DISCONNECTS.inc(reason="auth_device_required")
            await self._close(ws, "auth_device_required")
            return None
        user, channel = result
        return user, channel, request_id, since, device

    async def _read_loop(self, ws: WebSocket, conn: Connection) -> str | None:
        """Serve requests until the client leaves (None) or must be closed (a reason)."""
        bad = BadFrames(self.s.bad_frames_max, self.s.bad_frames_window_s)
        bucket = TokenBucket(self.s.requests_per_s, self.s.request_burst)
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                # closed by the WebSocket layer itself (a message too big, bad UTF-8): counted
                # under its reason, not as the client's leaving; a close the gateway began (a
                # slow consumer cut off) keeps its own reason
                conn.kick_reason = conn.kick_reason or TRANSPORT_CLOSES.get(msg.get("code", 0), "")
                return None
            FRAMES_IN.inc()
            text = msg.get("text")
            decoded: Decoded | DecodeError
            if text is None:
                decoded = DecodeError("binary_frame", ERRORS["binary_frame"].message)
            else:
                decoded = decode_client(text, self.s.frame_max_bytes)
            if isinstance(decoded, DecodeError):
                conn.push(error_frame(decoded.code, decoded.request_id, decoded.detail))
                if bad.hit(time.monotonic()):
                    return "abuse"
                continue
            if not bucket.take(time.monotonic()):
                REFUSED.inc(code="rate_limited")
                conn.push(error_frame("rate_limited", decoded.data.get("id")))
                continue
            try:
                await self._handle(conn, decoded)
            except (RedisConnectionError, RedisTimeoutError, TimeoutError, RedisClusterException,
                    *CLUSTER_MOVING) as exc:
                # (CLUSTER_MOVING: a cluster's slot moving, MOVED/ASK run out: retry, not a bug)
                # Redis away, hung (a round's own bound: the built-in TimeoutError), a cluster
                # out of reach, or every pooled connection busy (an overload): one line each,
                # not a traceback per request, which flooded the log when it mattered most
                log.warning("redis unavailable serving %s: %s", decoded.type, exc)
                conn.push(error_frame("unavailable", decoded.data.get("id")))
            except RedisError:
                log.exception("redis error serving %s", decoded.type)
                conn.push(error_frame("unavailable", decoded.data.get("id")))

    async def _handle(self, conn: Connection, msg: Decoded) -> None:
        # the codec only lets declared types through, and start-up checked that each has a
        # handler: a lookup, never a default branch
        for guard in self.guards:
            refused = guard(conn, msg.type, msg.data)
            if refused:
                conn.push(error_frame(refused, msg.data.get("id")))
                return
        await self.requests.get(msg.type).handler(self, conn, msg.data)

    def error(self, conn: Connection, code: str, request_id: str | None,
              detail: str | None = None) -> None:
        conn.push(error_frame(code, request_id, detail))

    async def enqueue(self, conn: Connection, rid: str, kind: str, payload: dict[str, Any]) -> None:
        """Queue a request for settlement as an entry of flow `kind`; its reply comes back
        addressed to `<conn>/<n>`."""
        if conn.pending_count >= self.s.pending_requests_max:
            REFUSED.inc(code="too_many_pending")
            conn.push(error_frame("too_many_pending", rid))
            return
        if self.backlog + self.appended >= self.s.stream_backlog_max:
            REFUSED.inc(code="overloaded")
            conn.push(error_frame("overloaded", rid))
            return
        request_no = conn.expect(rid)
        fields = entries.encode(entries.Envelope(kind, conn.user, conn.id, request_no), payload)
        # counted at once (the sample comes every 250 ms): a burst cannot pass the bound by
        # more than what other gateways add within a sample (any partition counts: at most early)
        self.appended += 1
        try:
            await self.producer.add(keys.settle_stream_for(conn.user, self.s.partitions), fields)
        except RedisError:
            if request_no not in conn.pending:
                return  # answered `timeout` already: one reply per request
            conn.forget(request_no)
            raise
        except BaseException:
            conn.forget(request_no)
            raise
