"""The HTTP handshake is bounded: oversized heads get 414/431, stalled handshakes are cut
off, too many at once get 503, and none of it touches established WebSockets."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import websockets

from protocol.client import Client
from server.store.embedded import EmbeddedValkey
from tests.support import Proc, uid

OwnServer = Callable[..., tuple[Proc, EmbeddedValkey]]
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
UPGRADE = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
ANSWER_S = 1.0  # a refusal (answer and EOF) is this quick


@asynccontextmanager
async def raw(srv: Proc, source: str | None = None) -> AsyncIterator[Conn]:
    """A plain TCP connection to the server (from loopback address `source`), closed at the end."""
    local = (source, 0) if source else None
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", srv.port, local_addr=local), 5)
    try:
        yield reader, writer
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (ConnectionError, TimeoutError):
            pass


async def until_eof(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """All the server sends until it closes; fails if it has not closed within `timeout_s`."""
    return await asyncio.wait_for(reader.read(), timeout_s)


CODES = {400: "bad_request", 408: "handshake_timeout", 414: "request_line_too_long",
         429: "address_busy", 431: "head_too_large", 503: "too_many_handshakes"}


def status(answer: bytes, ours: bool = True) -> int:
    """The answer's status; a refusal of ours (not websockets' own) must have the admin API's
    error, with its code, as its body."""
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert m, answer[:200]
    code = int(m.group(1))
    if ours and code in CODES:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower(), head
        error = json.loads(body)["error"]
        assert error["code"] == CODES[code] and error["message"], error
    return code


async def refused_with(srv: Proc, head: bytes, ours: bool = True) -> int:
    """Send `head`; the status of the answer, which must come with EOF within ANSWER_S."""
    async with raw(srv) as (reader, writer):
        writer.write(head)
        await writer.drain()
        return status(await until_eof(reader, ANSWER_S), ours)


async def ws_works(srv: Proc) -> None:
    async with await Client.connect(srv.ws, srv.token(uid("u"))) as c:
        assert (await c.request("ping"))["type"] == "pong"


async def test_long_request_line_gets_414_and_is_closed(own_server: OwnServer) -> None:
    """A 10 KB `/ws?token=` gets 414 and is closed at once instead of hanging."""
    srv, _ = own_server()
    line = b"GET /ws?token=" + b"a" * 10240 + b" HTTP/1.1\r\n"
    assert await refused_with(srv, line + b"Host: x\r\n" + UPGRADE + b"\r\n") == 414
    assert await refused_with(srv, line) == 414  # even before the head is complete
    async with httpx.AsyncClient(base_url=srv.http, timeout=10) as http:
        metrics = (await http.get("/metrics")).text
    refused = re.search(r'^giftwire_handshakes_refused_total\{status="414"\} (\S+)$', metrics, re.M)
    assert refused and float(refused.group(1)) == 2


async def test_a_request_line_of_exactly_the_limit_is_not_longer_than_it(own_server: OwnServer) -> None:
    """A request line of exactly 8,192 bytes is no 414; its head, past the limit with its end, is 431."""
    # One byte more is 414.
    srv, _ = own_server()
    for size, status in ((8192, 431), (8193, 414)):
        target = b"/ws?token=" + b"a" * (size - len(b"GET  HTTP/1.1") - len(b"/ws?token="))
        line = b"GET " + target + b" HTTP/1.1"
        assert len(line) == size
        assert await refused_with(srv, line + b"\r\nHost: x\r\n\r\n") == status, size


async def test_too_many_headers_get_431_and_are_closed(own_server: OwnServer) -> None:
    """An upgrade with 200 headers, or a head over 8 KiB, gets 431 and is closed."""
    srv, _ = own_server()
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    assert await refused_with(srv, b"GET /ws HTTP/1.1\r\nHost: x\r\n" + UPGRADE + many + b"\r\n") == 431
    big = b"X-Big: " + b"b" * 9000 + b"\r\n"
    assert await refused_with(srv, b"GET /health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n") == 431


async def test_websockets_own_limits_are_answered_too(own_server: OwnServer) -> None:
    """With our limits raised past websockets' own, its 414/431 still reach the client."""
    srv, _ = own_server({"GIFTWIRE_HTTP_HEAD_MAX_BYTES": "65536", "GIFTWIRE_HTTP_HEADERS_MAX": "1000"})
    line = b"GET /ws?token=" + b"a" * 10240 + b" HTTP/1.1\r\n"
    assert await refused_with(srv, line + b"Host: x\r\n" + UPGRADE + b"\r\n", ours=False) == 414
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\n" + UPGRADE + many + b"\r\n"
    assert await refused_with(srv, head, ours=False) == 431


