"""Bounds on the HTTP handshake, which uvicorn leaves unbounded.

Without these, uvicorn 0.54 and 0.55 (h11 + websockets-sansio) lets a client hold a
connection at no cost:

- An upgrade request whose request line is over 8 KiB or that has over 128
  headers gets no answer and stays open: websockets' `ServerProtocol` refuses it
  with a queued 414/431 (python-websockets/websockets#1489) and raises nothing, and
  uvicorn's `WebSocketsSansIOProtocol.data_received` only writes `data_to_send()`
  after a `Request` event or a `parser_exc`, so the answer is never sent and the
  transport never closed (no upstream issue found for this; see
  `uvicorn/protocols/websockets/websockets_sansio_impl.py`, `data_received`).
- Nothing times out a connection before its first request: uvicorn arms its
  keep-alive timer only after a response (Kludex/uvicorn#160, #157), so a client
  that sends nothing, or half a request head, is kept forever.
- h11 applies its 16 KiB head limit only to heads that arrive in pieces, and
  counts no headers (python-hyper/h11#155).

`HandshakeProtocol` (uvicorn's h11 protocol) therefore measures each request head
before h11 parses it (414/431 above the limits), closes a connection whose head,
and for a WebSocket the app's accept, is not complete within the timeout (408),
and refuses new connections with 503 while too many are still in that phase (429 while
too many of them come from the new one's address). A WebSocket stays in that phase after
its accept until the app has checked its token (`hold_handshake`): a client that never
authenticates holds a slot for the app's auth timeout, so such clients are bounded too.
`FlushingWebSocketProtocol` writes websockets' own refusals (for heads that pass
our limits but not websockets', e.g. larger configured limits or pipelined heads).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from protocol.errors import ADMIN_ERRORS
from server.config import Settings
from server.gateway.peers import Network, in_networks, network_of, parse_address, parse_trusted
from server.metrics import REGISTRY, Counter

log = logging.getLogger("giftwire.gateway")
HEAD_END = re.compile(rb"\n\r?\n")  # h11's end of a head (h11/_receivebuffer.py blank_line_regex)
LINGER_S = 1.0  # after a refusal, read (and drop) what the client still sends: a close with
# unread data makes the kernel send RST, which can destroy the answer before the client reads it
REFUSED = REGISTRY.add(Counter("giftwire_handshakes_refused_total",
                               "connections refused before their request or WebSocket was complete, "
                               "by HTTP status"))
BAD_TEXT = REGISTRY.add(Counter("giftwire_bad_utf8_frames_total",
                                "text frames that were not UTF-8 (the connection closed 1007)"))


def http_refusal(code: str) -> tuple[HTTPStatus, bytes]:
    """The status and JSON body (the admin API's error shape) of a refusal by this layer."""
    entry = ADMIN_ERRORS[code]
    return HTTPStatus(entry.status), orjson.dumps({"error": {"code": code, "message": entry.message}})


# this layer's refusals, by the status `HandshakeProtocol.refuse` is given
REFUSALS = dict((http_refusal("bad_request"), http_refusal("request_line_too_long"),
                 http_refusal("head_too_large"), http_refusal("handshake_timeout"),
                 http_refusal("address_busy"), http_refusal("too_many_handshakes")))


@dataclass(frozen=True)
class HandshakeLimits:
    head_max_bytes: int
    headers_max: int
    timeout_s: float
    handshakes_max: int
    per_address_max: int = 1 << 30
    trusted: tuple[Network, ...] = ()  # proxies: many clients share their address
    keep_alive_s: int = 20  # (uvicorn's own: an idle keep-alive connection's lifetime)

    @classmethod
    def of(cls, s: Settings) -> HandshakeLimits:
        return cls(s.http_head_max_bytes, s.http_headers_max, s.handshake_timeout_s, s.handshakes_max,
                   s.handshakes_per_address_max, parse_trusted(s.trusted_proxies),
                   s.http_keep_alive_s)


PREPARED_EXTENSION = "giftwire.prepared"  # scope["extensions"][...]["write"]: write_prepared


def prepared_text(payload: bytes) -> bytes:
    """A text frame serialized once for any number of connections: a server's frames are
    unmasked, so the bytes are the same for every client (deflate is off)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


def prepared_writer(scope: Any) -> Callable[[bytes, int], bool] | None:
    """The connection's `write_prepared`, when the server is ours (not under a test client)."""
    ext = (scope.get("extensions") or {}).get(PREPARED_EXTENSION) or {}
    write = ext.get("write")
    return write if callable(write) else None


HOLD_SCOPE_KEY = "giftwire.hold_handshake"


def hold_handshake(scope: Any) -> Callable[[], None]:
    """Called before the app accepts a WebSocket: its handshake slot stays taken past the
    accept until the returned function is called (once the app has checked the client's
    token). Without it the slot comes free at the accept (an app that authenticates no one,
    e.g. the load test's echo server). A no-op when the server is not ours."""
    ext = (scope.get("extensions") or {}).get(PREPARED_EXTENSION) or {}
    done: Callable[[], None] | None = ext.get("admitted")
    if not callable(done):
        return lambda: None
    scope[HOLD_SCOPE_KEY] = True
    return done


class FlushingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol that sends websockets' handshake refusals and
    tells the HTTP protocol that upgraded it when the app has accepted (its timer stops) and
    when the app has authenticated the client or the connection is gone (its slot comes
    free); it also offers the app `write_prepared` (an ASGI extension) for frames serialized
    once for many."""

    on_accepted: Callable[[], None] | None = None
    on_handshake_done: Callable[[], None] | None = None

    async def run_asgi(self) -> None:
        self.scope["extensions"] = {**(self.scope.get("extensions") or {}),
                                    PREPARED_EXTENSION: {"write": self.write_prepared,
                                                         "admitted": self._handshake_done}}
        await super().run_asgi()

    def write_prepared(self, frame: bytes, max_buffered: int) -> bool:
        """Write a `prepared_text` frame now, with no task and no per-client encoding (a room
        frame to thousands of viewers). False, and nothing written, when the connection is
        not open, is paused by flow control, or would hold over `max_buffered` bytes."""
        if (not self.handshake_complete or self.close_sent or self.disconnected
                or self.conn.state is not State.OPEN or not self.writable.is_set()
                or self.transport.is_closing()
                or self.transport.get_write_buffer_size() + len(frame) > max_buffered):
            return False
        self.transport.write(frame)
        return True

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, except that a text message that is not UTF-8 closes the connection 1007
        quietly (counted), where uvicorn logs a traceback for each: any client could fill the
        log with them, before authenticating."""
        if self.curr_msg_data_type != "text" or self.close_sent:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        try:
            text = data.decode()
        except UnicodeDecodeError:
            BAD_TEXT.inc()
            self.conn.send_close(1007, "invalid UTF-8")
            self.handle_parser_exception()
            return
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.handshake_exc is not None and not self.handshake_initiated and not self.close_sent:
            self.transport.write(b"".join(self.conn.data_to_send()))  # the 414/431 uvicorn drops
            self.close_sent = True
            self.transport.close()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and self.on_accepted is not None:  # accepted (or refused:
            accepted, self.on_accepted = self.on_accepted, None  # then the transport closes)
            if self.scope.get(HOLD_SCOPE_KEY):
                accepted()  # the timer stops; the slot waits for the app's `hold_handshake`
            else:
                self._handshake_done()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._handshake_done()

    def _handshake_done(self) -> None:
        self.on_accepted = None
        done, self.on_handshake_done = self.on_handshake_done, None
        if done is not None:
            done()


class HandshakeProtocol(H11Protocol):
    """uvicorn's h11 protocol with bounded request heads and handshakes (see the module doc)."""

    limits: ClassVar[HandshakeLimits]
    handshaking: ClassVar[set[HandshakeProtocol]]  # per server, so per process
    by_address: ClassVar[dict[str, int]]  # of `handshaking`, per client address (not a proxy's)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.ws_protocol_class is WebSocketsSansIOProtocol:  # ws="websockets-sansio"
            self.ws_protocol_class = FlushingWebSocketProtocol  # the same, with its refusals sent
        self.head = bytearray()  # the request head being received, up to the limit + 1 byte
        self.timer: asyncio.TimerHandle | None = None
        self.upgraded = False  # handed to the WebSocket protocol, which has not accepted yet
        self.refused = False
        self.address: str | None = None  # counted in `by_address` while handshaking

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.admit():
            self.timer = self.loop.call_later(self.limits.timeout_s, self.timed_out)

    def admit(self) -> bool:
        """Take a handshake slot (and one of the address's share), or refuse (503, 429)."""
        if len(self.handshaking) >= self.limits.handshakes_max:
            self.refuse(HTTPStatus.SERVICE_UNAVAILABLE)
            return False
        address = self.client_key()
        if address is not None:
            held = self.by_address.get(address, 0)
            if held >= self.limits.per_address_max:
                self.refuse(HTTPStatus.TOO_MANY_REQUESTS)
                return False
            self.by_address[address] = held + 1
            self.address = address
        self.handshaking.add(self)
        return True

    def client_key(self) -> str | None:
        """The peer's address as counted per address; None for a trusted proxy (its clients are
        told apart only by headers not read yet) or a peer with no address (a unix socket)."""
        host = self.client[0] if self.client else None
        if not host or in_networks(host, self.limits.trusted):
            return None
        ip = parse_address(host)
        if ip is None:
            return host
        return str(ip) if ip.version == 4 else network_of(str(ip))  # one IPv6 client holds a /64

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.handshake_done()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # lingering: drop what the client still sends
        if self.conn.their_state is h11.IDLE:  # a request head (the first or a keep-alive's next)
            # a keep-alive's next request is a handshake again (it may be an upgrade)
            if self not in self.handshaking and not self.admit():
                return
            if self.timer is None:
                self.timer = self.loop.call_later(self.limits.timeout_s, self.timed_out)
            status = self.check_head(data)
            if status is not None:
                self.refuse(status)
                return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and not self.upgraded:
            self.handshake_done()

    def check_head(self, data: bytes) -> HTTPStatus | None:
        """Add `data` to the head; the status that refuses it, if it is over a limit.
        (A pipelined head h11 buffered before is not seen here: h11's own size limit,
        set to the same bytes, and websockets' limits cover it.)"""
        head_max = self.limits.head_max_bytes
        search_from = max(0, len(self.head) - 2)  # an end may straddle two reads
        self.head += data[: head_max + 1 - len(self.head)]
        end = HEAD_END.search(self.head, search_from)
        size = len(self.head) if end is None else end.end()
        line_end = self.head.find(b"\n", 0, size)
        line = size if line_end < 0 else line_end
        if line > 0 and self.head[line - 1] == ord("\r"):
            line -= 1  # the line's end is no part of it: a line of exactly the limit is not over
        if line > head_max:
            return HTTPStatus.REQUEST_URI_TOO_LONG
        headers = self.head.count(b"\n", 0, size) - (1 if end is None else 2)
        if size > head_max or headers > self.limits.headers_max:
            return HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
        return None

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        super().handle_websocket_upgrade(event)
        ws = self.transport.get_protocol()
        if isinstance(ws, FlushingWebSocketProtocol) and not ws.handshake_complete:
            self.upgraded = True  # the timer keeps running until the app accepts or refuses
            ws.on_accepted = self.accepted
            ws.on_handshake_done = self.handshake_done

    def accepted(self) -> None:
        """The app accepted the WebSocket in time: the timer stops; the slot stays taken until
        the app has authenticated the client (its own timeout bounds that)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def handshake_done(self) -> None:
        self.head.clear()
        self.upgraded = False
        self.handshaking.discard(self)
        if self.address is not None:
            left = self.by_address.pop(self.address) - 1
            if left:
                self.by_address[self.address] = left
            self.address = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def timed_out(self) -> None:
        self.timer = None
        if self.upgraded:  # the app did not accept the WebSocket in time: no answer, just close
            REFUSED.inc(status=str(HTTPStatus.REQUEST_TIMEOUT.value))
            self.handshake_done()
            self.transport.close()
        else:
            self.refuse(HTTPStatus.REQUEST_TIMEOUT)

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (bytes that are not HTTP, a bad Content-Length or chunk
        size): uvicorn answers in plain text; this is the admin API's JSON shape."""
        self.refuse(HTTPStatus.BAD_REQUEST)

    def refuse(self, status: HTTPStatus) -> None:
        """Answer `status` and close: the client gets the answer and EOF at once; the socket
        lingers up to LINGER_S (or until the client's EOF), reading and dropping."""
        REFUSED.inc(status=str(status.value))
        log.debug("handshake refused with %d from %s", status.value, self.client)
        self.refused = True
        self.handshake_done()
        self._unset_keepalive_if_required()
        body = REFUSALS[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status.value, status.phrase.encode(), len(body), body))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the transport closes itself at the client's EOF
        self.loop.call_later(LINGER_S, self.transport.close)


def http_protocol(limits: HandshakeLimits) -> type[HandshakeProtocol]:
    """A `HandshakeProtocol` class bound to `limits`, for `uvicorn.Config(http=...)`."""

    class Bound(HandshakeProtocol):
        pass

    Bound.limits = limits
    Bound.handshaking = set()
    Bound.by_address = {}
    return Bound
