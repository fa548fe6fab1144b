"""The movable test clock: refused unless enabled; when enabled, one call moves the time of
every process sharing the Redis (gateways, workers, scripts) forward at once."""

from __future__ import annotations

import time
from collections.abc import Callable

from protocol.client import Client
from server.store.embedded import EmbeddedValkey
from tests.support import DAY_MS, TEST_CLOCK, Admin, Proc, metric


async def test_clock_is_locked_unless_enabled(server: Proc, admin: Admin) -> None:
    """A production-like server refuses to move its clock with 403 clock_locked, whatever the body."""
    # A bad body is not judged first.
    for body in ({"advance_ms": 1000}, {"advance_ms": -1000}, {}):
        r = await admin.call("POST", "/clock", body, ok=False)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "clock_locked"), body
    now = await admin.call("GET", "/clock")
    assert now["movable"] is False and abs(now["now_ms"] - time.time() * 1000) < 5000


async def test_one_advance_moves_every_process(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]], start: Callable[..., Proc]) -> None:
    """Two days forward through one gateway show in another's `welcome`; bad advances are 400 bad_field."""
    srv, vk = own_server(TEST_CLOCK)
    other = start("gateway", vk.url, srv.data_dir, TEST_CLOCK)
    async with Admin(srv) as admin:
        before = await admin.now_ms()
        after = await admin.advance(2 * DAY_MS)
        assert after - before >= 2 * DAY_MS
        async with await Client.connect(other.ws, other.token("u1", ttl_s=10 * 86400)) as c:
            assert abs(c.welcome["server_time_ms"] - after) < 5000
        for bad in (0, -5, "x", 10**15):
            r = await admin.call("POST", "/clock", {"advance_ms": bad}, ok=False)
            assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_field"), bad


async def test_a_moved_clock_leaves_the_settlement_latency_metric_real(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Two days forward, `giftwire_settlement_seconds` still has a gift settle in seconds, not days."""
    # Stream ids are real time; the metric is too.
    srv, _ = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        await admin.advance(2 * DAY_MS)
        s, r = await admin.pair(5)
        async with await Client.connect(srv.ws, srv.token(s, ttl_s=10 * 86400)) as c:
            assert (await c.send_gift(r, "note.do", 1))["type"] == "gift.confirmed"
    assert await metric(srv, "giftwire_settlement_seconds_count") == 1
    assert await metric(srv, "giftwire_settlement_seconds_sum") < 5  # not 2 days
