"""A small asyncio client for protocol v1 (tests, the load test, integrators).

    async with await Client.connect("ws://127.0.0.1:8700/ws", token) as c:
        reply = await c.send_gift("bob", "note.do", 1)
        event = await c.next_event("gift.received")

Every frame from the server is decoded strictly; a frame the schema does not
declare raises `ProtocolViolation` from the next call.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import quote

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from protocol.errors import should_reconnect
from protocol.messages import DecodeError, decode_server
from protocol.resume import accept, backoff_s, seq_after_welcome

EVENTS_MAX = 100_000
RECONNECT_ATTEMPTS = 8
RECONNECT_BASE_S = 0.1
RECONNECT_MAX_S = 5.0
# a connection lost sooner than this after its welcome counts as a failed attempt: the next
# reconnection backs off (and gives up after RECONNECT_ATTEMPTS such losses in a row) instead
# of redialling at once, forever, a server that closes each connection as soon as it opens
STABLE_S = 5.0


class ProtocolViolation(Exception):
    """The server sent a frame that protocol v1 does not declare."""


EventHandler = Callable[[dict[str, Any]], None]


class Client:
    """One connection. `last_seq` is the newest event sequence number seen; `reconnect()`
    opens a new connection that resumes from it, so no event is missed or seen twice."""

    def __init__(self, ws: ClientConnection, on_event: EventHandler | None = None,
                 on_seq: Callable[[int], None] | None = None) -> None:
        self.ws = ws
        self.on_event = on_event  # when set, events go here instead of the unread queue
        self.on_seq = on_seq  # called with each new event seq, in arrival order, replies too
        self.last_seq = 0
        self.strict = True
        self.url = ""
        self.token = ""
        self.welcome: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=EVENTS_MAX)
        self._arrived = asyncio.Event()
        self._error: BaseException | None = None
        self._reader: asyncio.Task[None] | None = None
        self.token_in_query = True
        self.auto_reconnect = False
        self.urls: Callable[[], str] | None = None
        self.reconnects = 0
        self.duplicates = 0  # events (not replies) dropped as seen already: the server sends none
        self._closing = False
        self._auto: asyncio.Future[Client] | None = None
        self._opened_at = 0.0  # (loop time) of the last welcome
        self._quick_losses = 0  # connections in a row lost within STABLE_S of their welcome

    @classmethod
    async def connect(cls, url: str, token: str, *, token_in_query: bool = True,
                      timeout_s: float = 10.0, on_event: EventHandler | None = None,
                      since: int | None = None, on_seq: Callable[[int], None] | None = None,
                      auto_reconnect: bool = False,
                      urls: Callable[[], str] | None = None, strict: bool = True) -> Client:
        """Connect and authenticate (resuming after event `since` if given); raises
        ConnectionClosed when refused. With `auto_reconnect`, a lost connection is
        re-established by itself (when its close code says to), resuming after `last_seq`;
        `urls` picks the gateway for each attempt. `strict=False` parses frames without
        checking them against the protocol (a load generator's viewers: the check costs
        more than the server's write)."""
        ws, welcome = await cls._open(url, token, since, token_in_query, timeout_s)
        client = cls(ws, on_event, on_seq)
        client.url, client.token, client.token_in_query = url, token, token_in_query
        client.auto_reconnect, client.urls = auto_reconnect, urls
        client.strict = strict
        client._start(welcome, since)
        return client

    @staticmethod
    async def _open(url: str, token: str, since: int | None, token_in_query: bool,
                    timeout_s: float) -> tuple[ClientConnection, dict[str, Any]]:
        query = f"token={quote(token)}" if token_in_query else ""
        if since is not None and token_in_query:
            query += f"&since={since}"
        if query:  # after any query the URL has already (`/ws?x=1` → `/ws?x=1&token=…`)
            query = ("&" if "?" in url else "?") + query
        ws = await connect(url + query, max_size=1 << 20, compression=None, open_timeout=timeout_s)
        if not token_in_query:
            auth: dict[str, Any] = {"type": "auth", "id": "auth", "token": token}
            if since is not None:
                auth["since"] = since
            await ws.send(orjson.dumps(auth).decode())
        first = orjson.loads(await asyncio.wait_for(ws.recv(), timeout_s))
        if first.get("type") != "welcome":
            await ws.close()
            raise ProtocolViolation(f"expected welcome, got {first}")
        return ws, first

    def _start(self, welcome: dict[str, Any], since: int | None) -> None:
        self.welcome = welcome
        # resumed: events continue after `since`; otherwise after the server's latest
        self.last_seq = seq_after_welcome(welcome, since)
        self._error = None
        self._opened_at = asyncio.get_running_loop().time()
        self._reader = asyncio.create_task(self._read())

    async def reconnect(self, attempts: int = RECONNECT_ATTEMPTS,
                        urls: Callable[[], str] | None = None) -> Client:
        """Reconnect in place, resuming after `last_seq`, retried with jittered exponential
        backoff; unread events stay. `urls` picks the gateway for each attempt (to move
        elsewhere when one is gone). Check `welcome["recovered"]` afterwards."""
        auto = self._auto
        if auto is not None and auto is not asyncio.current_task() and not auto.done():
            auto.cancel()  # the caller's reconnection replaces the automatic one
            await asyncio.gather(auto, return_exceptions=True)
        if auto is not asyncio.current_task():
            self._quick_losses = 0  # the caller decided: a fresh count
        return await self._reconnect(attempts, urls)

    async def _reconnect(self, attempts: int, urls: Callable[[], str] | None) -> Client:
        await self._stop_reader()
        pick = urls or self.urls
        for attempt in range(attempts):
            try:
                ws, welcome = await self._open(pick() if pick else self.url, self.token,
                                               self.last_seq, self.token_in_query, 10.0)
            except (OSError, WebSocketException, TimeoutError, ProtocolViolation) as exc:
                # an attempt the server refused with a final code (an expired token, 4003):
                # retrying cannot help, as for the connection that was lost
                rcvd = getattr(exc, "rcvd", None)
                if attempt == attempts - 1 or (rcvd is not None and not should_reconnect(rcvd.code)):
                    raise
                await asyncio.sleep(backoff_s(attempt, RECONNECT_BASE_S, RECONNECT_MAX_S,
                                              random.random()))
                continue
            self.ws = ws
            self.reconnects += 1
            self._start(welcome, self.last_seq)
            self._arrived.set()
            return self
        raise ConnectionError("unreachable")

    async def _reconnect_after(self, delay_s: float) -> Client:
        await asyncio.sleep(delay_s)
        return await self._reconnect(RECONNECT_ATTEMPTS, None)

    def _should_reconnect(self) -> bool:
        """After a lost connection: reconnect unless the close code says not to."""
        if not self.auto_reconnect or self._closing:
            return False
        rcvd = getattr(self._error, "rcvd", None)
        return should_reconnect(rcvd.code if rcvd is not None else 1006)

    async def connected(self, timeout_s: float = 30.0) -> None:
        """Wait until an automatic reconnection (if one is under way) has finished."""
        if self._auto is not None:
            await asyncio.wait_for(asyncio.shield(self._auto), timeout_s)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        self._closing = True
        if self._auto is not None:
            self._auto.cancel()
            await asyncio.gather(self._auto, return_exceptions=True)
        await self._stop_reader()

    async def _stop_reader(self) -> None:
        await self.ws.close()
        if self._reader and self._reader is not asyncio.current_task():
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                msg = self._parse(frame)
                fut = self._waiting.pop(msg.get("id", ""), None)
                # an event seen already is dropped (the server never sends one twice; belt and
                # braces); replies and offers (state: a fresh connection gets them again) pass
                verdict = accept(self.last_seq, msg, fut is not None)
                if not verdict.deliver:
                    # (a late reply to a request given up on, answered again since, is no
                    # repeated event)
                    self.duplicates += "id" not in msg
                    continue
                if verdict.last_seq != self.last_seq:
                    self._advance(verdict.last_seq)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                elif self.on_event is not None:
                    self.on_event(msg)
                else:
                    self._events.append(msg)
                    self._arrived.set()
        except ConnectionClosed as exc:
            self._error = exc
        except ProtocolViolation as exc:
            self._error = exc
        finally:
            self._arrived.set()
            lost = ConnectionError(f"connection closed: {self._error}")
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(self._error if isinstance(self._error, ProtocolViolation)
                                      else lost)
            if isinstance(self._error, ConnectionClosed) and self._should_reconnect():
                loop = asyncio.get_running_loop()
                quick = loop.time() - self._opened_at < STABLE_S
                self._quick_losses = self._quick_losses + 1 if quick else 0
                if self._quick_losses < RECONNECT_ATTEMPTS:
                    delay = (backoff_s(self._quick_losses - 1, RECONNECT_BASE_S, RECONNECT_MAX_S,
                                       random.random()) if self._quick_losses else 0.0)
                    self._auto = loop.create_task(self._reconnect_after(delay))
                else:  # given up: `connected()` says so
                    gave_up: asyncio.Future[Client] = loop.create_future()
                    gave_up.set_exception(ConnectionError(
                        f"gave up after {self._quick_losses} connections in a row were lost "
                        f"within {STABLE_S:g} s of their welcome"))
                    gave_up.exception()  # (retrieved: no "never retrieved" warning)
                    self._auto = gave_up

    def _parse(self, frame: str | bytes) -> dict[str, Any]:
        if not self.strict:
            try:
                loose = orjson.loads(frame)
            except orjson.JSONDecodeError:
                loose = None  # the strict decoder names what is wrong
            if isinstance(loose, dict) and isinstance(loose.get("type"), str):
                return loose
        decoded = decode_server(frame)
        if isinstance(decoded, DecodeError):
            raise ProtocolViolation(f"{decoded.code}: {decoded.detail}: {frame!r}")
        return {"type": decoded.type, **decoded.data}

    def _advance(self, seq: int) -> None:
        self.last_seq = seq
        if self.on_seq is not None:
            self.on_seq(seq)

    def _check(self) -> None:
        if isinstance(self._error, ProtocolViolation):
            raise self._error

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def request(self, type_: str, timeout_s: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send a request and wait for the reply that echoes its id. Raises ConnectionError
        when the connection is lost first (then `reconnect()` and send it again: gift ids
        make that safe)."""
        self._check()
        request_id = f"r{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        body = {"type": type_, "id": request_id, **{k: v for k, v in fields.items() if v is not None}}
        try:
            await self.ws.send(orjson.dumps(body).decode())
        except ConnectionClosed as exc:
            self._waiting.pop(request_id, None)
            raise ConnectionError(f"connection closed: {exc}") from exc
        try:
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._waiting.pop(request_id, None)

    async def send_gift(self, to: str, asset: str, count: int, gift_id: str | None = None,
                        room: str | None = None, timeout_s: float = 10.0,
                        group: str | None = None) -> dict[str, Any]:
        return await self.request("gift.send", timeout_s, gift_id=gift_id or uuid.uuid4().hex,
                                  to=to, asset=asset, count=count, room=room, group=group)

    async def balances(self) -> dict[str, int]:
        return dict((await self.request("balance.get"))["balances"])

    async def next_event(self, *types: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The oldest unread event (of one of `types`, if given); others stay queued."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._check()
            for i, msg in enumerate(self._events):
                if not types or msg["type"] in types:
                    del self._events[i]
                    return msg
            reconnecting = self._auto is not None and not self._auto.done()
            if self._error is not None and not reconnecting:
                raise ConnectionError(f"connection closed: {self._error}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {types or 'event'} within {timeout_s}s")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass

    def events(self) -> list[dict[str, Any]]:
        """Unread events, oldest first (they stay unread)."""
        return list(self._events)
