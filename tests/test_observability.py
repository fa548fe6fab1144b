"""Metrics an operator scrapes, a health check that proves the pub/sub path, JSON logs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx
import redis

from protocol.client import Client
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc

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
            assert (await a.send_gift(r, "note.do", 1))["type"] == "gift.confirmed"
            assert (await a.send_gift(r, "note.do", 5))["code"] == "insufficient_balance"
            assert (await a.send_gift(s, "note.do", 1))["code"] == "self_gift"
            async with httpx.AsyncClient(base_url=srv.http) as http:
                text = (await http.get("/metrics")).text
                assert metric(text, "giftwire_connections") == 1
                await a.close()
                await asyncio.sleep(0.3)
                after = (await http.get("/metrics")).text
        assert metric(text, 'giftwire_gifts_settled_total{outcome="delivered"}') == 1
        assert metric(text, 'giftwire_gifts_rejected_total{reason="insufficient_balance"}') == 1
        assert metric(text, 'giftwire_gifts_rejected_total{reason="self_gift"}') == 1
        assert metric(text, "giftwire_settlement_seconds_count") == 2
        assert metric(text, "giftwire_frames_in_total") == 3  # the three requests
        assert metric(text, "giftwire_frames_out_total") == 4  # the welcome and three replies, once each
        assert metric(text, 'giftwire_stream_backlog{partition="0"}') >= 0
        assert metric(after, "giftwire_connections") == 0
        assert metric(after, 'giftwire_partition_held{partition="0"}') == 1  # serve's worker
        assert metric(after, 'giftwire_disconnects_total{reason="client"}') == 1


async def test_health_proves_pubsub_and_recovers(own_server: OwnServer) -> None:
    """/health checks a round trip through pub/sub; after Valkey drops the subscriber
    connection, giftwire resubscribes, health is green again and gifts are delivered live."""
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
