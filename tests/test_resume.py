"""The per-user event log: a reconnecting client gets exactly the events it missed, in
order, then live ones; when the log no longer holds them the server says so."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import orjson
import pytest
import redis
import websockets

from protocol.client import RECONNECT_BASE_S, Client
from server.store import keys
from server.store.embedded import EmbeddedValkey
from tests.support import TEST_CLOCK, Admin, Proc, RawConn, uid

OwnServer = Callable[..., tuple[Proc, EmbeddedValkey]]


async def test_resume_gets_exactly_the_missed_events(server: Proc, admin: Admin) -> None:
    """Events sent while a client was away arrive on reconnect, in order, then live ones."""
    s, r = await admin.pair(20)
    b = await Client.connect(server.ws, server.token(r))
    async with await Client.connect(server.ws, server.token(s)) as a:
        await a.send_gift(r, "note.do", 1)
        first = await b.next_event("gift.received")
        await b.close()
        for _ in range(2):
            await a.send_gift(r, "note.do", 1)
        await admin.grant(r, 5, asset="note.mi")
        b = await b.reconnect()
        assert b.welcome["recovered"] is True
        missed = [await b.next_event() for _ in range(3)]
        assert [e["seq"] for e in missed] == [first["seq"] + 1, first["seq"] + 2, first["seq"] + 3]
        assert [e["type"] for e in missed] == ["gift.received", "gift.received", "balance.changed"]
        await admin.grant(r, 1)
        assert (await b.next_event())["seq"] == first["seq"] + 4
        await asyncio.sleep(0.2)
        assert b.events() == []
    await b.close()


async def test_resume_racing_live_gifts_has_no_gap_or_duplicate(server: Proc, admin: Admin) -> None:
    """A recipient reconnecting with `since` while gifts arrive gets every event once, in order."""
    # Repeatedly, as the server sends them; raw frames, so no client dedupe.
    r = uid("r")
    await admin.user(r)
    senders = []
    for _ in range(4):
        s = uid("s")
        await admin.user(s, real_name_verified=True, vip=True)
        await admin.grant(s, 50)
        await admin.follow(s, r)
        senders.append(s)
    seen: list[int] = []
    b = await RawConn.open(server, r)
    clients = [await Client.connect(server.ws, server.token(s)) for s in senders]

    async def gifts() -> None:
        rnd = random.Random(3)
        for k in range(12):  # 4 senders × 3 gifts: within the per-pair daily limit
            await clients[k % 4].send_gift(r, "note.do", 1)
            await asyncio.sleep(rnd.uniform(0, 0.03))

    def events(conn: RawConn) -> list[int]:
        return [f["seq"] for f in conn.frames if f["type"] == "gift.received"]

    sending = asyncio.create_task(gifts())
    for _ in range(4):
        await asyncio.sleep(0.05)
        await b.close()  # what it got before the close is all it has: resume after that
        seen += events(b)
        last = seen[-1] if seen else b.frames[0]["seq"]  # (the welcome's seq: nothing yet)
        b = await RawConn.open(server, r, since=last)
        assert b.frames[0]["type"] == "welcome" and b.frames[0]["recovered"] is True
    await sending
    await asyncio.sleep(0.5)
    seen += events(b)
    assert seen == list(range(seen[0], seen[0] + 12)), seen
    for c in clients:
        await c.close()
    await b.close()


async def test_trimmed_log_is_not_recovered(own_server: OwnServer) -> None:
    """Past the log's bound, reconnecting says recovered: false and live events still flow."""
    srv, _ = own_server({"GIFTWIRE_EVENTS_PER_USER_MAX": "10"})
    async with Admin(srv) as admin:
        u = uid("u")
        await admin.user(u)
        b = await Client.connect(srv.ws, srv.token(u))
        await admin.grant(u, 1)
        await b.next_event("balance.changed")
        await b.close()
        await admin.call("POST", "/bulk", {"grants": [
            {"id": f"many-{i}", "user": u, "asset": "note.do", "amount": 1} for i in range(300)]})
        b = await b.reconnect()
        assert b.welcome["recovered"] is False and b.welcome["seq"] == 301
        await admin.grant(u, 1)
        assert (await b.next_event("balance.changed"))["seq"] == 302
        await b.close()


async def test_gift_through_one_gateway_reaches_another(
        valkey: EmbeddedValkey, server: Proc, admin: Admin, start: Callable[..., Proc]) -> None:
    """A recipient on gateway B, and on both gateways at once, gets a gift sent through gateway A."""
    other = start("gateway", valkey.url, server.data_dir)
    s, r = await admin.pair(5)
    async with await Client.connect(server.ws, server.token(s)) as a, \
            await Client.connect(other.ws, other.token(r)) as b_other, \
            await Client.connect(server.ws, server.token(r)) as b_same:
        reply = await a.send_gift(r, "note.do", 2)
        for b in (b_other, b_same):
            got = await b.next_event("gift.received")
            assert got["transfer_id"] == reply["transfer_id"]


