"""The Lua steps called directly on the session's Valkey: KEYS/ARGV in, reply and keys out.

Each call is built by the same code the worker uses (`GiftFlow.debit_call`,
`SenderSteps.finalize_call`, `OfferFlow.resolve_call`, `grant_call`), so these tests pin
the exact contract, a rule at a time, in milliseconds. Every user id is fresh (all tests
share one Redis); the clock is a fixed `NOW` passed in ARGV, like the worker's.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from server.config import Settings
from server.gifting import rules
from server.gifting.flow import GiftFlow, GiftItem
from server.gifting.offers import OfferFlow, OfferItem
from server.gifting.steps import Today
from server.ledger.grants import grant_call
from server.settlement.replies import Replies
from server.store import keys
from server.store.pipeline import Call
from server.store.scripts import Scripts
from tests.support import DAY_MS, uid

S = Settings()
ASSET = "note.do"
NOW = int(datetime(2026, 2, 10, 4, 0, tzinfo=UTC).timestamp() * 1000)  # noon at +08:00
DAY = rules.day_key(rules.local_day(NOW, rules.parse_timezone(S.timezone)))
TODAY = Today(NOW, DAY, festival=False)
FESTIVAL = Today(NOW, DAY, festival=True)
ROUTE = "c1/7"


@pytest.fixture(scope="module")
def scripts(redis: Redis) -> Scripts:
    sc = Scripts(redis)
    for package in ("server.ledger", "server.gifting", "server.settlement"):
        sc.load(package)
    return sc


class Lab:
    """The scripts and the worker's call builders, under one Settings."""

    def __init__(self, r: Redis, sc: Scripts, s: Settings = S) -> None:
        self.r, self.sc, self.s = r, sc, s
        replies = Replies(r, cluster=False)
        self.gift = GiftFlow(r, sc, s, replies)
        self.offer = OfferFlow("accept", r, sc, s, replies)

    def under(self, **changes: Any) -> Lab:
        return Lab(self.r, self.sc, self.s.replace(**changes))

    async def call(self, name: str, call: Call) -> Any:
        return await self.sc[name](keys=call[0], args=call[1])

    # -- the world ---------------------------------------------------------------
    async def user(self, u: str, registered_ms: int = NOW - 30 * DAY_MS, real_name: bool = True,
                   **fields: Any) -> None:
        await self.r.hset(keys.user(u).profile, mapping={
            "registered_at_ms": registered_ms, "real_name": "1" if real_name else "0",
            **{k: str(v) for k, v in fields.items()}})

    async def follow(self, follower: str, followee: str, since_ms: int = NOW - 4 * DAY_MS) -> None:
        await self.r.hset(keys.user(follower).follows, followee, since_ms)

    async def fund(self, u: str, amount: int, asset: str = ASSET) -> None:
        reply = await self.grant(u, uid("g"), amount, asset=asset)
        assert reply[0] == "applied", reply

    async def pair(self, cards: int = 100, sender: dict[str, Any] | None = None,
                   recipient: dict[str, Any] | None = None) -> tuple[str, str]:
        """A verified sender, 30 days registered, following a recipient for 4 days."""
        s, r = uid("s"), uid("r")
        await self.user(s, **(sender or {}))
        await self.user(r, **(recipient or {}))
        await self.follow(s, r)
        if cards:
            await self.fund(s, cards)
        return s, r

    # -- the steps, built as the worker builds them -------------------------------
    async def grant(self, u: str, tid: str, delta: int, account: str = "mint",
                    reason: str = "grant", asset: str = ASSET) -> Any:
        return await self.call("grant", grant_call(self.s, u, tid, asset, delta, account, reason,
                                                   NOW))

    async def debit(self, item: GiftItem, today: Today = TODAY) -> Any:
        reply = await self.call("send_debit", self.gift.debit_call(item, today))
        if reply[0] in ("applied", "exists"):
            rec = json.loads(reply[1])
            if rec["st"] == "escrowed":
                item.rec = rec
        return reply

    async def credit(self, item: GiftItem, today: Today = TODAY) -> Any:
        reply = await self.call("recv_credit", self.gift.credit_call(item, today))
        item.outcome, item.detail = reply[1], reply[2]
        item.held_by = reply[3] if len(reply) > 3 else ""
        return reply

    async def finalize(self, item: GiftItem, today: Today = TODAY) -> Any:
        return await self.call("send_finalize", self.gift.finalize_call(item, today))

    async def resolve(self, recipient: str, tid: str, action: str, now_ms: int = NOW,
                      route: str = "") -> Any:
        item = OfferItem(recipient, tid, action, route)
        return await self.call("offer_resolve",
                               self.offer.resolve_call(item, Today(now_ms, DAY, False)))

    async def offered(self, count: int = 3) -> tuple[str, str, GiftItem]:
        """A gift held as an offer (the recipient confirms gifts), its sender told."""
        s, r = await self.pair(recipient={"confirm": 1})
        item = gift(s, r, count)
        assert (await self.debit(item))[0] == "applied"
        assert (await self.credit(item))[1] == "offered"
        assert (await self.finalize(item))[0] == "applied"
        return s, r, item

    # -- what the keys say --------------------------------------------------------
    async def ints(self, key: str) -> dict[str, int]:
        return {k: int(v) for k, v in (await self.r.hgetall(key)).items()}

    async def money(self, u: str, day: str = DAY) -> dict[str, Any]:
        """Everything a step may move for one user (not the event log, the records or the count
        of refusals)."""
        k = keys.user(u)
        counters = {f: n for f, n in (await self.ints(k.day(day))).items() if f != "refused"}
        return {"balances": await self.ints(k.balances), "system": await self.ints(k.system),
                "day": counters, "ledger": await self.r.xlen(k.ledger),
                "offers": await self.r.hgetall(k.offers),
                "free_used": await self.r.hget(k.profile, "free_used")}

    async def record(self, u: str, tid: str) -> dict[str, Any]:
        stored = await self.r.hget(keys.user(u).transfers, tid)
        assert stored is not None
        rec: dict[str, Any] = json.loads(stored)
        return rec

    async def events(self, u: str) -> list[tuple[str, dict[str, Any], str]]:
        """The user's event log: (stream id, event, route)."""
        return [(i, json.loads(f["e"]), f["r"]) for i, f in await self.r.xrange(keys.user(u).events)]

    async def zero_sum(self, *users: str) -> None:
        """Per asset, the users' balances plus their slots' system accounts add up to zero
        (and so does each slot on its own: every step moves against its own slot)."""
        total: dict[str, int] = defaultdict(int)
        for u in users:
            slot: dict[str, int] = defaultdict(int)
            for asset, n in (await self.ints(keys.user(u).balances)).items():
                slot[asset] += n
            for account, n in (await self.ints(keys.user(u).system)).items():
                slot[account.split(":", 1)[1]] += n
            assert all(v == 0 for v in slot.values()), (u, dict(slot))
            for asset, n in slot.items():
                total[asset] += n
        assert all(v == 0 for v in total.values()), dict(total)


def gift(s: str, r: str, count: int = 3, gift_id: str | None = None, room: str = "",
         route: str = ROUTE) -> GiftItem:
    return GiftItem(s, gift_id or uid("g"), r, ASSET, count, room, route)


