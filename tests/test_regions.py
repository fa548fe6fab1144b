"""Regions: a gift to a user of a region that needs a third party's approval is held for
it (the recipient is told, the approver decides through the admin API), voided when denied
or when no approval came in time; other gifts are untouched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from protocol.client import Client
from server.config import Settings, problems
from server.regions.rules import EVERY_GIFT, Region, approvals_arg, parse
from server.store.embedded import EmbeddedValkey
from tests.support import TEST_CLOCK, Admin, Proc, run_audit
from tests.test_frames import expect_close

REGIONS = "me:approval=male>female,eu:gdpr,ky:approval"
HOUR_MS = 3_600_000


def test_region_policies_are_parsed_and_checked() -> None:
    """Regions read `<region>:<policy>[+<policy>]`; a bad region, policy or gender is refused at start."""
    # So is a region with no policy or one policy given twice.
    got = parse(tuple(REGIONS.split(",")))
    assert got == {"me": Region("me", "male>female"), "eu": Region("eu", "", True),
                   "ky": Region("ky", EVERY_GIFT)}
    assert isinstance(got, dict) and approvals_arg(got) == ";me=male>female;ky=*;"
    for bad in [("ME:gdpr",), ("me:approval=man>woman",), ("me:approve",), ("me", "me"),
                ("me",), ("me:approval+approval=male>female",), ("eu:gdpr+gdpr",)]:
        assert isinstance(parse(bad), str), bad
        assert any(p.startswith("GIFTWIRE_REGIONS") for p in problems(Settings(regions=bad)))


@pytest.fixture
def region_server(own_server: Callable[..., tuple[Proc, EmbeddedValkey]]
                  ) -> tuple[Proc, EmbeddedValkey]:
    srv, vk = own_server({"GIFTWIRE_REGIONS": REGIONS, **TEST_CLOCK})
    return srv, vk


async def test_a_guardian_approves_or_denies_a_held_gift(
        region_server: tuple[Proc, EmbeddedValkey]) -> None:
    """In `me` a man's gift to a woman waits for a guardian's approval; a woman's gift to her is instant."""
    # A third party decides, not her. The sender hears `pending` with `approval: true`, the recipient a
    # `gift.offer` with `approval: true` she cannot accept (`approval_pending`); approved, it posts to both
    # sides; a second one denied is voided (`denied`) and refunded; deciding again replays or is
    # `offer_resolved`.
    srv, vk = region_server
    async with Admin(srv) as admin:
        s, r = await admin.pair(20, sender={"gender": "male"},
                                recipient={"region": "me", "gender": "female"})
        assert (await admin.call("GET", f"/users/{r}"))["region"] == "me"
        async with await Client.connect(srv.ws, srv.token(s)) as a, \
                await Client.connect(srv.ws, srv.token(r)) as b:
            sent = await a.send_gift(r, "note.do", 4)
            assert (sent["type"], sent["delivery"], sent["approval"]) == (
                "gift.confirmed", "pending", True)
            offer = await b.next_event("gift.offer")
            assert offer["approval"] is True
            tid = offer["transfer_id"]
            refused = await b.request("gift.accept", offer_id=tid)
            assert (refused["type"], refused["code"]) == ("gift.rejected", "approval_pending")
            held = (await admin.call("GET", f"/users/{r}/offers"))["offers"]
            assert [(o["transfer_id"], o["approval"], o["count"]) for o in held] == [(tid, True, 4)]
            ok = await admin.call("POST", "/approvals", {"recipient": r, "transfer_id": tid,
                                                         "approve": True})
            assert ok == {"recipient": r, "transfer_id": tid, "outcome": "accepted",
                          "replayed": False}
            got = await b.next_event("gift.received")
            assert (got["transfer_id"], got["count"]) == (tid, 4)
            assert (await a.next_event("gift.accepted"))["transfer_id"] == tid
            again = await admin.call("POST", "/approvals", {"recipient": r, "transfer_id": tid,
                                                            "approve": True})
            assert again["replayed"] is True
            second = await a.send_gift(r, "note.do", 2)
            tid2 = (await b.next_event("gift.offer"))["transfer_id"]
            assert second["transfer_id"] == tid2
            no = await admin.call("POST", "/approvals", {"recipient": r, "transfer_id": tid2,
                                                         "approve": False})
            assert no["outcome"] == "denied"
            voided = await a.next_event("gift.voided")
            assert (voided["reason"], voided["balance"]) == ("denied", 16)
            assert (await b.next_event("gift.voided"))["reason"] == "denied"
            late = await admin.call("POST", "/approvals", {"recipient": r, "transfer_id": tid2,
                                                           "approve": True}, ok=False)
            assert (late.status_code, late.json()["error"]["code"]) == (409, "offer_resolved")
        assert await admin.balances(r) == {"note.do": 4}
        assert await admin.balances(s) == {"note.do": 16}
        w, _ = await admin.pair(5, sender={"gender": "female"})
        await admin.follow(w, r)
        async with await Client.connect(srv.ws, srv.token(w)) as c:
            assert (await c.send_gift(r, "note.do", 1))["delivery"] == "instant"
        regions = (await admin.call("GET", "/regions"))["regions"]
        assert {x["region"]: x["approval"] for x in regions} == {
            "me": "male>female", "eu": None, "ky": "*"}
    rc, out = await run_audit(vk.url)
    assert rc == 0, out