async def test_stalled_handshake_is_closed(own_server: OwnServer) -> None:
    """A client that sends half a request head (or nothing) is answered 408 and closed."""
    srv, _ = own_server({"GIFTWIRE_HANDSHAKE_TIMEOUT_S": "1"})
    async with raw(srv) as (half_reader, half), raw(srv) as (silent_reader, _):
        half.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        await half.drain()
        started = time.monotonic()
        answers = await asyncio.gather(until_eof(half_reader, 5), until_eof(silent_reader, 5))
        assert 0.8 < time.monotonic() - started < 3
    assert [status(a) for a in answers] == [408, 408]


async def test_handshakes_over_the_bound_get_503(own_server: OwnServer) -> None:
    """With the half-open bound taken, new connections get 503 at once; open WebSockets go on."""
    srv, _ = own_server({"GIFTWIRE_HANDSHAKES_MAX": "3", "GIFTWIRE_HANDSHAKE_TIMEOUT_S": "30"})
    async with await Client.connect(srv.ws, srv.token(uid("u"))) as established:
        async with raw(srv) as (_, a), raw(srv) as (_, b), raw(srv) as (_, c):
            for stalled in (a, b, c):
                stalled.write(b"GET /ws HTTP/1.1\r\n")
                await stalled.drain()
            await asyncio.sleep(0.3)  # the server has accepted all three
            head = b"GET /ws HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n"
            assert await refused_with(srv, head) == 503
            assert (await established.request("ping"))["type"] == "pong"
        async with httpx.AsyncClient(base_url=srv.http, timeout=5) as http:
            for _ in range(50):  # the stalled ones are gone: their slots come free
                if (code := (await http.get("/health")).status_code) == 200:
                    break
                await asyncio.sleep(0.1)
        assert code == 200
        await ws_works(srv)
        assert (await established.request("ping"))["type"] == "pong"


