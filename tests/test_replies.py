"""Every request answered once, with a reply that describes it; every event once per
connection. Frames are read raw (no client-side dedupe), as a widget would see them."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from protocol.client import Client
from server.store import keys
from server.store.embedded import EmbeddedValkey
from tests.support import TEST_CLOCK, Admin, Proc, RawConn, run_audit, uid

CONFIRM = {"confirm_gifts": True}
SETTLE_S = 0.4  # time for any stray second reply or duplicate event to show up


@pytest.fixture(scope="module")
def second_gateway(server: Proc, valkey: EmbeddedValkey, start_module: Callable[..., Proc]) -> Iterator[Proc]:
    """Another gateway process on the shared Valkey (same secrets, same settlement stream)."""
    yield start_module("gateway", valkey.url, server.data_dir)


def is_reply(request_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("id") == request_id


def without_id(frame: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in frame.items() if k != "id"}


async def test_one_gift_id_many_ways_each_request_answered_for_itself(
        server: Proc, second_gateway: Proc, admin: Admin) -> None:
    """12 racing sends of one gift_id: those matching the record confirm alike, others gift_id_conflict."""
    # Counts 1..10, two repeated, over two gateways without waiting; each request gets exactly one reply.
    s, r = await admin.pair(100)
    a, b = await RawConn.open(server, s), await RawConn.open(second_gateway, s)
    gift_id = uid("g")
    counts = [*range(1, 11), 3, 8]
    conns = [a if i % 2 == 0 else b for i in range(len(counts))]
    await asyncio.gather(*(c.send("gift.send", id=f"q{i}", gift_id=gift_id, to=r, asset="note.do",
                                  count=n) for i, (c, n) in enumerate(zip(conns, counts, strict=True))))
    for i, c in enumerate(conns):
        await c.wait_for(is_reply(f"q{i}"))
    await asyncio.sleep(SETTLE_S)
    replies = [c.replies(f"q{i}") for i, c in enumerate(conns)]
    assert [len(x) for x in replies] == [1] * len(counts)
    won = 100 - (await admin.balances(s))["note.do"]
    assert (await admin.balances(r)) == {"note.do": won}
    for i, (reply,) in enumerate(replies):
        if counts[i] == won:
            assert (reply["type"], reply["count"], reply["to"]) == ("gift.confirmed", won, r)
        else:
            assert (reply["type"], reply["code"]) == ("gift.rejected", "gift_id_conflict"), reply
    confirmations = [without_id(x[0]) for x in replies if x[0]["type"] == "gift.confirmed"]
    assert len(confirmations) == counts.count(won)
    assert all(c == confirmations[0] for c in confirmations)  # the same stored confirmation
    assert a.seqs_once() and b.seqs_once()
    await a.close()
    await b.close()


async def test_two_recipients_one_gift_id_each_reply_names_its_request(
        server: Proc, second_gateway: Proc, admin: Admin) -> None:
    """One gift_id sent to two recipients at once: the confirmation names its own request's recipient."""
    # Sent from two gateways; the other request is told gift_id_conflict.
    s, r1 = await admin.pair(10)
    r2 = uid("r")
    await admin.user(r2)
    await admin.follow(s, r2)
    a, b = await RawConn.open(server, s), await RawConn.open(second_gateway, s)
    gift_id = uid("g")
    await asyncio.gather(a.send("gift.send", id="one", gift_id=gift_id, to=r1, asset="note.do", count=1),
                         b.send("gift.send", id="two", gift_id=gift_id, to=r2, asset="note.do", count=1))
    (one,) = await a.wait_for(is_reply("one"))
    (two,) = await b.wait_for(is_reply("two"))
    outcomes = sorted([(one["type"], one.get("to")), (two["type"], two.get("to"))], key=str)
    assert outcomes in ([("gift.confirmed", r1), ("gift.rejected", None)],
                        [("gift.confirmed", r2), ("gift.rejected", None)])
    (loser,) = [m for m in (one, two) if m["type"] == "gift.rejected"]
    assert loser["code"] == "gift_id_conflict"
    await asyncio.sleep(SETTLE_S)
    assert len(a.replies("one")) == len(b.replies("two")) == 1
    assert a.seqs_once() and b.seqs_once()
    await a.close()
    await b.close()