@pytest.fixture
def lab(redis: Redis, scripts: Scripts) -> Lab:
    return Lab(redis, scripts)


# == grant ===========================================================================

async def test_grant_moves_balance_against_mint(lab: Lab) -> None:
    """A grant raises the balance and lowers `mint:<asset>` by as much, with a ledger line and an event."""
    # The event is balance.changed.
    u = uid()
    await lab.user(u)
    assert await lab.grant(u, "g1", 40) == ["applied", "40"]
    k = keys.user(u)
    assert await lab.ints(k.balances) == {ASSET: 40}
    assert await lab.ints(k.system) == {f"mint:{ASSET}": -40}
    [(_, line)] = await lab.r.xrange(k.ledger)
    assert line == {"tid": "g1", "asset": ASSET, "delta": "40", "account": "mint", "kind": "grant",
                    "ts": str(NOW)}
    [(eid, ev, route)] = await lab.events(u)
    assert (eid, route) == ("1-0", "-")
    assert ev == {"type": "balance.changed", "transfer_id": "g1", "asset": ASSET, "delta": 40,
                  "reason": "grant", "balance": 40, "seq": 1}
    await lab.zero_sum(u)


async def test_a_revocation_is_not_held_back_by_a_balance_past_the_bound(lab: Lab) -> None:
    """A balance past GIFTWIRE_AMOUNT_MAX can still be revoked from; a grant on it is `amount_too_large`."""
    # A balance gets past the bound because refunds are never refused.
    u = uid()
    await lab.user(u)
    await lab.grant(u, "g1", 10**12)
    await lab.r.hincrby(keys.user(u).balances, ASSET, 5)  # as a refund past the bound leaves it
    assert await lab.grant(u, "g2", 1) == ["rejected", "amount_too_large"]
    assert await lab.grant(u, "r1", -7, account="burn", reason="revoke") == [
        "applied", str(10**12 - 2)]


async def test_grant_replay_exists_and_other_amount_conflicts(lab: Lab) -> None:
    """The same grant id again is `exists` (the stored balance), another amount `conflict`; nothing moves."""
    u = uid()
    await lab.user(u)
    await lab.grant(u, "g1", 40)
    before = await lab.money(u)
    assert await lab.grant(u, "g1", 40) == ["exists", "40"]
    assert await lab.grant(u, "g1", 41) == ["conflict", ""]
    assert await lab.grant(u, "g1", 40, account="promo") == ["conflict", ""]
    assert await lab.money(u) == before
    assert len(await lab.events(u)) == 1
    await lab.zero_sum(u)


async def test_revoke_beyond_balance_is_rejected(lab: Lab) -> None:
    """A revocation may not take a balance below zero; within it, it moves to burn."""
    u = uid()
    await lab.user(u)
    await lab.grant(u, "g1", 10)
    before = await lab.money(u)
    assert await lab.grant(u, "r1", -11, "burn", "revoke") == ["rejected", "insufficient_balance"]
    assert await lab.money(u) == before
    assert await lab.grant(u, "r2", -10, "burn", "revoke") == ["applied", "0"]
    assert await lab.ints(keys.user(u).system) == {f"mint:{ASSET}": -10, f"burn:{ASSET}": 10}
    await lab.zero_sum(u)


async def test_grant_over_amount_bound_is_rejected(lab: Lab) -> None:
    """A balance may not exceed the amount bound."""
    u = uid()
    await lab.user(u)
    small = lab.under(amount_max=50)
    assert await small.grant(u, "g1", 50) == ["applied", "50"]
    assert await small.grant(u, "g2", 1) == ["rejected", "amount_too_large"]
    assert await lab.ints(keys.user(u).balances) == {ASSET: 50}
    await lab.zero_sum(u)


@pytest.mark.parametrize(("account", "reason", "word"), [
    ("bank", "grant", "unknown system account"),
    ("mint", "gift", "unknown reason"),
])
async def test_grant_unknown_account_or_reason_is_an_error(lab: Lab, account: str, reason: str,
                                                           word: str) -> None:
    """An account or reason outside the contract is an error reply, never a default."""
    u = uid()
    await lab.user(u)
    with pytest.raises(ResponseError, match=word):
        await lab.grant(u, "g1", 5, account, reason)
    assert await lab.money(u) == await lab.money(uid())  # all empty
    assert await lab.r.hlen(keys.user(u).transfers) == 0


async def test_grant_to_unknown_user_is_rejected(lab: Lab) -> None:
    """No profile: `user_unknown`, and no key is created."""
    u = uid()
    assert await lab.grant(u, "g1", 5) == ["rejected", "user_unknown"]
    assert await lab.r.exists(*(getattr(keys.user(u), a) for a in
                                ("profile", "balances", "system", "transfers", "events"))) == 0


async def test_a_refused_unknown_sender_stays_unknown_to_grant(lab: Lab) -> None:
    """After a gift from an unregistered sender is refused, a grant still finds no such user."""
    s, r = uid("s"), uid("r")
    await lab.user(r)
    reply = await lab.debit(gift(s, r))
    assert json.loads(reply[1])["code"] == "sender_unknown"
    assert await lab.grant(s, "g1", 5) == ["rejected", "user_unknown"]


# == send_debit ======================================================================

async def _no_profile(lab: Lab, s: str, r: str) -> None:
    k = keys.user(s)  # never registered: none of its keys
    await lab.r.delete(k.profile, k.balances, k.system, k.transfers, k.ledger, k.events)


async def _banned(lab: Lab, s: str, r: str) -> None:
    await lab.r.hset(keys.user(s).profile, "banned", "1")


async def _no_real_name(lab: Lab, s: str, r: str) -> None:
    await lab.r.hset(keys.user(s).profile, "real_name", "0")


async def _blocks(lab: Lab, s: str, r: str) -> None:
    await lab.r.sadd(keys.user(s).blocks, r)


async def _blocked_by(lab: Lab, s: str, r: str) -> None:
    await lab.r.sadd(keys.user(s).blocked_by, r)


async def _unfollowed(lab: Lab, s: str, r: str) -> None:
    await lab.r.hdel(keys.user(s).follows, r)


async def _recent_follow(lab: Lab, s: str, r: str) -> None:
    await lab.follow(s, r, NOW - S.follow_min_s * 1000 + 1)


async def _poor(lab: Lab, s: str, r: str) -> None:
    await lab.grant(s, uid("rv"), -98, "burn", "revoke")  # 2 left, the gift costs 3


Setup = Callable[[Lab, str, str], Awaitable[None]]


async def test_debit_unknown_sender_refused_without_a_write(lab: Lab) -> None:
    """An unregistered sender is refused `sender_unknown` in the reply only: no profile, record or event."""
    # An event would make them a user.
    s, r = await lab.pair()
    await _no_profile(lab, s, r)
    item = gift(s, r, 3)
    reply = await lab.debit(item)
    ev = json.loads(reply[1])
    assert (reply[0], ev["code"], "seq" in ev) == ("rejected", "sender_unknown", False)
    k = keys.user(s)
    assert [await lab.r.exists(x) for x in (k.profile, k.transfers, k.events)] == [0, 0, 0]
    assert await lab.debit(item) == reply  # nothing recorded: the same refusal again