async def test_an_approval_not_given_in_time_voids_the_gift(
        region_server: tuple[Proc, EmbeddedValkey]) -> None:
    """In `ky` a gift not approved within GIFTWIRE_APPROVAL_TIMEOUT_S (a day) times out; the cards go back."""
    # Every gift there waits for approval; a late approval is `offer_resolved`. Approving a plain offer (the
    # recipient's own to accept, its confirmation without `approval`) is `not_found`.
    srv, vk = region_server
    async with Admin(srv) as admin:
        s, r = await admin.pair(10, recipient={"region": "ky"})
        async with await Client.connect(srv.ws, srv.token(s, ttl_s=3 * 86400)) as a, \
                await Client.connect(srv.ws, srv.token(r, ttl_s=3 * 86400)) as b:
            await a.send_gift(r, "note.do", 3)
            await admin.advance(23 * HOUR_MS)
            tid = (await admin.call("GET", f"/users/{r}/offers"))["offers"][0]["transfer_id"]
            await admin.advance(2 * HOUR_MS)
            # past the deadline the recipient hears it expired (the sweep or this accept
            # times it out), not approval_pending
            late_accept = await b.request("gift.accept", offer_id=tid)
            assert (late_accept["type"], late_accept["code"]) == ("gift.rejected", "offer_expired")
            voided = await a.next_event("gift.voided", timeout_s=30)
            assert (voided["transfer_id"], voided["reason"]) == (tid, "timeout")
        late = await admin.call("POST", "/approvals", {"recipient": r, "transfer_id": tid,
                                                       "approve": True}, ok=False)
        assert (late.status_code, late.json()["error"]["code"]) == (409, "offer_resolved")
        assert await admin.balances(s) == {"note.do": 10}
        s2, r2 = await admin.pair(5, recipient={"confirm_gifts": True})
        async with await Client.connect(srv.ws, srv.token(s2, ttl_s=3 * 86400)) as a:
            plain_sent = await a.send_gift(r2, "note.do", 1)
            assert plain_sent["delivery"] == "pending" and "approval" not in plain_sent
            plain = plain_sent["transfer_id"]
        nf = await admin.call("POST", "/approvals", {"recipient": r2, "transfer_id": plain,
                                                     "approve": True}, ok=False)
        assert (nf.status_code, nf.json()["error"]["code"]) == (404, "not_found")
        async with await Client.connect(srv.ws, srv.token(r2, ttl_s=3 * 86400)) as b2:
            assert (await b2.request("gift.accept", offer_id=plain))["type"] == "gift.received"
        settled = await admin.call("POST", "/approvals", {"recipient": r2, "transfer_id": plain,
                                                          "approve": True}, ok=False)
        assert settled.status_code == 404  # settled by its recipient: still not an approver's
        bad = await admin.call("POST", "/approvals", {"recipient": r2, "transfer_id": "x",
                                                      "approve": True}, ok=False)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_field")
    rc, out = await run_audit(vk.url)
    assert rc == 0, out


