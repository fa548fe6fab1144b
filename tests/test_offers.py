"""Confirmation-required delivery: offers, accept, decline, timeout, and their races."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from protocol.client import Client
from server.store.embedded import EmbeddedValkey
from tests.support import TEST_CLOCK, Admin, Proc, RawConn

CONFIRM = {"confirm_gifts": True}


async def connect(server: Proc, user: str) -> Client:
    return await Client.connect(server.ws, server.token(user))


async def test_offer_accept_posts(server: Proc, admin: Admin) -> None:
    """Cards wait in escrow until the recipient accepts; both sides are told."""
    s, r = await admin.pair(10, recipient=CONFIRM)
    async with await connect(server, s) as a, await connect(server, r) as b:
        reply = await a.send_gift(r, "note.do", 4)
        assert (reply["type"], reply["delivery"], reply["balance"]) == ("gift.confirmed", "pending", 6)
        offer = await b.next_event("gift.offer")
        assert (offer["from"], offer["count"]) == (s, 4)
        assert await admin.balances(r) == {}
        got = await b.request("gift.accept", offer_id=offer["transfer_id"])
        assert (got["type"], got["balance"]) == ("gift.received", 4)
        told = await a.next_event("gift.accepted")
        assert told["transfer_id"] == offer["transfer_id"]
        again = await b.request("gift.accept", offer_id=offer["transfer_id"])
        assert again == {**got, "id": again["id"]}  # a retried accept gets the same answer
    assert await admin.balances(r) == {"note.do": 4}
    assert await admin.balances(s) == {"note.do": 6}


async def test_offer_decline_returns_cards_and_quota(server: Proc, admin: Admin) -> None:
    """Declining voids the gift: the sender gets the cards and the daily quota back."""
    s, r = await admin.pair(10, recipient=CONFIRM)
    async with await connect(server, s) as a, await connect(server, r) as b:
        sent = await a.send_gift(r, "note.do", 4)
        offer = await b.next_event("gift.offer")
        voided = await b.request("gift.decline", offer_id=offer["transfer_id"])
        assert (voided["type"], voided["reason"]) == ("gift.voided", "declined")
        told = await a.next_event("gift.voided")
        assert (told["balance"], told["quota_left"]) == (10, sent["quota_left"] + 1)
        assert told["to"] == r and "to" not in voided  # the sender's names the recipient
        late = await b.request("gift.accept", offer_id=offer["transfer_id"])
        assert (late["type"], late["code"]) == ("gift.rejected", "offer_declined")  # says why
    assert await admin.balances(s) == {"note.do": 10}
    assert await admin.balances(r) == {}


async def test_offer_waits_for_next_connect(server: Proc, admin: Admin) -> None:
    """An offer made while the recipient was away arrives when they connect."""
    s, r = await admin.pair(10, recipient=CONFIRM)
    async with await connect(server, s) as a:
        reply = await a.send_gift(r, "note.do", 2)
    async with await connect(server, r) as b:
        offer = await b.next_event("gift.offer")
        assert offer["transfer_id"] == reply["transfer_id"]
        assert (await b.request("gift.accept", offer_id=offer["transfer_id"]))["type"] == "gift.received"


async def test_offer_times_out(own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """An offer nobody answers is voided after the 10-minute timeout, and both sides are told."""
    # The test clock of the server and of a separate worker is moved past it.
    srv, _ = own_server({"GIFTWIRE_SWEEP_INTERVAL_MS": "100", **TEST_CLOCK}, workers=1)
    async with Admin(srv) as admin:
        s, r = await admin.pair(10, recipient=CONFIRM)
        async with await connect(srv, s) as a, await connect(srv, r) as b:
            await a.send_gift(r, "note.do", 3)
            await b.next_event("gift.offer")
            await admin.advance(599_000)
            await asyncio.sleep(0.3)  # sweeps run, and find nothing due yet
            assert [e for e in b.events() if e["type"] == "gift.voided"] == []
            await admin.advance(2_000)
            void_r = await b.next_event("gift.voided", timeout_s=5)
            void_s = await a.next_event("gift.voided", timeout_s=5)
        assert void_r["reason"] == void_s["reason"] == "timeout"
        assert void_s["balance"] == 10
        assert await admin.balances(s) == {"note.do": 10}


async def test_accept_racing_timeout_has_one_outcome(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Accepts sent around the offer deadline end each gift accepted or voided, never both."""
    # The test clock is moved to just before or after the deadline, while the sweep runs every 20 ms.
    # (a minute's timeout: twelve moves stay within the clients' hour-long tokens)
    srv, _ = own_server({**TEST_CLOCK, "GIFTWIRE_OFFER_TIMEOUT_S": "60",
                         "GIFTWIRE_SWEEP_INTERVAL_MS": "20"}, workers=1)
    # ms from the deadline at which each accept goes: well before, straddling it, well after
    offsets = [-3000, -40, -20, -10, -5, -2, 0, 2, 5, 10, 20, 3000]
    async with Admin(srv) as admin:
        senders = [await admin.pair(10, recipient=CONFIRM) for _ in offsets]
        outcomes = []
        for (s, r), offset in zip(senders, offsets, strict=True):
            async with await connect(srv, s) as a, await connect(srv, r) as b:
                await a.send_gift(r, "note.do", 5)
                offer = await b.next_event("gift.offer")
                await admin.advance(offer["expires_at_ms"] + offset - await admin.now_ms())
                answer = await b.request("gift.accept", offer_id=offer["transfer_id"])
                final = await a.next_event("gift.accepted", "gift.voided", timeout_s=5)
                await asyncio.sleep(0.1)
                assert [e for e in a.events() if e["type"] in ("gift.accepted", "gift.voided")] == []
            bal_s, bal_r = await admin.balances(s), await admin.balances(r)
            if answer["type"] == "gift.received":
                assert final["type"] == "gift.accepted"
                assert (bal_s, bal_r) == ({"note.do": 5}, {"note.do": 5})
            else:
                assert (answer["type"], answer["code"]) == ("gift.rejected", "offer_expired")
                assert final["type"] == "gift.voided"
                assert (bal_s, bal_r) == ({"note.do": 10}, {})
            outcomes.append(answer["type"])
        assert set(outcomes) == {"gift.received", "gift.rejected"}, outcomes


async def test_a_fresh_connection_gets_the_waiting_offers_oldest_first(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A connection without `since` gets every waiting offer again, in the order they were made (by seq)."""
    # They came in the offers hash's order, which is no order (an offer's JSON is past a listpack's bound).
    srv, _ = own_server({"GIFTWIRE_GIFTS_PER_DAY": "20", "GIFTWIRE_PAIR_GIFTS_PER_DAY": "20"})
    async with Admin(srv) as admin:
        s, r = await admin.pair(20, recipient=CONFIRM)
        async with await connect(srv, s) as a:
            for i in range(10):
                assert (await a.send_gift(r, "note.do", 1, gift_id=f"o{i}"))["delivery"] == "pending"
        fresh = await RawConn.open(srv, r)
        offers = await fresh.wait_for(lambda f: f["type"] == "gift.offer", count=10)
        assert [o["gift_id"] for o in offers] == [f"o{i}" for i in range(10)]
        assert [o["seq"] for o in offers] == sorted(o["seq"] for o in offers)
        await fresh.close()