@pytest.mark.parametrize(("setup", "code"), [
    (_banned, "sender_banned"),
    (_no_real_name, "real_name_required"),
    (_blocks, "blocked"),
    (_blocked_by, "blocked"),
    (_unfollowed, "not_following"),
    (_recent_follow, "follow_too_recent"),
    (_poor, "insufficient_balance"),
])
async def test_debit_sender_rule_refuses_and_records(lab: Lab, setup: Setup, code: str) -> None:
    """Each sender rule refuses with its code, nothing moving; the refusal is recorded, logged, replayed."""
    # A replay answers the stored refusal.
    s, r = await lab.pair()
    await setup(lab, s, r)
    before = await lab.money(s)
    item = gift(s, r, 3)
    reply = await lab.debit(item)
    assert reply[0] == "rejected"
    ev = json.loads(reply[1])
    assert ev["type"] == "gift.rejected" and ev["code"] == code
    assert (ev["transfer_id"], ev["gift_id"], ev["asset"]) == (item.tid, item.gift_id, ASSET)
    assert await lab.money(s) == before
    assert await lab.record(s, item.tid) == {"st": "rejected", "code": code, "ev": reply[1],
                                             "fp": f"{r}|{ASSET}|3|"}
    assert (await lab.events(s))[-1][1:] == (ev, ROUTE)
    assert await lab.debit(item) == ["exists", await lab.r.hget(keys.user(s).transfers, item.tid)]
    await lab.zero_sum(s, r)


async def test_refusals_past_the_days_bound_are_kept_only_with_the_day(lab: Lab) -> None:
    """Past 2 recorded refusals a day, a third is kept only in the day's counters, judged again after them."""
    # The counters expire. A resend of any of them gets the same refusal, the next day too; once the day's
    # counters are gone, the third is judged again (and passes when the rule does).
    s, r = await lab.pair()
    await lab.r.hdel(keys.user(s).follows, r)
    capped = lab.under(refusals_recorded_per_day=2)
    items = [gift(s, r, 1) for _ in range(3)]
    for item in items:
        reply = await capped.debit(item)
        assert reply[0] == "rejected" and json.loads(reply[1])["code"] == "not_following"
    recorded = [await lab.r.hexists(keys.user(s).transfers, i.tid) for i in items]
    assert recorded == [True, True, False]
    day = keys.user(s).day(TODAY.day)
    assert await lab.r.hexists(day, f"r:{items[2].tid}")
    assert await lab.r.hget(day, "refused") == "3" and await lab.r.ttl(day) > 0
    told = [ev["transfer_id"] for _, ev, _ in await lab.events(s) if ev["type"] == "gift.rejected"]
    assert told == [i.tid for i in items]  # each refusal told once
    await lab.follow(s, r)
    for item in items:  # a resend (or a worker's re-run) repeats the stored refusal
        assert (await capped.debit(item))[0] == "exists"
    # and so does one the next day (the counters it is in are the day before's then)
    later = keys.user(s).day("20990101")
    tomorrow = Today(NOW + DAY_MS, "20990101", False, TODAY.day)
    assert (await capped.debit(items[2], tomorrow))[0] == "exists"
    await lab.r.delete(later)
    await lab.r.delete(day)  # the day's counters expired
    assert (await capped.debit(items[0]))[0] == "exists"  # recorded for good
    assert (await capped.debit(items[2]))[0] == "applied"  # judged again
    await lab.zero_sum(s, r)


async def test_debit_over_amount_bound_is_refused(lab: Lab) -> None:
    """A cost above the amount bound is refused `amount_too_large` with nothing moved."""
    s, r = await lab.pair(cards=20)
    before = await lab.money(s)
    reply = await lab.under(amount_max=10).debit(gift(s, r, 11))
    assert reply[0] == "rejected" and json.loads(reply[1])["code"] == "amount_too_large"
    assert await lab.money(s) == before


async def test_rejection_lands_in_event_log_with_seq_and_route(lab: Lab) -> None:
    """The refusal is the user's next event: stream id = seq 1, the request's route beside it."""
    s, r = await lab.pair(cards=0)
    item = gift(s, r, 1, route="conn9/42")
    reply = await lab.debit(item)
    assert json.loads(reply[1])["code"] == "insufficient_balance"
    [(eid, fields)] = await lab.r.xrange(keys.user(s).events)
    assert eid == "1-0" and fields == {"e": reply[1], "r": "conn9/42"}
    assert json.loads(fields["e"])["seq"] == 1
    assert await lab.r.hget(keys.user(s).profile, "seq") == "1"
    ev = json.loads(reply[1])
    assert ev["message"] and ev["temporary"] is False


async def test_daily_limit_after_the_days_sends(lab: Lab) -> None:
    """After `gifts_per_day` sends the next is `daily_limit`; a VIP gets `vip_bonus_gifts` (2) more first."""
    # The day's sends go 3 to one recipient, 2 to another; the VIP then hits `daily_limit` again.
    s, r = await lab.pair()
    r2 = uid("r")
    await lab.user(r2)
    await lab.follow(s, r2)
    for to in [r] * 3 + [r2] * 2:
        assert (await lab.debit(gift(s, to, 1)))[0] == "applied"
    assert await lab.ints(keys.user(s).day(DAY)) == {"sent": 5, f"to:{r}": 3, f"to:{r2}": 2}
    assert 0 < await lab.r.ttl(keys.user(s).day(DAY)) <= 2 * 86400
    before = await lab.money(s)
    reply = await lab.debit(gift(s, r2, 1))
    assert reply[0] == "rejected" and json.loads(reply[1])["code"] == "daily_limit"
    assert json.loads(reply[1])["temporary"] is True
    assert await lab.money(s) == before
    await lab.r.hset(keys.user(s).profile, "vip", "1")
    r3 = uid("r")  # a third recipient: the pair limit stays out of the way
    await lab.user(r3)
    await lab.follow(s, r3)
    for _ in range(2):  # SPEC: a VIP sends 2 more a day
        assert (await lab.debit(gift(s, r3, 1)))[0] == "applied"
    reply = await lab.debit(gift(s, r3, 1))
    assert reply[0] == "rejected" and json.loads(reply[1])["code"] == "daily_limit"
    await lab.zero_sum(s)


async def test_pair_limit_after_three_to_one_recipient(lab: Lab) -> None:
    """`pair_gifts_per_day` to one recipient, then `pair_limit`; another recipient still works."""
    s, r = await lab.pair()
    r2 = uid("r")
    await lab.user(r2)
    await lab.follow(s, r2)
    for _ in range(S.pair_gifts_per_day):
        assert (await lab.debit(gift(s, r, 1)))[0] == "applied"
    before = await lab.money(s)
    reply = await lab.debit(gift(s, r, 1))
    assert reply[0] == "rejected" and json.loads(reply[1])["code"] == "pair_limit"
    assert await lab.money(s) == before
    assert (await lab.debit(gift(s, r2, 1)))[0] == "applied"
    await lab.zero_sum(s)