async def test_worker_killed_after_confirming_sends_no_second_copy(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """A worker killed after confirming, before acking: the re-run sends no event twice to either side."""
    # SIGKILLed after the confirmation went out; the next worker re-runs the entry, and no connection of
    # either side gets any event twice.
    url = fresh_valkey().url
    gateway = start("gateway", url)
    async with Admin(gateway) as admin:
        s, r = await admin.pair(10)
        sender, other, recipient = (await RawConn.open(gateway, s), await RawConn.open(gateway, s),
                                    await RawConn.open(gateway, r))
        await sender.send("gift.send", id="g1", gift_id="once", to=r, asset="note.do", count=2)
        doomed = start("worker", url, gateway.data_dir, {"GIFTWIRE_FAULT": "kill_after_finalize"})
        assert doomed.wait() == -signal.SIGKILL
        (reply,) = await sender.wait_for(is_reply("g1"))
        assert reply["type"] == "gift.confirmed"
        raw = redis.Redis(unix_socket_path=url.removeprefix("unix://"), decode_responses=True)
        assert raw.xpending(keys.settle_stream(0), keys.SETTLE_GROUP)["pending"] == 1
        start("worker", url, gateway.data_dir, {"GIFTWIRE_CLAIM_IDLE_MS": "200"})
        for _ in range(200):  # until the claimed entry is re-run and acknowledged
            if raw.xpending(keys.settle_stream(0), keys.SETTLE_GROUP)["pending"] == 0:
                break
            await asyncio.sleep(0.05)
        assert raw.xpending(keys.settle_stream(0), keys.SETTLE_GROUP)["pending"] == 0
        await asyncio.sleep(SETTLE_S)
        for conn, kind in ((sender, "gift.confirmed"), (other, "gift.confirmed"),
                           (recipient, "gift.received")):
            assert [f["type"] for f in conn.frames].count(kind) == 1, conn.frames
            assert conn.seqs_once()
            await conn.close()
        assert await admin.balances(r) == {"note.do": 2}
        code, out = await run_audit(url)
        assert code == 0 and "(0 in flight)" in out, out


async def test_second_offer_action_gets_its_own_answer(
        server: Proc, second_gateway: Proc, admin: Admin) -> None:
    """Accept, decline, accept again: each request gets one documented reply; each connection one outcome."""
    # The decline comes from the same and another connection.
    s, r = await admin.pair(10, recipient=CONFIRM)
    b1, b2 = await RawConn.open(server, r), await RawConn.open(second_gateway, r)
    async with await Client.connect(server.ws, server.token(s)) as a:
        await a.send_gift(r, "note.do", 4)
        (offer,) = await b1.wait_for(lambda f: f["type"] == "gift.offer")
        tid = offer["transfer_id"]
        await b1.send("gift.accept", id="acc", offer_id=tid)
        (acc,) = await b1.wait_for(is_reply("acc"))
        assert acc["type"] == "gift.received"
        await b1.send("gift.decline", id="dec1", offer_id=tid)
        await b2.send("gift.decline", id="dec2", offer_id=tid)
        await b1.send("gift.accept", id="acc2", offer_id=tid)
        for conn, rid in ((b1, "dec1"), (b2, "dec2")):
            (late,) = await conn.wait_for(is_reply(rid))
            assert (late["type"], late["code"]) == ("gift.rejected", "offer_accepted")
        (again,) = await b1.wait_for(is_reply("acc2"))
        assert without_id(again) == without_id(acc)  # a repeated accept: the stored answer
        await a.next_event("gift.accepted")
    await asyncio.sleep(SETTLE_S)
    for conn, rid in ((b1, "acc"), (b1, "dec1"), (b2, "dec2"), (b1, "acc2")):
        assert len(conn.replies(rid)) == 1
    assert [f["type"] for f in b2.frames].count("gift.received") == 1
    assert b1.seqs_once() and b2.seqs_once()
    await b1.close()
    await b2.close()


async def test_accept_racing_decline_one_winner_one_rejection(
        server: Proc, second_gateway: Proc, admin: Admin) -> None:
    """Accept racing decline from two gateways: one wins, the other hears how the offer ended."""
    # Both connections see the outcome exactly once; balances match the winner.
    for _ in range(6):
        s, r = await admin.pair(10, recipient=CONFIRM)
        b1, b2 = await RawConn.open(server, r), await RawConn.open(second_gateway, r)
        async with await Client.connect(server.ws, server.token(s)) as a:
            await a.send_gift(r, "note.do", 3)
            (offer,) = await b1.wait_for(lambda f: f["type"] == "gift.offer")
            await asyncio.gather(b1.send("gift.accept", id="acc", offer_id=offer["transfer_id"]),
                                 b2.send("gift.decline", id="dec", offer_id=offer["transfer_id"]))
            (acc,) = await b1.wait_for(is_reply("acc"))
            (dec,) = await b2.wait_for(is_reply("dec"))
            if acc["type"] == "gift.received":
                assert (dec["type"], dec["code"]) == ("gift.rejected", "offer_accepted")
                assert await admin.balances(r) == {"note.do": 3}
            else:
                assert (acc["type"], acc["code"]) == ("gift.rejected", "offer_declined")
                assert dec["type"] == "gift.voided"
                assert await admin.balances(r) == {}
            await a.next_event("gift.accepted", "gift.voided")
        await asyncio.sleep(0.1)
        outcome = {"gift.received", "gift.voided"}
        assert sum(f["type"] in outcome for f in b1.frames) == 1
        assert sum(f["type"] in outcome for f in b2.frames) == 1
        assert b1.seqs_once() and b2.seqs_once()
        await b1.close()
        await b2.close()


async def test_accept_after_the_deadline_is_told_expired(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """An accept after the offer's deadline is gift.rejected offer_expired; the sender is refunded."""
    # Before or after the sweep; both sides get gift.voided once.
    srv, _ = own_server({"GIFTWIRE_SWEEP_INTERVAL_MS": "3600000", **TEST_CLOCK})
    async with Admin(srv) as admin:
        s, r = await admin.pair(10, recipient=CONFIRM)
        b = await RawConn.open(srv, r)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            await a.send_gift(r, "note.do", 5)
            (offer,) = await b.wait_for(lambda f: f["type"] == "gift.offer")
            await admin.advance(601_000)  # past the 10-minute deadline; the sweep is an hour away
            await b.send("gift.accept", id="late", offer_id=offer["transfer_id"])
            (late,) = await b.wait_for(is_reply("late"))
            assert (late["type"], late["code"]) == ("gift.rejected", "offer_expired")
            voided = await a.next_event("gift.voided")
            assert (voided["reason"], voided["balance"]) == ("timeout", 10)
            await b.send("gift.accept", id="later", offer_id=offer["transfer_id"])
            (later,) = await b.wait_for(is_reply("later"))
            assert (later["type"], later["code"]) == ("gift.rejected", "offer_expired")
        await asyncio.sleep(SETTLE_S)
        assert [f["type"] for f in b.frames].count("gift.voided") == 1
        assert b.seqs_once()
        await b.close()
        assert await admin.balances(s) == {"note.do": 10}
        assert await admin.balances(r) == {}


async def test_a_request_nobody_answers_times_out_once(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """With no worker, a gift request is answered `error timeout` once, after GIFTWIRE_REQUEST_TIMEOUT_S."""
    # Its slot is freed; when a worker settles it later, the confirmation arrives as a plain event, not as a
    # second reply.
    url = fresh_valkey().url
    gateway = start("gateway", url, None, {"GIFTWIRE_REQUEST_TIMEOUT_S": "1"})
    async with Admin(gateway) as admin:
        s, r = await admin.pair(10)
        conn = await RawConn.open(gateway, s)
        await conn.send("gift.send", id="slow", gift_id="slow1", to=r, asset="note.do", count=1)
        (answer,) = await conn.wait_for(is_reply("slow"), timeout_s=10)
        assert (answer["type"], answer["code"], answer["temporary"]) == ("error", "timeout", True)
        start("worker", url, gateway.data_dir)
        (late,) = await conn.wait_for(lambda f: f["type"] == "gift.confirmed", timeout_s=15)
        assert "id" not in late
        await asyncio.sleep(SETTLE_S)
        assert len(conn.replies("slow")) == 1 and conn.seqs_once()
        await conn.close()