async def test_client_reconnects_by_itself_only_when_told(
        valkey: EmbeddedValkey, server: Proc, admin: Admin, start: Callable[..., Proc]) -> None:
    """Closed 4000 the client moves to another gateway by itself and resumes; closed 4009 it stays closed."""
    # 4000 is a gateway shutting down, 4009 abuse.
    leaving = start("gateway", valkey.url, server.data_dir, {"GIFTWIRE_BAD_FRAMES_MAX": "3"})
    s, r = await admin.pair(5)
    targets = iter([server.ws] * 20)
    b = await Client.connect(leaving.ws, leaving.token(r), auto_reconnect=True,
                             urls=lambda: next(targets))
    leaving.signal(15)
    for _ in range(200):  # the gateway drains, closes with 4000, the client moves on
        if b.reconnects:
            break
        await asyncio.sleep(0.05)
    await b.connected()
    assert b.reconnects == 1 and b.welcome["recovered"] is True
    async with await Client.connect(server.ws, server.token(s)) as a:
        reply = await a.send_gift(r, "note.do", 1)
    assert (await b.next_event("gift.received"))["transfer_id"] == reply["transfer_id"]
    await b.close()

    abuser = start("gateway", valkey.url, server.data_dir, {"GIFTWIRE_BAD_FRAMES_MAX": "3"})
    c = await Client.connect(abuser.ws, abuser.token(uid("x")), auto_reconnect=True)
    for _ in range(5):
        await c.send_raw("{")
    with pytest.raises(ConnectionError):
        while True:
            await c.next_event(timeout_s=5)
    assert c.reconnects == 0
    await c.close()


async def test_an_event_lost_live_is_filled_in_from_the_log(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """An event logged but lost live is filled in from the log once the next shows the gap: once, in order."""
    # It never reached the channel: a publish on a slot's new node before the gateway's subscription moved
    # there. No reconnect is needed.
    srv, vk = own_server()
    async with Admin(srv) as admin:
        s, r = await admin.pair(20)
        b = await Client.connect(srv.ws, srv.token(r))
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            await a.send_gift(r, "note.do", 1)
            first = await b.next_event("gift.received")
            # the lost event: logged as `emit` logs it, never published
            raw = redis.Redis(unix_socket_path=vk.url.removeprefix("unix://"), decode_responses=True)
            uk = keys.user(r)
            seq = raw.hincrby(uk.profile, "seq", 1)
            lost = {**first, "transfer_id": f"{s}:lost", "gift_id": "lost", "seq": seq}
            raw.xadd(uk.events, {"e": orjson.dumps(lost).decode(), "r": "-"}, id=f"{seq}-0")
            raw.close()
            await a.send_gift(r, "note.do", 1)
            got = [await b.next_event() for _ in range(2)]
            assert [(e["transfer_id"], e["seq"]) for e in got] == [
                (f"{s}:lost", first["seq"] + 1), (got[1]["transfer_id"], first["seq"] + 2)]
            assert got[1]["transfer_id"] != first["transfer_id"]
            await asyncio.sleep(0.2)
            assert b.events() == []
        await b.close()


async def test_since_in_the_url_past_any_log_is_not_recovered(server: Proc, admin: Admin) -> None:
    """`?since=` past the log, however long, answers recovered: false; not a whole number, it is ignored."""
    # As the same `since` in an `auth` frame does.
    u = uid()
    await admin.user(u)
    for since, recovered in (("99", False), ("9" * 19, False), ("9" * 40, False),
                             ("²", None), ("-1", None), ("x", None)):
        async with websockets.connect(f"{server.ws}?token={server.token(u)}&since={since}") as ws:
            welcome = orjson.loads(await ws.recv())
            assert welcome["type"] == "welcome" and welcome.get("recovered") is recovered, since


async def test_reconnect_stops_at_a_final_close_code_of_its_own_attempt(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A reconnection refused with a final code (token expired: 4003) stops at once with that code."""
    # Instead of retrying for seconds.
    srv, _ = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = uid()
        await admin.user(u)
        c = await Client.connect(srv.ws, srv.token(u, ttl_s=60))
        await admin.advance(120_000)  # the token is now expired on the platform's clock
        started = time.monotonic()
        with pytest.raises(websockets.ConnectionClosed) as refused:
            await c.reconnect()
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 4003
        # one attempt: eight, with their backoff, took ~11 s
        assert time.monotonic() - started < 20 * RECONNECT_BASE_S
        await c.close()


async def test_fresh_connections_while_offers_and_grants_flow_miss_no_event(
        own_server: OwnServer) -> None:
    """Fresh connections amid interleaved offers and grants each get every event after their welcome's seq."""
    # The user confirms gifts, so each gift is an offer and an event; grants are `balance.changed`. None is
    # lost between reading the seq and the waiting offers: an offer made in between once made the events
    # before it look seen.
    srv, _ = own_server({"GIFTWIRE_GIFTS_PER_DAY": "1000", "GIFTWIRE_PAIR_GIFTS_PER_DAY": "1000"})
    async with Admin(srv) as admin:
        s, r = await admin.pair(100, recipient={"confirm_gifts": True})
        sender = await Client.connect(srv.ws, srv.token(s))
        conns: list[tuple[int, list[int]]] = []

        async def flow() -> None:
            for i in range(30):
                await admin.grant(r, 1)
                await sender.send_gift(r, "note.do", 1, gift_id=f"f{i}")

        running = asyncio.create_task(flow())
        opened = []
        while not running.done() and len(opened) < 7:  # (8 connections a user per gateway)
            seen: list[int] = []
            c = await Client.connect(srv.ws, srv.token(r),
                                     on_event=lambda e, seen=seen: seen.append(e.get("seq", 0)))
            opened.append(c)
            conns.append((c.welcome["seq"], seen))
            await asyncio.sleep(0.1)
        await running
        await asyncio.sleep(1.0)  # the last events reach every connection
        final = max(max(seen, default=0) for _, seen in conns)
        assert final >= 60  # 30 grants and 30 offers
        for welcomed, seen in conns:
            after = sorted(x for x in seen if x > welcomed)
            assert after == list(range(welcomed + 1, final + 1)), (welcomed, after)
        for c in (*opened, sender):
            await c.close()
