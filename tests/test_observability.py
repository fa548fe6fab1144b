"""Metrics an operator scrapes, a health check that proves the pub/sub path, JSON logs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx
import orjson
import pytest
import redis
import websockets

from protocol.client import Client
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, RawConn

OwnServer = Callable[..., tuple[Proc, EmbeddedValkey]]


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


async def test_metrics_count_what_happened(own_server: OwnServer) -> None:
    """/metrics reports connections, frames, settled and rejected gifts, latency, backlog."""
    srv, _ = own_server()
    async with Admin(srv) as admin:
        s, r = await admin.pair(2)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            assert (await a.send_gift(r, "note.do", 1, gift_id="g1"))["type"] == "gift.confirmed"
            assert (await a.send_gift(r, "note.do", 5))["code"] == "insufficient_balance"
            assert (await a.send_gift(s, "note.do", 1))["code"] == "self_gift"
            assert (await a.send_gift(r, "note.do", 2, gift_id="g1"))["code"] == "gift_id_conflict"
            async with httpx.AsyncClient(base_url=srv.http) as http:
                text = (await http.get("/metrics")).text
                assert metric(text, "giftwire_connections") == 1
                await a.close()
                await asyncio.sleep(0.3)
                after = (await http.get("/metrics")).text
        assert metric(text, 'giftwire_gifts_settled_total{outcome="delivered"}') == 1
        assert metric(text, 'giftwire_gifts_rejected_total{reason="insufficient_balance"}') == 1
        assert metric(text, 'giftwire_gifts_rejected_total{reason="self_gift"}') == 1
        assert metric(text, 'giftwire_gifts_rejected_total{reason="gift_id_conflict"}') == 1
        assert metric(text, "giftwire_settlement_seconds_count") == 3
        assert metric(text, "giftwire_frames_in_total") == 4  # the four requests
        assert metric(text, "giftwire_frames_out_total") == 5  # the welcome and four replies, once each
        assert metric(after, 'giftwire_stream_backlog{partition="0"}') == 0  # all settled
        assert metric(after, "giftwire_connections") == 0
        assert metric(after, 'giftwire_partition_held{partition="0"}') == 1  # serve's worker
        assert metric(after, 'giftwire_disconnects_total{reason="client"}') == 1


async def test_the_backlog_counts_gifts_no_worker_settles(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """With no worker, waiting gifts show in `giftwire_stream_backlog`; past the bound, `overloaded`."""
    # `giftwire_partition_held` is 0 (page someone). A burst past GIFTWIRE_STREAM_BACKLOG_MAX (3) is answered
    # `overloaded` at once, between samples, each counted in `giftwire_requests_refused_total`.
    gateway = start("gateway", fresh_valkey().url, None, {"GIFTWIRE_STREAM_BACKLOG_MAX": "3"})
    async with Admin(gateway) as admin:
        s, r = await admin.pair(5)
        conn = await RawConn.open(gateway, s)
        for i in range(6):  # sent back to back: well within one 250 ms sample
            await conn.send("gift.send", id=f"q{i}", gift_id=f"w{i}", to=r, asset="note.do",
                            count=1)
        refused = await conn.wait_for(lambda f: f.get("code") == "overloaded", count=3)
        assert sorted(f["id"] for f in refused) == ["q3", "q4", "q5"]
        assert refused[0]["temporary"] is True
        async with httpx.AsyncClient(base_url=gateway.http) as http:
            for _ in range(100):
                text = (await http.get("/metrics")).text
                if metric(text, 'giftwire_stream_backlog{partition="0"}') == 3:
                    break
                await asyncio.sleep(0.1)
        assert metric(text, 'giftwire_stream_backlog{partition="0"}') == 3
        assert metric(text, 'giftwire_partition_held{partition="0"}') == 0
        assert metric(text, 'giftwire_requests_refused_total{code="overloaded"}') == 3
        assert [f["id"] for f in conn.frames if "id" in f] == ["q3", "q4", "q5"]  # the rest wait
        await conn.close()
        assert await admin.balances(s) == {"note.do": 5}  # nothing settled


async def test_settled_gifts_are_counted_by_how_they_ended(own_server: OwnServer) -> None:
    """Settled gifts are counted by how they ended: `offered`, `accepted`, `voided`, `rejected`."""
    # Two offers made (2), one accepted, one declined (voided), and a gift the recipient's side refused
    # (banned: rejected), as the README names them.
    srv, _ = own_server()
    async with Admin(srv) as admin:
        s, r = await admin.pair(10, recipient={"confirm_gifts": True})
        s2, banned = await admin.pair(10, recipient={"banned": True})
        async with await Client.connect(srv.ws, srv.token(s)) as a, \
                await Client.connect(srv.ws, srv.token(r)) as b, \
                await Client.connect(srv.ws, srv.token(s2)) as c:
            offers = []
            for _ in range(2):
                assert (await a.send_gift(r, "note.do", 1))["delivery"] == "pending"
                offers.append((await b.next_event("gift.offer"))["transfer_id"])
            assert (await b.request("gift.accept", offer_id=offers[0]))["type"] == "gift.received"
            assert (await b.request("gift.decline", offer_id=offers[1]))["type"] == "gift.voided"
            assert (await c.send_gift(banned, "note.do", 1))["code"] == "recipient_banned"
            await a.next_event("gift.voided")
            async with httpx.AsyncClient(base_url=srv.http) as http:
                text = (await http.get("/metrics")).text
    settled = {o: float(n) for o, n in re.findall(
        r'^giftwire_gifts_settled_total\{outcome="(\w+)"\} (\S+)$', text, re.M)}
    assert settled == {"offered": 2, "accepted": 1, "voided": 1, "rejected": 1}


async def test_server_side_closes_are_counted_under_their_reasons(own_server: OwnServer) -> None:
    """Closes for too many connections (4005), too big (1009), not UTF-8 (1007) count under those reasons."""
    # Not as a client leaving.
    srv, _ = own_server({"GIFTWIRE_CONNECTIONS_PER_USER_MAX": "1", "GIFTWIRE_WS_MAX_BYTES": "2048"})
    async with Admin(srv) as admin:
        s, _ = await admin.pair(1)
    url = f"{srv.ws}?token={srv.token(s)}"
    async with websockets.connect(url) as first:
        await first.recv()  # welcome
        async with websockets.connect(url) as second:
            with pytest.raises(websockets.ConnectionClosed):
                await second.recv()
            assert second.close_code == 4005
    for payload, code in ((("x" * 4096), 1009), (b"\xff\xfe{}", 1007)):
        async with websockets.connect(url) as ws:
            await ws.recv()
            await ws.send(payload, text=True)
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == code
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(base_url=srv.http) as http:
        text = (await http.get("/metrics")).text
    assert metric(text, 'giftwire_disconnects_total{reason="too_many_connections"}') == 1
    assert metric(text, 'giftwire_disconnects_total{reason="message_too_big"}') == 1
    assert metric(text, 'giftwire_disconnects_total{reason="invalid_utf8"}') == 1
    assert metric(text, 'giftwire_disconnects_total{reason="client"}') == 1  # the first one


async def test_health_proves_pubsub_and_recovers(own_server: OwnServer) -> None:
    """/health round-trips pub/sub; when Valkey drops the subscriber it resubscribes; gifts arrive live."""
    # Health is green again after the resubscription.
    srv, vk = own_server()
    async with Admin(srv) as admin:
        s, r = await admin.pair(5)
        async with httpx.AsyncClient(base_url=srv.http) as http:
            body = (await http.get("/health")).json()
            assert body["pubsub"] is True and body["status"] == "ok"
            async with await Client.connect(srv.ws, srv.token(r)) as b:
                raw = redis.Redis(unix_socket_path=str(vk.socket))
                assert raw.client_kill_filter(_type="pubsub") >= 1
                raw.close()
                for _ in range(50):
                    if (await http.get("/health")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                assert (await http.get("/health")).json()["pubsub"] is True
                async with await Client.connect(srv.ws, srv.token(s)) as a:
                    reply = await a.send_gift(r, "note.do", 1)
                assert (await b.next_event("gift.received"))["transfer_id"] == reply["transfer_id"]


async def test_a_connection_refused_while_redis_is_away_is_counted(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """A WebSocket that arrives while Redis is away closes 1011 and counts `{reason="unavailable"}`."""
    vk = fresh_valkey()
    gateway = start("gateway", vk.url, None, {})
    vk.stop()
    async with websockets.connect(f"{gateway.ws}?token={gateway.token('alice')}") as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 30)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    async with httpx.AsyncClient(base_url=gateway.http) as http:
        text = (await http.get("/metrics")).text
    assert metric(text, 'giftwire_disconnects_total{reason="unavailable"}') == 1


async def test_malformed_http_requests_log_one_json_line_a_window(own_server: OwnServer) -> None:
    """Twenty garbage HTTP requests are each answered 400 but logged once, as JSON, not twenty plain lines."""
    srv, _ = own_server({})
    host, port = srv.http.removeprefix("http://").rsplit(":", 1)
    for _ in range(20):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GARBAGE\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(64), 10)).startswith(b"HTTP/1.1 400")
        writer.close()
    await asyncio.sleep(0.3)
    lines = [line for line in srv.log_path.read_text().splitlines() if "Invalid HTTP" in line]
    assert len(lines) == 1, lines
    assert orjson.loads(lines[0])["logger"] == "uvicorn.error"


def test_the_log_filter_never_holds_back_a_traceback() -> None:
    """uvicorn's repeated messages are held back, but each unhandled exception's traceback goes through."""
    import logging

    from server.logs import OncePerWindow

    f = OncePerWindow(window_s=60)

    def record(msg: str, exc: BaseException | None = None) -> logging.LogRecord:
        info = (type(exc), exc, None) if exc else None
        return logging.LogRecord("uvicorn.error", logging.ERROR, "", 0, msg, (), info)

    assert [f.filter(record("Invalid HTTP request received.")) for _ in range(3)] == [True, False, False]
    failures = [record("Exception in ASGI application\n", ValueError(str(i))) for i in range(3)]
    assert all(f.filter(r) for r in failures)