async def test_a_users_data_is_exported_then_erased(
        region_server: tuple[Proc, EmbeddedValkey]) -> None:
    """A user's data is exported whole, then erased once they hold nothing; the ledger records stay."""
    # The export holds profile, balances, follows, blocks, events, transfers and ledger. Erasure is refused
    # while they hold cards or a gift waits for them; it keeps the ledger and transfer records (the audit
    # still balances), and the account is unknown from then on: no grant reaches it, and the id is never
    # registered again.
    srv, vk = region_server
    async with Admin(srv) as admin:
        s, r = await admin.pair(10, sender={"region": "eu"}, recipient={"confirm_gifts": True})
        other = (await admin.call("PUT", f"/users/{s}-other", {}))["id"]
        await admin.call("PUT", "/blocks", {"blocker": s, "blocked": other})
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            await a.send_gift(r, "note.do", 2)
        data = await admin.call("GET", f"/users/{s}/export")
        assert data["profile"]["region"] == "eu" and data["balances"] == {"note.do": 8}
        assert r in data["follows"] and data["truncated"] == []
        assert other in data["blocks"]
        assert [line["kind"] for line in data["ledger"]] == ["grant", "gift_out"]
        assert {e["e"]["type"] for e in data["events"]} >= {"balance.changed", "gift.confirmed"}
        assert any(rec.get("to") == r for rec in data["transfers"].values())
        busy = await admin.call("POST", f"/users/{r}/erasure", ok=False)
        assert (busy.status_code, busy.json()["error"]["code"]) == (409, "gifts_in_flight")
        held = await admin.call("POST", f"/users/{s}/erasure", ok=False)
        assert (held.status_code, held.json()["error"]["code"]) == (409, "balance_not_zero")
        offer = (await admin.call("GET", f"/users/{r}/offers"))["offers"][0]
        async with await Client.connect(srv.ws, srv.token(r)) as b:
            await b.request("gift.decline", offer_id=offer["transfer_id"])
        await admin.call("POST", "/revocations", {"id": "all", "user": s, "asset": "note.do",
                                                  "amount": 10})
        assert (await admin.call("GET", f"/users/{s}/export"))["balances"] == {"note.do": 0}
        fresh = await admin.call("PUT", f"/users/{s}-new", {})  # never held anything
        assert (await admin.call("GET", f"/users/{fresh['id']}/export"))["balances"] == {}
        async with connect(f"{srv.ws}?token={srv.token(s)}") as live:
            await live.recv()  # welcome
            gone = await admin.call("POST", f"/users/{s}/erasure")
            with pytest.raises(ConnectionClosed) as info:  # closed on the erasure
                while True:
                    await asyncio.wait_for(live.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4013
        assert gone["replayed"] is False and gone["kept"] == ["ledger", "transfers",
                                                              "system_accounts"]
        assert await expect_close(f"{srv.ws}?token={srv.token(s)}") == 4013  # connects no more
        assert (await admin.call("POST", f"/users/{s}/erasure"))["replayed"] is True
        for path in (f"/users/{s}", f"/users/{s}/export"):
            r404 = await admin.call("GET", path, ok=False)
            assert (r404.status_code, r404.json()["error"]["code"]) == (404, "user_unknown")
        left = await admin.call("GET", f"/users/{s}/ledger", ok=False)
        assert left.status_code == 404  # the ledger is kept, but no longer anyone's to page
        minted = await admin.call("POST", "/grants", {"id": "after", "user": s,
                                                      "asset": "note.do", "amount": 5}, ok=False)
        assert (minted.status_code, minted.json()["error"]["code"]) == (404, "user_unknown")
        back = await admin.call("PUT", f"/users/{s}", {"banned": False}, ok=False)
        assert (back.status_code, back.json()["error"]["code"]) == (409, "user_erased")
        # the recipient, who received a gift (and declined another), can be erased too
        assert (await admin.call("POST", f"/users/{r}/erasure"))["replayed"] is False
    rc, out = await run_audit(vk.url)
    assert rc == 0, out


async def test_a_refund_after_an_erasure_is_named_by_the_audit_and_revoked(
        region_server: tuple[Proc, EmbeddedValkey]) -> None:
    """A refund to an erased account is named by the audit (`erased_hold_nothing`) until revoked."""
    # The sender gave all their cards in a gift held for approval, was erased, then the gift was denied: the
    # refund comes back to the erased account; after a revocation the audit passes again.
    srv, vk = region_server
    async with Admin(srv) as admin:
        s, r = await admin.pair(10, recipient={"region": "ky"})
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            await a.send_gift(r, "note.do", 10)
        tid = (await admin.call("GET", f"/users/{r}/offers"))["offers"][0]["transfer_id"]
        assert (await admin.call("POST", f"/users/{s}/erasure"))["replayed"] is False
        await admin.call("POST", "/approvals", {"recipient": r, "transfer_id": tid,
                                                "approve": False})
        rc, out = await run_audit(vk.url)
        assert rc == 1 and "FAIL erased_hold_nothing" in out and s in out, out
        back = await admin.call("POST", "/revocations", {"id": "refund", "user": s,
                                                         "asset": "note.do", "amount": 10})
        assert back["balance"] == 0
        nothing = await admin.call("POST", "/grants", {"id": "more", "user": s,
                                                       "asset": "note.do", "amount": 1}, ok=False)
        assert nothing.json()["error"]["code"] == "user_unknown"  # a grant still does not reach it
    rc, out = await run_audit(vk.url)
    assert rc == 0 and "ok   erased_hold_nothing" in out, out


async def test_no_cards_reach_a_recipient_banned_while_a_gift_waits(
        region_server: tuple[Proc, EmbeddedValkey]) -> None:
    """Banned after the gift was held: an approval or the own accept is refused `recipient_banned`."""
    # Each gift stays held and nothing is credited; a denial and a decline give the sender's cards back.
    srv, vk = region_server
    async with Admin(srv) as admin:
        s, r = await admin.pair(10, recipient={"region": "ky"})
        s2, r2 = await admin.pair(10, recipient={"confirm_gifts": True})
        async with await Client.connect(srv.ws, srv.token(s)) as a, \
                await Client.connect(srv.ws, srv.token(s2)) as a2:
            held = (await a.send_gift(r, "note.do", 3))["transfer_id"]
            plain = (await a2.send_gift(r2, "note.do", 2))["transfer_id"]
            for u in (r, r2):
                await admin.call("PUT", f"/users/{u}", {"banned": True})
            no = await admin.call("POST", "/approvals", {"recipient": r, "transfer_id": held,
                                                         "approve": True}, ok=False)
            assert (no.status_code, no.json()["error"]["code"]) == (409, "recipient_banned")
            async with await Client.connect(srv.ws, srv.token(r2)) as b2:
                refused = await b2.request("gift.accept", offer_id=plain)
                assert (refused["type"], refused["code"]) == ("gift.rejected", "recipient_banned")
                assert await admin.balances(r2) == {}
                assert (await b2.request("gift.decline", offer_id=plain))["type"] == "gift.voided"
            assert (await a2.next_event("gift.voided"))["balance"] == 10
            assert await admin.balances(r) == {}
            denied = await admin.call("POST", "/approvals", {"recipient": r, "transfer_id": held,
                                                             "approve": False})
            assert denied["outcome"] == "denied"
            assert (await a.next_event("gift.voided"))["balance"] == 10
    rc, out = await run_audit(vk.url)
    assert rc == 0, out