async def test_debit_moves_cost_into_escrow(lab: Lab) -> None:
    """A debit moves the count from the balance into escrow, counts the day, writes ledger line and record."""
    # The record is the escrowed one. No event: the sender hears at finalize.
    s, r = await lab.pair(cards=10)
    item = gift(s, r, 4, room="room1")
    reply = await lab.debit(item)
    assert reply[0] == "applied"
    rec = json.loads(reply[1])
    assert rec == {"st": "escrowed", "fp": f"{r}|{ASSET}|4|room1", "to": r, "asset": ASSET,
                   "count": 4, "cost": 4, "free": 0, "day": DAY, "gift_id": item.gift_id,
                   "room": "room1", "limit": S.gifts_per_day, "tier": 0, "badge": 0}
    k = keys.user(s)
    assert await lab.ints(k.balances) == {ASSET: 6}
    assert await lab.ints(k.system) == {f"mint:{ASSET}": -10, f"escrow:{ASSET}": 4}
    assert await lab.ints(k.day(DAY)) == {"sent": 1, f"to:{r}": 1}
    line = (await lab.r.xrange(k.ledger))[-1][1]
    assert (line["tid"], line["delta"], line["account"], line["kind"]) == (item.tid, "-4", "escrow",
                                                                           "gift_out")
    assert len(await lab.events(s)) == 1  # only the grant's
    await lab.zero_sum(s)


async def test_festival_surplus_burns_and_newcomer_cards_come_from_promo(lab: Lab) -> None:
    """At 6/5 a count of 5 costs 6, 1 burnt; a newcomer's free cards are paid by promo, rest by balance."""
    # Free cards are counted in `free_used`.
    s, r = await lab.pair(cards=10, sender={"registered_ms": NOW - DAY_MS})
    reply = await lab.debit(gift(s, r, 5), FESTIVAL)
    rec = json.loads(reply[1])
    assert (rec["count"], rec["cost"], rec["free"]) == (5, 6, 5)
    k = keys.user(s)
    assert await lab.ints(k.balances) == {ASSET: 9}
    assert await lab.ints(k.system) == {f"mint:{ASSET}": -10, f"promo:{ASSET}": -5,
                                        f"burn:{ASSET}": 1, f"escrow:{ASSET}": 5}
    assert await lab.r.hget(k.profile, "free_used") == "5"
    # the free quota is spent: the next festival gift is paid in full
    rec2 = json.loads((await lab.debit(gift(s, r, 5), FESTIVAL))[1])
    assert (rec2["cost"], rec2["free"]) == (6, 0)
    assert await lab.ints(k.balances) == {ASSET: 3}
    await lab.zero_sum(s)


async def test_debit_replay_exists_and_other_count_conflicts(lab: Lab) -> None:
    """A repeated gift id returns the stored record (`exists`), another count a `conflict`; nothing moves."""
    s, r = await lab.pair(cards=10)
    item = gift(s, r, 2)
    first = await lab.debit(item)
    before = await lab.money(s)
    assert await lab.debit(item) == ["exists", first[1]]
    other = gift(s, r, 3, gift_id=item.gift_id)
    assert await lab.debit(other) == ["conflict", ""]
    assert await lab.money(s) == before
    await lab.zero_sum(s)


@pytest.mark.parametrize("count", ["three", "1.5", "nan", "inf", "-inf", "1e300",
                                   "4503599627370497", ""])
async def test_debit_bad_integer_is_an_error_before_any_write(lab: Lab, count: str) -> None:
    """A count that is no integer (a fraction, NaN, infinity, beyond 2^52) is an error; no key is touched."""
    s, r = await lab.pair()
    call = lab.gift.debit_call(gift(s, r, 1), TODAY)
    call[1][4] = count
    before = await lab.money(s)
    with pytest.raises(ResponseError, match="bad integer argument count"):
        await lab.call("send_debit", call)
    assert await lab.money(s) == before
    assert await lab.r.hlen(keys.user(s).transfers) == 1  # the grant's


# == recv_credit =====================================================================

async def test_credit_delivers_from_escrow(lab: Lab) -> None:
    """A credit moves the count from its slot's escrow to the recipient's balance; a replay is `exists`."""
    # With a ledger line and a gift.received event; the replay has the same outcome.
    s, r = await lab.pair()
    item = gift(s, r, 3, room="rm")
    await lab.debit(item)
    assert await lab.credit(item) == ["applied", "delivered", ""]
    k = keys.user(r)
    assert await lab.ints(k.balances) == {ASSET: 3}
    assert await lab.ints(k.system) == {f"escrow:{ASSET}": -3}
    [(_, line)] = await lab.r.xrange(k.ledger)
    assert (line["tid"], line["delta"], line["account"], line["kind"]) == (item.tid, "3", "escrow",
                                                                           "gift_in")
    [(eid, ev, route)] = await lab.events(r)
    assert (eid, route) == ("1-0", "-")
    assert ev == {"type": "gift.received", "transfer_id": item.tid, "gift_id": item.gift_id,
                  "from": s, "asset": ASSET, "count": 3, "room": "rm", "balance": 3, "seq": 1}
    assert await lab.record(r, item.tid) == {"st": "delivered", "from": s}
    before = await lab.money(r)
    assert await lab.credit(item) == ["exists", "delivered", ""]
    assert await lab.money(r) == before and len(await lab.events(r)) == 1
    await lab.zero_sum(s, r)


async def test_credit_offers_when_recipient_confirms(lab: Lab) -> None:
    """With `confirm=1` the cards stay in escrow as an offer expiring at now + the offer timeout."""
    # A replay is `exists` with the same expiry.
    s, r = await lab.pair(recipient={"confirm": 1})
    item = gift(s, r, 3)
    await lab.debit(item)
    exp = NOW + S.offer_timeout_s * 1000
    assert await lab.credit(item) == ["applied", "offered", str(exp), ""]
    k = keys.user(r)
    assert await lab.ints(k.balances) == {} and await lab.ints(k.system) == {}
    offer = json.loads(await lab.r.hget(k.offers, item.tid) or "")
    assert offer == {"type": "gift.offer", "transfer_id": item.tid, "gift_id": item.gift_id,
                     "from": s, "asset": ASSET, "count": 3, "expires_at_ms": exp, "seq": 1}
    assert [ev for _, ev, _ in await lab.events(r)] == [offer]
    assert await lab.record(r, item.tid) == {"st": "offered", "from": s, "exp": exp, "asset": ASSET,
                                             "count": 3, "gift_id": item.gift_id, "day": DAY}
    assert await lab.credit(item) == ["exists", "offered", str(exp), ""]
    assert await lab.r.hlen(k.offers) == 1
    await lab.zero_sum(s, r)


async def test_a_gift_held_for_approval_says_so_to_its_sender(lab: Lab) -> None:
    """A gift needing a third party's approval is held as the approver's offer; the sender sees `approval`."""
    # The region's gifts need approval: the offer has `approver` and the approval timeout, and the sender's
    # confirmation says `approval: true`; a replay of either step answers the same.
    held = lab.under(regions=("ky:approval",))
    s, r = await held.pair(recipient={"region": "ky"})
    item = gift(s, r, 2)
    await held.debit(item)
    exp = NOW + S.approval_timeout_s * 1000
    assert await held.credit(item) == ["applied", "offered", str(exp), "approver"]
    offer = json.loads(await held.r.hget(keys.user(r).offers, item.tid) or "")
    assert offer["approval"] is True
    reply = await held.finalize(item)
    confirmed = json.loads(reply[1])
    assert (confirmed["type"], confirmed["delivery"], confirmed["approval"]) == (
        "gift.confirmed", "pending", True)
    assert await held.credit(item) == ["exists", "offered", str(exp), "approver"]
    again = await held.finalize(item)
    assert again[0] == "exists" and json.loads(again[1]) == confirmed
    await held.zero_sum(s, r)