async def test_a_request_that_is_not_http_gets_a_json_400(own_server: OwnServer) -> None:
    """Bytes h11 cannot parse get 400 `bad_request` in the admin API's error shape; the connection closes."""
    # E.g. a bad Content-Length or a non-ASCII path.
    srv, _ = own_server()
    for head in (b"POST /admin/v1/grants HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                 b"GET /admin/v1/users/\xc3\xa9\x00 HTTP/1.1\r\nHost: x\r\n\r\n"):
        assert await refused_with(srv, head) == 400
    await ws_works(srv)


async def test_a_text_frame_that_is_not_utf8_closes_1007_quietly(own_server: OwnServer) -> None:
    """A non-UTF-8 text message closes the connection 1007, is counted, and leaves no traceback in the log."""
    # uvicorn logged one per message.
    srv, _ = own_server()
    async with websockets.connect(srv.ws) as ws:
        await ws.send(b"\xff\xfe", text=True)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    async with httpx.AsyncClient(base_url=srv.http, timeout=5) as http:
        metrics = (await http.get("/metrics")).text
    assert re.search(r"^giftwire_bad_utf8_frames_total 1(\.0)?$", metrics, re.M), metrics[:300]
    await ws_works(srv)
    log = srv.log_path.read_text()
    assert "Traceback" not in log and "UnicodeDecodeError" not in log, log[-2000:]


async def stall(writers: list[asyncio.StreamWriter]) -> None:
    """Half a request head on each connection; then the server has accepted them all."""
    for w in writers:
        w.write(b"GET /ws HTTP/1.1\r\n")
        await w.drain()
    await asyncio.sleep(0.3)


async def test_one_address_cannot_take_every_handshake(own_server: OwnServer) -> None:
    """Past its share of stalled handshakes an address gets 429; another address is still served."""
    srv, _ = own_server({"GIFTWIRE_HANDSHAKES_PER_ADDRESS_MAX": "2",
                         "GIFTWIRE_HANDSHAKE_TIMEOUT_S": "30"})
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n"
    async with raw(srv) as (_, a), raw(srv) as (_, b):
        await stall([a, b])
        assert await refused_with(srv, head) == 429
        async with raw(srv, "127.0.0.2") as (reader, writer):  # another client's address
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            assert status(await until_eof(reader, 5)) == 200
    async with httpx.AsyncClient(base_url=srv.http, timeout=5) as http:
        metrics = (await http.get("/metrics")).text
    refused = re.search(r'^giftwire_handshakes_refused_total\{status="429"\} (\S+)$', metrics, re.M)
    assert refused and float(refused.group(1)) == 1
    await ws_works(srv)  # the stalled ones closed: the address's share came free


async def test_a_websocket_holds_its_slot_until_it_authenticates(own_server: OwnServer) -> None:
    """Unauthenticated WebSockets hold handshake slots: past the bound a new connection gets 503."""
    # Accepted WebSockets that have not sent their token count as handshakes; once one authenticates its slot
    # comes free.
    srv, _ = own_server({"GIFTWIRE_HANDSHAKES_MAX": "2", "GIFTWIRE_AUTH_TIMEOUT_S": "30"})
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n"
    async with websockets.connect(srv.ws) as first, websockets.connect(srv.ws) as second:
        assert await refused_with(srv, head) == 503  # both accepted, neither authenticated
        await first.send(json.dumps({"type": "auth", "id": "a", "token": srv.token(uid("u"))}))
        assert json.loads(await first.recv())["type"] == "welcome"
        await ws_works(srv)  # the authenticated one's slot is free again
        await second.send(json.dumps({"type": "ping", "id": "p"}))  # not a token: closed
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(second.recv(), 5)
    await ws_works(srv)


async def test_an_upgrade_after_a_keep_alive_request_is_a_handshake_too(own_server: OwnServer
                                                                        ) -> None:
    """A WebSocket upgraded on a kept-alive connection holds a handshake slot until it authenticates."""
    # The connection already served a request; the slot is held as on a fresh connection.
    srv, _ = own_server({"GIFTWIRE_HANDSHAKES_MAX": "1", "GIFTWIRE_AUTH_TIMEOUT_S": "30"})
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n"
    async with raw(srv) as (reader, writer):
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert status(await asyncio.wait_for(reader.readuntil(b"}"), 5)) == 200
        writer.write(head)  # the same connection, now a WebSocket with no token yet
        await writer.drain()
        assert b" 101 " in await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert await refused_with(srv, head) == 503
    await ws_works(srv)


async def test_a_trusted_proxy_is_not_held_to_one_address_share(own_server: OwnServer) -> None:
    """Connections from a trusted proxy are many clients: the per-address share does not apply."""
    srv, _ = own_server({"GIFTWIRE_HANDSHAKES_PER_ADDRESS_MAX": "1",
                         "GIFTWIRE_HANDSHAKE_TIMEOUT_S": "30",
                         "GIFTWIRE_TRUSTED_PROXIES": "127.0.0.1"})
    async with raw(srv) as (_, a), raw(srv) as (_, b):
        await stall([a, b])
        await ws_works(srv)


async def test_normal_use_outlives_the_handshake_timeout(own_server: OwnServer) -> None:
    """After refusals, WebSockets and keep-alive HTTP work, and an idle WebSocket stays open."""
    srv, _ = own_server({"GIFTWIRE_HANDSHAKE_TIMEOUT_S": "1"})
    assert await refused_with(srv, b"GET /ws?token=" + b"a" * 10240 + b" HTTP/1.1\r\n") == 414
    await ws_works(srv)
    async with await Client.connect(srv.ws, srv.token(uid("idle"))) as idle:
        await asyncio.sleep(2.5)  # over the handshake timeout
        assert (await idle.request("ping"))["type"] == "pong"
    async with raw(srv) as (reader, writer):  # one keep-alive connection, idle between requests
        for _ in range(2):
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert status(head) == 200
            length = re.search(rb"content-length: (\d+)", head, re.I)
            assert length
            await asyncio.wait_for(reader.readexactly(int(length.group(1))), 5)
            await asyncio.sleep(1.5)  # over the handshake timeout, under uvicorn's keep-alive (5 s)


async def test_an_idle_keep_alive_connection_outlives_a_clients_five_seconds(
        own_server: OwnServer) -> None:
    """A keep-alive connection idle for 6 s still serves the next request."""
    # 6 s is past httpx's own 5 s expiry and uvicorn's 5 s default: no client meets a connection being closed.
    srv, _ = own_server()
    async with raw(srv) as (reader, writer):
        for pause_s in (6, 0):
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            assert status(await asyncio.wait_for(reader.readuntil(b"}"), 5)) == 200
            await asyncio.sleep(pause_s)