async def _r_no_profile(lab: Lab, s: str, r: str) -> None:
    await lab.r.delete(keys.user(r).profile)


async def _r_banned(lab: Lab, s: str, r: str) -> None:
    await lab.r.hset(keys.user(r).profile, "banned", "1")


async def _r_risk_banned(lab: Lab, s: str, r: str) -> None:
    await lab.r.hset(keys.user(r).profile, "risk_banned", "1")


async def _r_blocks(lab: Lab, s: str, r: str) -> None:
    await lab.r.sadd(keys.user(r).blocks, s)


async def _r_rich(lab: Lab, s: str, r: str) -> None:
    await lab.fund(r, 98)  # under amount_max=100: 98 + 3 > 100


async def _r_offers_full(lab: Lab, s: str, r: str) -> None:
    await lab.r.hset(keys.user(r).profile, "confirm", "1")
    await lab.r.hset(keys.user(r).offers, mapping={f"x:{i}": "{}" for i in range(2)})


@pytest.mark.parametrize(("setup", "code"), [
    (_r_no_profile, "recipient_unknown"),
    (_r_banned, "recipient_banned"),
    (_r_risk_banned, "recipient_banned"),
    (_r_blocks, "blocked"),
    (_r_rich, "amount_too_large"),
    (_r_offers_full, "offers_full"),
])
async def test_credit_recipient_rule_rejects(lab: Lab, setup: Setup, code: str) -> None:
    """Each recipient rule rejects with its code: nothing moves on the recipient's slot; a replay agrees."""
    # The outcome is recorded, and a replay is `exists` with the same code.
    bounded = lab.under(amount_max=100, offers_per_user_max=2)
    s, r = await lab.pair()
    await setup(lab, s, r)
    item = gift(s, r, 3)
    await bounded.debit(item)
    before = await lab.money(r)
    assert await bounded.credit(item) == ["applied", "rejected", code]
    assert await lab.money(r) == before
    assert await lab.record(r, item.tid) == {"st": "rejected", "code": code, "from": s}
    assert await bounded.credit(item) == ["exists", "rejected", code]
    assert await lab.money(r) == before


async def test_credit_void_rejects_operator_voided(lab: Lab) -> None:
    """Mode `void` rejects `operator_voided` before any rule; a decided side stays decided."""
    s, r = await lab.pair()
    item = gift(s, r, 3)
    await lab.debit(item)
    item.void = True
    assert await lab.credit(item) == ["applied", "rejected", "operator_voided"]
    assert await lab.ints(keys.user(r).balances) == {}
    done = gift(s, r, 2)
    await lab.debit(done)
    await lab.credit(done)
    done.void = True
    assert await lab.credit(done) == ["exists", "delivered", ""]


async def test_credit_unknown_mode_is_an_error(lab: Lab) -> None:
    """A mode other than credit/void is an error reply; nothing is recorded."""
    s, r = await lab.pair()
    item = gift(s, r, 3)
    await lab.debit(item)
    call = lab.gift.credit_call(item, TODAY)
    call[1][12] = "refund"
    with pytest.raises(ResponseError, match="unknown mode"):
        await lab.call("recv_credit", call)
    assert await lab.r.hlen(keys.user(r).transfers) == 0
    assert await lab.money(r) == await lab.money(uid())


# == send_finalize ===================================================================

async def test_finalize_delivered_confirms_with_quota_left(lab: Lab) -> None:
    """Delivered: a routed gift.confirmed with the balance and quota left; a second finalize is `exists`."""
    # The second answers with the same event json and publishes nothing new.
    s, r = await lab.pair(cards=10)
    item = gift(s, r, 4)
    await lab.debit(item)
    await lab.credit(item)
    reply = await lab.finalize(item)
    assert reply[0] == "applied" and reply[2] == ""
    ev = json.loads(reply[1])
    assert ev == {"type": "gift.confirmed", "transfer_id": item.tid, "gift_id": item.gift_id,
                  "to": r, "asset": ASSET, "count": 4, "cost": 4, "free": 0, "delivery": "instant",
                  "balance": 6, "quota_left": S.gifts_per_day - 1, "seq": 2}
    assert (await lab.events(s))[-1] == ("2-0", ev, ROUTE)
    assert (await lab.record(s, item.tid))["st"] == "delivered"
    before = await lab.money(s)
    assert await lab.finalize(item) == ["exists", reply[1], ""]
    assert await lab.money(s) == before and len(await lab.events(s)) == 2
    await lab.zero_sum(s, r)


async def test_finalize_rejected_refunds_everything(lab: Lab) -> None:
    """A rejection refunds the paid cards, the free quota, the burnt surplus and the day's counters."""
    # The sender's slot is back where it was, zero-sum throughout.
    s, r = await lab.pair(cards=10, sender={"registered_ms": NOW - DAY_MS},
                          recipient={"banned": 1})
    before = await lab.money(s)
    item = gift(s, r, 5)
    await lab.debit(item, FESTIVAL)
    assert (item.rec or {})["cost"] == 6 and (item.rec or {})["free"] == 5
    assert await lab.credit(item) == ["applied", "rejected", "recipient_banned"]
    await lab.zero_sum(s, r)
    reply = await lab.finalize(item, FESTIVAL)
    assert reply[0] == "applied"
    ev = json.loads(reply[1])
    assert (ev["type"], ev["code"], ev["balance"], ev["seq"]) == ("gift.rejected",
                                                                  "recipient_banned", 10, 2)
    after = await lab.money(s)
    assert after["balances"] == before["balances"]
    assert after["system"] == {f"mint:{ASSET}": -10, f"promo:{ASSET}": 0, f"burn:{ASSET}": 0,
                               f"escrow:{ASSET}": 0}
    assert after["free_used"] == "0"
    assert after["day"] == {"sent": 0, f"to:{r}": 0}
    assert after["ledger"] == before["ledger"] + 2  # gift_out, refund
    line = (await lab.r.xrange(keys.user(s).ledger))[-1][1]
    assert (line["kind"], line["delta"]) == ("refund", "1")
    assert (await lab.record(s, item.tid))["st"] == "refunded"
    await lab.zero_sum(s, r)
    assert await lab.finalize(item, FESTIVAL) == ["exists", reply[1], ""]
    assert await lab.money(s) == after


async def test_finalize_outcome_that_does_not_follow_is_stale(lab: Lab) -> None:
    """`accepted` on an escrowed record, or `rejected` after delivery, is `stale`; nothing moves."""
    # It answers with the record's latest event, if any.
    s, r = await lab.pair()
    item = gift(s, r, 3)
    await lab.debit(item)
    item.outcome, item.detail = "accepted", ""
    before = await lab.money(s)
    assert await lab.finalize(item) == ["stale", "escrowed", ""]
    assert await lab.money(s) == before
    await lab.credit(item)
    await lab.finalize(item)
    item.outcome, item.detail = "rejected", "blocked"
    before = await lab.money(s)
    confirmed = (await lab.record(s, item.tid))["ev"]
    assert await lab.finalize(item) == ["stale", "delivered", confirmed]
    assert await lab.money(s) == before
    await lab.zero_sum(s, r)


async def test_finalize_unknown_outcome_or_transfer_is_an_error(lab: Lab) -> None:
    """An outcome outside the contract, or a transfer never debited, is an error reply."""
    s, r = await lab.pair()
    item = gift(s, r, 3)
    await lab.debit(item)
    item.outcome = "refunded"
    with pytest.raises(ResponseError, match="unknown outcome"):
        await lab.finalize(item)
    ghost = gift(s, r, 3)
    ghost.rec, ghost.outcome = item.rec, "delivered"
    with pytest.raises(ResponseError, match="unknown transfer"):
        await lab.finalize(ghost)
    assert (await lab.record(s, item.tid))["st"] == "escrowed"
    await lab.zero_sum(s, r)


async def test_finalize_rejected_with_unknown_code_moves_nothing(lab: Lab) -> None:
    """A rejection code outside the table is an error reply before any write (no refund)."""
    s, r = await lab.pair(cards=10)
    item = gift(s, r, 3)
    await lab.debit(item)
    before = await lab.money(s)
    item.outcome, item.detail = "rejected", "no_such_code"
    with pytest.raises(ResponseError, match="unknown rejection code"):
        await lab.finalize(item)
    assert await lab.money(s) == before
    assert (await lab.record(s, item.tid))["st"] == "escrowed"
    await lab.zero_sum(s, r)


async def test_mentor_rewarded_on_first_delivered_gift_only(lab: Lab) -> None:
    """A newcomer's first delivered gift pays them from promo and names the mentor; the second, no one."""
    # The mentor is the third element, also on a replay.
    m = uid("m")
    await lab.user(m)
    s, r = await lab.pair(cards=10, sender={"registered_ms": NOW - DAY_MS, "mentor": m})
    first = gift(s, r, 1)
    await lab.debit(first)
    await lab.credit(first)
    reply = await lab.finalize(first)
    assert reply[0] == "applied" and reply[2] == m
    cards = S.mentor_reward_cards
    k = keys.user(s)
    assert await lab.ints(k.balances) == {ASSET: 10 + cards}  # the gift itself was free
    assert (await lab.ints(k.system))[f"promo:{S.mentor_reward_asset}"] == -1 - cards
    assert await lab.r.hget(k.profile, "mentor_rewarded") == "1"
    types = [ev["type"] for _, ev, _ in await lab.events(s)]
    assert sorted(types) == ["balance.changed", "balance.changed", "gift.confirmed"]
    assert (await lab.finalize(first))[2] == m  # a re-run still rewards the mentor (idempotent)
    call = lab.gift.sender.reward_call(m, first.tid, TODAY)
    assert call is not None
    assert await lab.call("grant", call) == ["applied", str(cards)]
    assert await lab.call("grant", call) == ["exists", str(cards)]
    second = gift(s, r, 1)
    await lab.debit(second)
    await lab.credit(second)
    assert (await lab.finalize(second))[2] == ""
    assert await lab.ints(keys.user(m).balances) == {S.mentor_reward_asset: cards}
    await lab.zero_sum(s, r, m)


async def test_latest_event_after_mentor_reward_shows_the_real_balance(lab: Lab) -> None:
    """After a newcomer's first gift, the sender's newest event with a balance shows what they hold."""
    m = uid("m")
    await lab.user(m)
    s, r = await lab.pair(cards=10, sender={"registered_ms": NOW - DAY_MS, "mentor": m})
    item = gift(s, r, 1)
    await lab.debit(item)
    await lab.credit(item)
    await lab.finalize(item)
    held = (await lab.ints(keys.user(s).balances))[ASSET]
    newest = [ev for _, ev, _ in await lab.events(s) if ev.get("asset") == ASSET][-1]
    assert newest["balance"] == held, newest


# == offer_resolve ===================================================================

async def test_a_record_that_is_no_gift_is_no_offer(lab: Lab) -> None:
    """An accept naming a record that is not a gift's (a `$` id's number) is `not_found`, not a Lua error."""
    # A Lua error was a poison entry: retried, dead-lettered, and a user could repeat it at will.
    s, r = await lab.pair()
    await lab.r.hset(keys.user(r).transfers, "$pz:v1", "5")
    assert (await lab.resolve(r, "$pz:v1", "accept"))[0] == "not_found"
    await lab.r.hset(keys.user(r).transfers, f"{s}:x", json.dumps({"st": "escrowed", "to": r}))
    assert (await lab.resolve(r, f"{s}:x", "decline"))[0] == "not_found"  # a sender's record


async def test_accept_credits_and_then_answers_from_the_record(lab: Lab) -> None:
    """Accept credits from escrow; accept again is `exists`, a later decline `lost` with `offer_accepted`."""
    # The credit comes with a routed gift.received; the sender is told gift.accepted.
    s, r, item = await lab.offered(3)
    reply = await lab.resolve(r, item.tid, "accept", route="cr/1")
    assert reply[0:2] == ["applied", "accepted"] and reply[3] == ""
    rec = json.loads(reply[2])
    assert rec["st"] == "accepted"
    k = keys.user(r)
    assert await lab.ints(k.balances) == {ASSET: 3}
    assert await lab.ints(k.system) == {f"escrow:{ASSET}": -3}
    assert await lab.r.hlen(k.offers) == 0
    (eid, ev, route) = (await lab.events(r))[-1]
    assert (eid, route, ev["type"], ev["balance"]) == ("2-0", "cr/1", "gift.received", 3)
    assert json.loads(rec["ev"]) == ev
    assert await lab.resolve(r, item.tid, "accept") == ["exists", "accepted", reply[2], ""]
    assert await lab.resolve(r, item.tid, "decline") == ["lost", "accepted", reply[2],
                                                         "offer_accepted"]
    assert await lab.ints(k.balances) == {ASSET: 3}
    item.outcome, item.detail = "accepted", ""
    fin = await lab.finalize(item)
    assert fin[0] == "applied" and json.loads(fin[1])["type"] == "gift.accepted"
    assert (await lab.record(s, item.tid))["st"] == "accepted"
    await lab.zero_sum(s, r)


async def test_decline_voids_and_refunds(lab: Lab) -> None:
    """Decline voids the offer and refunds the sender; again it is `exists`, a later accept `lost`."""
    # No credit. The later accept is `lost` with `offer_declined`.
    s, r, item = await lab.offered(3)
    reply = await lab.resolve(r, item.tid, "decline")
    assert reply[0:2] == ["applied", "voided"] and json.loads(reply[2])["reason"] == "declined"
    assert await lab.ints(keys.user(r).balances) == {}
    assert await lab.resolve(r, item.tid, "decline") == ["exists", "voided", reply[2], ""]
    assert (await lab.resolve(r, item.tid, "accept"))[3] == "offer_declined"
    item.outcome, item.detail = "voided", "declined"
    fin = await lab.finalize(item)
    ev = json.loads(fin[1])
    assert (ev["type"], ev["reason"], ev["balance"], ev["quota_left"]) == ("gift.voided", "declined",
                                                                           100, S.gifts_per_day)
    assert await lab.ints(keys.user(s).balances) == {ASSET: 100}
    await lab.zero_sum(s, r)


async def test_timeout_before_expiry_is_not_due(lab: Lab) -> None:
    """A timeout before the offer's expiry changes nothing; at the expiry it voids."""
    s, r, item = await lab.offered(3)
    exp = NOW + S.offer_timeout_s * 1000
    before = await lab.money(r)
    assert await lab.resolve(r, item.tid, "timeout", now_ms=exp - 1) == ["not_due", "", "", ""]
    assert await lab.money(r) == before
    reply = await lab.resolve(r, item.tid, "timeout", now_ms=exp)
    assert reply[0:2] == ["applied", "voided"] and json.loads(reply[2])["reason"] == "timeout"
    await lab.zero_sum(s, r)


@pytest.mark.parametrize("action", ["accept", "decline"])
async def test_accept_or_decline_after_deadline_voids_as_expired(lab: Lab, action: str) -> None:
    """An accept or decline at or after the expiry times the offer out: `applied`, voided `offer_expired`."""
    # Before the sweep came. Its event is unrouted; the sender's refund follows, as after the sweep.
    s, r, item = await lab.offered(3)
    exp = NOW + S.offer_timeout_s * 1000
    reply = await lab.resolve(r, item.tid, action, now_ms=exp, route="cr/2")
    assert reply[0:2] == ["applied", "voided"] and reply[3] == "offer_expired"
    assert json.loads(reply[2])["reason"] == "timeout"
    (_, ev, route) = (await lab.events(r))[-1]
    assert (ev["type"], route) == ("gift.voided", "-")
    assert await lab.ints(keys.user(r).balances) == {}
    assert await lab.r.hlen(keys.user(r).offers) == 0
    item.outcome, item.detail = "voided", "timeout"
    assert (await lab.finalize(item))[0] == "applied"
    assert await lab.ints(keys.user(s).balances) == {ASSET: 100}
    await lab.zero_sum(s, r)


async def test_accept_over_amount_bound_keeps_the_offer(lab: Lab) -> None:
    """An accept taking the balance over the bound is `rejected accept_balance_full`; the offer stays open."""
    s, r, item = await lab.offered(3)
    before = await lab.money(r)
    assert await lab.under(amount_max=2).resolve(r, item.tid, "accept") == [
        "rejected", "", "", "accept_balance_full"]
    assert await lab.money(r) == before
    assert (await lab.record(r, item.tid))["st"] == "offered"
    assert (await lab.resolve(r, item.tid, "accept"))[1] == "accepted"
    await lab.zero_sum(s, r)


@pytest.mark.parametrize("field", ["banned", "risk_banned"])
async def test_a_recipient_banned_while_an_offer_waits_cannot_accept_it(lab: Lab, field: str) -> None:
    """Banned since the offer (by the platform or the risk engine), the accept is `recipient_banned`."""
    # Nothing moves and the offer stays open; a decline still voids it, so the sender's cards
    # can go back.
    s, r, item = await lab.offered(3)
    await lab.r.hset(keys.user(r).profile, field, "1")
    before = await lab.money(r)
    assert await lab.resolve(r, item.tid, "accept") == ["rejected", "", "", "recipient_banned"]
    assert await lab.money(r) == before
    assert (await lab.record(r, item.tid))["st"] == "offered"
    assert (await lab.resolve(r, item.tid, "decline"))[1] == "voided"
    assert (await lab.record(r, item.tid))["reason"] == "declined"
    await lab.zero_sum(s, r)


async def test_resolve_unknown_action_or_offer(lab: Lab) -> None:
    """An unknown action is an error reply; an unknown id, or a delivered gift, `not_found`."""
    s, r, item = await lab.offered(3)
    with pytest.raises(ResponseError, match="unknown offer action"):
        await lab.resolve(r, item.tid, "keep")
    assert await lab.resolve(r, f"{s}:nope", "accept") == ["not_found", "", "", ""]
    other = gift(s, uid("r"), 1)
    await lab.user(other.to)
    await lab.follow(s, other.to)
    await lab.debit(other)
    await lab.credit(other)
    assert await lab.resolve(other.to, other.tid, "accept") == ["not_found", "", "", ""]
    assert (await lab.record(r, item.tid))["st"] == "offered"


# == dead_letter =====================================================================

async def test_dead_letter_moves_a_pending_entry_once(lab: Lab) -> None:
    """A pending entry is acked, deleted and copied to the dead stream once; a second call is `not_found`."""
    # The copy keeps its fields, error and attempts; its failure counts are cleared.
    part = 1_000_000 + uuid.uuid4().int % 1_000_000  # a partition no other test uses
    stream, dead, fails = keys.settle_stream(part), keys.dead_letters(part), keys.settle_failures(part)
    marks = keys.settle_dead_marks(part)
    group = keys.SETTLE_GROUP
    await lab.r.xgroup_create(stream, group, id="0", mkstream=True)
    eid = await lab.r.xadd(stream, {"kind": "send", "user": "u1"})
    keep = await lab.r.xadd(stream, {"kind": "send", "user": "u2"})
    await lab.r.xreadgroup(group, "w1", {stream: ">"}, count=2)
    await lab.r.hset(fails, mapping={eid: 5, f"{eid}:error": "boom", keep: 1, "user:u1": eid,
                                     "user:u2": keep})
    fields = json.dumps({"kind": "send", "user": "u1"})
    args = [group, eid, fields, "boom", 5, NOW, S.dead_letters_max, "u1", "send:u1:u1:g1"]
    reply = await lab.sc["dead_letter"](keys=[stream, dead, fails, marks], args=args)
    assert reply[0] == "applied"
    [(did, entry)] = await lab.r.xrange(dead)
    assert did == reply[1]
    assert entry == {"entry": eid, "error": "boom", "attempts": "5", "at": str(NOW), "fields": fields,
                     "request": "send:u1:u1:g1"}
    assert [i for i, _ in await lab.r.xrange(stream)] == [keep]
    pending = await lab.r.xpending_range(stream, group, min="-", max="+", count=10)
    assert [p["message_id"] for p in pending] == [keep]
    assert await lab.r.hgetall(fails) == {keep: "1", "user:u2": keep}  # u1's later entries go on
    assert await lab.r.hgetall(marks) == {"send:u1:u1:g1": did}  # a resend is answered from it
    assert await lab.sc["dead_letter"](keys=[stream, dead, fails, marks], args=args) == [
        "not_found", ""]
    assert await lab.r.xlen(dead) == 1
    await lab.r.delete(stream, dead, fails, marks)


async def test_dead_letters_are_trimmed_to_their_bound_exactly(lab: Lab) -> None:
    """Past `dead_letters_max` (2 here) the oldest dead letters go, exactly, and their marks with them."""
    part = 1_000_000 + uuid.uuid4().int % 1_000_000  # a partition no other test uses
    stream, dead, fails = keys.settle_stream(part), keys.dead_letters(part), keys.settle_failures(part)
    marks = keys.settle_dead_marks(part)
    group = keys.SETTLE_GROUP
    await lab.r.xgroup_create(stream, group, id="0", mkstream=True)
    ids = [await lab.r.xadd(stream, {"kind": "send", "user": f"u{i}"}) for i in range(4)]
    await lab.r.xreadgroup(group, "w1", {stream: ">"}, count=4)
    for i, eid in enumerate(ids):
        args = [group, eid, "{}", "boom", 5, NOW, 2, f"u{i}", f"send:u{i}:r{i}"]
        assert (await lab.sc["dead_letter"](keys=[stream, dead, fails, marks], args=args))[0] == "applied"
    kept = await lab.r.xrange(dead)
    assert [e["entry"] for _, e in kept] == ids[2:]
    # the trimmed ones took their marks along: a resend of theirs runs again
    assert await lab.r.hgetall(marks) == {f"send:u{i}:r{i}": did for i, (did, _) in
                                          zip((2, 3), kept, strict=True)}
    await lab.r.delete(stream, dead, fails, marks)


# == partition_lease, worker_beat ====================================================

async def test_partition_lease_is_held_by_one_worker_until_released_or_lapsed(lab: Lab) -> None:
    """A partition lease is held by one worker until released or lapsed, then another takes it."""
    # A free partition is taken, renewed by its holder, refused to another (naming the holder); a release by
    # another is `not_found`.
    owner = keys.settle_owner(1_000_000 + uuid.uuid4().int % 1_000_000)
    lease = lab.sc["partition_lease"]

    async def call(worker: str, mode: str, ms: int = 60_000) -> Any:
        return await lease(keys=[owner], args=[worker, ms, mode])

    assert await call("w1", "hold") == ["applied", ""]
    assert await call("w1", "hold") == ["exists", ""]
    assert 0 < await lab.r.pttl(owner) <= 60_000
    assert await call("w2", "hold") == ["conflict", "w1"]
    assert await call("w2", "release") == ["not_found", "w1"]
    assert await lab.r.get(owner) == "w1"
    assert await call("w1", "release") == ["applied", ""]
    assert await call("w2", "hold", ms=50) == ["applied", ""]
    await asyncio.sleep(0.12)  # w2's 50 ms lease lapses: it stalled, or died
    assert await call("w1", "hold") == ["applied", ""]
    assert await call("w2", "hold") == ["conflict", "w1"]
    with pytest.raises(ResponseError, match="unknown mode"):
        await call("w1", "steal")
    with pytest.raises(ResponseError, match="bad integer argument lease"):
        await lease(keys=[owner], args=["w1", "soon", "hold"])
    await lab.r.delete(owner)


async def test_worker_beat_counts_the_live_workers_and_drops_the_silent(lab: Lab) -> None:
    """Each beat counts the workers whose beat has not lapsed; a silent one drops out after a lease."""
    # One that leaves drops out at once.
    live = f"{keys.SETTLE_WORKERS}:{uuid.uuid4().hex}"  # not the shared server's workers
    beat = lab.sc["worker_beat"]

    async def call(worker: str, mode: str = "beat", ms: int = 60_000) -> Any:
        return await beat(keys=[live], args=[worker, ms, mode])

    assert await call("w1") == ["applied", 1]
    assert await call("w2", ms=50) == ["applied", 2]
    assert await call("w1") == ["applied", 2]
    await asyncio.sleep(0.12)  # w2 went silent
    assert await call("w1") == ["applied", 1]
    assert await call("w3") == ["applied", 2]
    assert await call("w3", "leave") == ["applied", 1]
    assert await lab.r.zrange(live, 0, -1) == ["w1"]
    await lab.r.delete(live)


async def test_like_batches_add_once_and_forget_silent_gateways(redis: Redis) -> None:
    """like_room adds a (gateway, batch) once and, past 32 gateways, forgets only the silent; at most 256."""
    # A resent batch answers `exists` with the total. It forgets the ones silent for longer than kept (and an
    # older version's entries), not the rest.
    sc = Scripts(redis)
    sc.load("server.rooms")
    rk = keys.room(f"lb-{NOW}")
    await redis.hset(rk.profile, mapping={"streamer": "st", "live": "1", "session": "s:1"})
    kept_s = 3600

    async def batch(gateway: str, n: int, likes: int, at_ms: int) -> list[Any]:
        return list(await sc["like_room"](keys=[rk.profile, rk.channel, rk.like_batches],
                                          args=[likes, "", "p", gateway, n, kept_s, at_ms]))

    assert await batch("g-new", 1, 5, NOW) == ["applied", "5"]
    assert await batch("g-new", 1, 5, NOW) == ["exists", "5"]  # resent: not added again
    assert await batch("g-new", 2, 3, NOW) == ["applied", "8"]
    for i in range(31):  # gateways of an hour and more ago (restarted since)
        await batch(f"g-old-{i}", 1, 1, NOW - kept_s * 1000 - 1)
    assert await redis.hlen(rk.like_batches) == 32
    assert (await batch("g-next", 1, 1, NOW))[0] == "applied"
    assert sorted(await redis.hkeys(rk.like_batches)) == ["g-new", "g-next"]
    assert await redis.hget(rk.profile, "likes") == "40"  # 5 + 3 + 31 + 1
    # entries an older version wrote (a batch number, no time) count as silent, never break it
    await redis.hset(rk.like_batches, mapping={f"g-v0-{i}": "7" for i in range(31)})
    assert (await batch("g-after", 1, 2, NOW))[0] == "applied"
    assert sorted(await redis.hkeys(rk.like_batches)) == ["g-after", "g-new", "g-next"]
    # a gateway restarting in a loop: past 256 recent gateways the longest silent goes
    await redis.hset(rk.like_batches, mapping={f"g-loop-{i}": f"1:{NOW - 1000 - i}" for i in range(253)})
    assert await redis.hlen(rk.like_batches) == 256
    assert (await batch("g-cap", 1, 1, NOW))[0] == "applied"
    assert await redis.hlen(rk.like_batches) == 256
    assert not await redis.hexists(rk.like_batches, "g-loop-252")  # the oldest of them


def _package(root: Any, name: str, scripts: dict[str, str]) -> str:
    """A throwaway subsystem package with these lua/ scripts, importable from `root`."""
    pkg = root / name
    (pkg / "lua").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for file, text in scripts.items():
        (pkg / "lua" / file).write_text(text)
    return name


async def test_a_script_is_refused_a_helpers_name_and_a_compile_error_names_its_line(
        redis: Redis, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A script named like a prelude helper is refused at load; a compile error names its file and line."""
    # Named like `ledger.lua` it would silently take that helper's place in its library; a name that is no Lua
    # name is refused too. The broken script fails its first call; a library is one text, so Valkey's line
    # number names no file.
    from server.store.scripts import Scripts

    monkeypatch.syspath_prepend(str(tmp_path))
    for bad in ("ledger.lua", "emit.lua", "tip-send.lua", "end.lua", "table.lua"):
        name = _package(tmp_path, f"shadow_{uuid.uuid4().hex[:6]}", {bad: "return {'applied'}\n"})
        with pytest.raises(ValueError, match="cannot be a script"):
            Scripts(redis).load(name)
    broken = _package(tmp_path, f"broken_{uuid.uuid4().hex[:6]}", {
        "good.lua": "return {'applied', 'ok'}\n",
        "step.lua": "local a = 1\nlocal b = 2\nlocal c = = 3\nreturn {'applied'}\n"})
    scripts = Scripts(redis)
    scripts.load(broken)
    with pytest.raises(ResponseError, match=rf"^{broken}/lua/step\.lua:3: "):
        await scripts["good"](keys=[], args=[])
