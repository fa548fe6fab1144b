"""Popularity cards through the public interfaces on a moved clock: lots expiring at 48 h
exactly and spent oldest first, the sign-in streak, creator tasks, purchases, small-card
exchange, violations and fraud freezes, card uses with their rules, targeting and hash
ownership, schedules and cancels, the recommender's decaying weight, the dashboard."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from protocol.client import Client
from server import days
from server.config import Settings, problems
from server.popularity.flows import user_keys
from server.store import keys
from server.store.embedded import EmbeddedValkey
from server.store.scripts import Scripts
from tests.support import TEST_CLOCK, Admin, Proc, metric, run_audit, uid
from tests.test_calendar import offset_with_midnight_in
from tests.test_dead_letters import dead_letters

HOUR = 3_600_000
DAY = 24 * HOUR
TARGETING: dict[str, Any] = {"region": {"radius_km": 20}, "age": {"min": 18, "max": 35},
                             "gender": "any",
                             "interests": {"core": ["music", "dance", "idol"], "extended": ["kpop"]}}


async def creator(admin: Admin, category: str = "music", followers: int = 100,
                  days_ago: float = 30) -> str:
    """A registered account with a content category and followers (the platform's figures)."""
    u = uid("cr")
    await admin.user(u, registered_at_ms=await admin.now_ms() - int(days_ago * DAY))
    await admin.call("PUT", f"/popularity/accounts/{u}", {"category": category, "followers": followers})
    return u


async def buy(admin: Admin, user: str, points: int) -> None:
    """Points bought: 8 per yuan (fen × 8 // 100)."""
    await admin.call("POST", "/popularity/purchases",
                     {"order": uid("o"), "user": user, "fen": points * 100 // 8})


@asynccontextmanager
async def two_creators(srv: Proc, admin: Admin, points: tuple[int, int] = (300, 300)
                       ) -> AsyncIterator[tuple[str, Client, Client]]:
    """Two creators with points bought, each connected: (the first's id, their clients)."""
    a, b = await creator(admin), await creator(admin)
    await buy(admin, a, points[0])
    await buy(admin, b, points[1])
    async with await Client.connect(srv.ws, srv.token(a, ttl_s=86400)) as ca, \
            await Client.connect(srv.ws, srv.token(b, ttl_s=86400)) as cb:
        yield a, ca, cb


def use(n: int, **extra: Any) -> dict[str, Any]:
    return {"use": f"u{n}", "card": "video_heating", "content": f"c{uid('v')}",
            "content_hash": f"{random.getrandbits(64):016x}", "category": "music",
            "targeting": TARGETING, **extra}


async def test_lots_expire_at_48h_exactly_and_are_spent_oldest_first(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A lot expires at 48 h exactly (an `expire` event), not 1 ms before; a use takes the oldest lot left."""
    # Two purchases 10 h apart: at 48 h minus 1 ms both count, at 48 h exactly the first is burned.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        t0 = await admin.now_ms()
        await buy(admin, u, 100)
        await admin.advance(10 * HOUR)
        await buy(admin, u, 200)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 5)) as c:
            first = (await c.request("popularity.get"))["lots"][0]["expires_at_ms"]
            assert first - t0 in range(48 * HOUR, 48 * HOUR + 5000)  # bought just after t0
            # the clock runs on while the test talks: a second before, then at the expiry
            await admin.advance(first - 1000 - await admin.now_ms())
            got = await c.request("popularity.get")
            assert got["balance"] == 300
            assert [lot["points"] for lot in got["lots"]] == [100, 200]
            await admin.advance(1000)
            after = await c.request("popularity.get")
            assert (after["balance"], [lot["points"] for lot in after["lots"]]) == (200, [200])
            expired = await c.next_event("popularity.points")
            while expired.get("reason") != "expire":
                expired = await c.next_event("popularity.points")
            assert expired["delta"] == -100
            used = await c.request("popularity.use", timeout_s=20, **use(1))
            assert (used["type"], used["price"], used["balance"]) == ("popularity.used", 100, 100)
            left = await c.request("popularity.get")
            assert [lot["points"] for lot in left["lots"]] == [100]
            # to the millisecond, on the user's slot: at expiry - 1 ms a lot
            # counts, at its expiry it is gone (burned)
            redis = Redis.from_url(vk.url, decode_responses=True)
            scripts = Scripts(redis)
            scripts.load("server.popularity")
            await buy(admin, u, 50)
            lots = await redis.zrange(keys.user(u).lots, 0, -1, withscores=True)
            lot, expires = lots[-1][0], int(lots[-1][1])
            for now, held in ((expires - 1, True), (expires, False)):
                await scripts["pop_read"](keys=user_keys(u), args=[now, Settings().events_bound])
                assert (await redis.hexists(keys.user(u).lot_points, lot)) is held
            await redis.aclose()
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_signin_streak_grows_caps_and_resets(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """50 on day 1, +25 per unbroken day up to 200, once a day; a missed day starts over."""
    srv, _ = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        got = []
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 30)) as c:
            for _ in range(8):
                first = await c.request("popularity.signin")
                again = await c.request("popularity.signin")
                assert "delta" not in again and again["streak"] == first["streak"]
                got.append((first["delta"], first["streak"]))
                await admin.advance(DAY)
            await admin.advance(DAY)  # a missed day
            restart = await c.request("popularity.signin")
        assert got == [(50, 1), (75, 2), (100, 3), (125, 4), (150, 5), (175, 6), (200, 7), (200, 8)]
        assert (restart["delta"], restart["streak"]) == (50, 1)


async def test_tasks_and_purchases(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """The 6th on-topic post of a week grants 500 once; purchases are idempotent by order and exact."""
    # Reported twice, it is counted once, and a replay a week later answers as first counted.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        posts = [await admin.call("POST", "/popularity/posts", {"id": f"p{i}", "user": u})
                 for i in (1, 2, 3, 4, 5, 5, 6, 7)]
        assert [(x["posts"], x["granted"]) for x in posts] == [
            (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (5, 0), (6, 500), (7, 0)]
        await admin.advance(7 * DAY)  # the next weekly cycle counts afresh
        later = await admin.call("POST", "/popularity/posts", {"id": "p8", "user": u})
        assert (later["posts"], later["granted"]) == (1, 0) and later["cycle"] != posts[0]["cycle"]
        replay = await admin.call("POST", "/popularity/posts", {"id": "p6", "user": u})
        assert replay == posts[6]  # answered as first counted: last week's cycle and count
        bought = await admin.call("POST", "/popularity/purchases", {"order": "o1", "user": u, "fen": 1250})
        again = await admin.call("POST", "/popularity/purchases", {"order": "o1", "user": u, "fen": 1250})
        assert (bought["points"], bought["applied"], again["applied"]) == (100, True, False)
        r = await admin.call("POST", "/popularity/purchases", {"order": "o1", "user": u, "fen": 99},
                             ok=False)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "order_id_conflict")
        assert (await admin.balances(u))["popularity"] == 100
        code, out = await run_audit(vk.url)
        assert code == 0, out


async def test_one_creators_small_cards_exchange_into_points(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Like tasks earn `small_card.<creator>` per creator; an exchange burns only its creator's, 10 → 100."""
    # Daily like tasks for two creators earn two assets. The exchange is one ledger pair (a fresh lot, the
    # cards' side a `balance.changed` of its own); the admin's likes view shows the balances after it, and the
    # audit stays clean.
    srv, vk = own_server({"GIFTWIRE_LIKE_TASK_LIKES": "1", **TEST_CLOCK})
    async with Admin(srv) as admin:
        fan, a, b = uid("fan"), uid("st"), uid("st")
        rooms = {}
        for user in (fan, a, b):
            await admin.user(user)
        for streamer in (a, b):
            rooms[streamer] = uid("room")
            await admin.call("PUT", f"/rooms/{rooms[streamer]}", {"streamer": streamer})
        async with await Client.connect(srv.ws, srv.token(fan, ttl_s=60 * 86400)) as c:
            for day in range(25):  # a's task 25 days in a row (rare cards on days 7, 14, 21), b's 12
                for streamer in (a, b) if day < 12 else (a,):
                    assert (await c.request("room.like", room=rooms[streamer], count=1))["counted"] == 1
                await admin.advance(DAY)
            cards = {f"small_card.{a}": 25, f"small_card_rare.{a}": 3,
                     f"small_card.{b}": 12, f"small_card_rare.{b}": 1}
            assert await c.balances() == cards
            assert (await c.request("popularity.exchange", exchange="x1", creator=a, cards=5))["code"] \
                == "exchange_unit"
            assert (await c.request("popularity.exchange", exchange="x2", creator=b, cards=20))["code"] \
                == "insufficient_cards"  # b's 12 do not borrow from a's 25
            ex = await c.request("popularity.exchange", exchange="x3", creator=a, cards=20)
            assert (ex["delta"], ex["reason"], ex["balance"]) == (200, "exchange", 200)
            # the cards' side is an event too: a client showing each event's balance is right
            burned = [e for e in c.events() if e["type"] == "balance.changed"
                      and e["reason"] == "exchange"]
            assert [(e["transfer_id"], e["asset"], e["delta"], e["balance"]) for e in burned] == [
                ("$px:x3", f"small_card.{a}", -20, 5)]
            same = await c.request("popularity.exchange", exchange="x3", creator=a, cards=20)
            assert {**same, "id": ex["id"]} == ex  # answered as the first time, seq and all
            other = await c.request("popularity.exchange", exchange="x3", creator=b, cards=10)
            assert other["code"] == "exchange_id_conflict"
            bare = await c.request("popularity.exchange", exchange="x4", cards=10)
            assert (bare["type"], bare["code"]) == ("error", "missing_field")  # `creator` is required
        after = await admin.balances(fan)
        assert after == {**cards, f"small_card.{a}": 5, "popularity": 200}
        likes = {x["creator"]: x for x in (await admin.call("GET", f"/users/{fan}/likes"))["creators"]}
        assert {(who, x["small_cards"], x["rare_cards"]) for who, x in likes.items()} == {
            (a, after[f"small_card.{a}"], after[f"small_card_rare.{a}"]),
            (b, after[f"small_card.{b}"], after[f"small_card_rare.{b}"])}
        ledger = (await admin.call("GET", f"/users/{fan}/ledger?limit=200"))["entries"]
        pair = [(e["asset"], e["delta"], e["account"]) for e in ledger if e["transfer_id"] == "$px:x3"]
        assert sorted(pair) == [("popularity", 200, "mint"), (f"small_card.{a}", -20, "burn")]
        code, out = await run_audit(vk.url)
        assert code == 0, out


def test_interest_targeting_follows_the_configured_tag_counts() -> None:
    """GIFTWIRE_INTEREST_CORE_MIN/MAX and _EXTENDED_MAX bound a use's interests; the message names them."""
    from server.popularity.rules import refusal_detail, targeting_problem

    wide = Settings(interest_core_min=1, interest_core_max=8, interest_extended_max=0)
    one = {**TARGETING, "interests": {"core": ["a"]}}
    eight = {**TARGETING, "interests": {"core": [f"t{i}" for i in range(8)]}}
    extended = {**TARGETING, "interests": {"core": ["a"], "extended": ["b"]}}
    assert targeting_problem(one, wide) is None and targeting_problem(eight, wide) is None
    assert targeting_problem(extended, wide) == "targeting_interests"
    assert targeting_problem(one, Settings()) == "targeting_interests"  # 3-5 by default
    assert "1–8 core tags and at most 0 extended" in (refusal_detail("targeting_interests", wide) or "")
    bad = problems(Settings(interest_core_min=6))
    assert any("GIFTWIRE_INTEREST_CORE_MIN must be at most" in p for p in bad), bad


async def test_a_user_spends_coin_on_points_in_whole_yuan(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """popularity.buy: 8 points a yuan of coin (10 coin a yuan here), the coin burned, idempotent by `buy`."""
    # Part of a yuan is `buy_unit`, more than held `insufficient_coin`, the same id with other coin
    # `buy_id_conflict`, points past the bound `points_full`: nothing moves on a refusal.
    srv, vk = own_server({**TEST_CLOCK, "GIFTWIRE_COIN_PER_YUAN": "10",
                          "GIFTWIRE_AMOUNT_MAX": "10000"})
    async with Admin(srv) as admin:
        u = await creator(admin)
        await admin.grant(u, 1500, "coin")
        async with await Client.connect(srv.ws, srv.token(u)) as c:
            assert (await c.request("popularity.buy", buy="b0", coin=15))["code"] == "buy_unit"
            assert (await c.request("popularity.buy", buy="b0", coin=1510))["code"] == \
                "insufficient_coin"
            got = await c.request("popularity.buy", buy="b1", coin=1000)
            assert (got["type"], got["delta"], got["reason"], got["balance"]) == (
                "popularity.points", 800, "purchase", 800)
            spent = [e for e in c.events() if e["type"] == "balance.changed"]
            assert [(e["transfer_id"], e["asset"], e["delta"], e["reason"], e["balance"])
                    for e in spent] == [("$pc:b1", "coin", -1000, "purchase", 500)]
            same = await c.request("popularity.buy", buy="b1", coin=1000)
            assert {**same, "id": got["id"]} == got  # answered as the first time
            assert (await c.request("popularity.buy", buy="b1", coin=500))["code"] == \
                "buy_id_conflict"
            await admin.call("POST", "/popularity/purchases",
                             {"order": uid("o"), "user": u, "fen": 115000})  # 9,200 points
            full = await c.request("popularity.buy", buy="b2", coin=500)  # 400 more: past 10,000
            assert (full["type"], full["code"]) == ("error", "points_full")
        assert await admin.balances(u) == {"coin": 500, "popularity": 10000}
        ledger = (await admin.call("GET", f"/users/{u}/ledger?limit=50"))["entries"]
        pair = [(e["asset"], e["delta"], e["account"]) for e in ledger if e["transfer_id"] == "$pc:b1"]
        assert sorted(pair) == [("coin", -1000, "burn"), ("popularity", 800, "mint")]
        code, out = await run_audit(vk.url)
        assert code == 0, out


async def test_an_order_is_one_payment_platform_wide(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A purchase reported again replays; its order with another amount or user is 409 `order_id_conflict`."""
    # A conflict credits no one; a retry after a crash between the order's record and the grant completes the
    # grant, once; a wrong report of an order granted before orders had records leaves no record behind (the
    # right one still replays).
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u, other = await creator(admin), await creator(admin)
        body = {"order": uid("o"), "user": u, "fen": 10000}
        first = await admin.call("POST", "/popularity/purchases", body)
        assert first == {"order": body["order"], "user": u, "points": 800, "applied": True}
        again = await admin.call("POST", "/popularity/purchases", body)
        assert again == {**first, "applied": False}
        for changed in ({"fen": 10001}, {"user": other}, {"user": other, "fen": 20000}):
            r = await admin.call("POST", "/popularity/purchases", {**body, **changed}, ok=False)
            assert (r.status_code, r.json()["error"]["code"]) == (409, "order_id_conflict")
        unknown = await admin.call("POST", "/popularity/purchases",
                                   {"order": "o-free", "user": uid("nobody"), "fen": 500}, ok=False)
        assert unknown.status_code == 404  # and the order is not taken by it:
        assert (await admin.call("POST", "/popularity/purchases",
                                 {"order": "o-free", "user": other, "fen": 500}))["applied"]
        # a crash after step 1 (the order's slot recorded it) and before step 2 (the grant)
        redis = Redis.from_url(vk.url, decode_responses=True)
        scripts = Scripts(redis)
        scripts.load("server.popularity")
        crashed = {"order": uid("o"), "user": u, "fen": 2500}
        await scripts["order_claim"](keys=[keys.purchase_order(crashed["order"])],
                                     args=[u, 2500, 200, ""])
        # an order granted before orders had records of their own (8 points for 100 fen)
        old = uid("o")
        await scripts["pop_grant"](keys=user_keys(u), args=[f"$pp:{old}", 8, "purchase",
                                                            await admin.now_ms(), 48 * HOUR,
                                                            Settings().events_bound, "",
                                                            Settings().amount_max])
        await redis.aclose()
        retried = await admin.call("POST", "/popularity/purchases", crashed)
        assert (retried["points"], retried["applied"]) == (200, True)
        assert not (await admin.call("POST", "/popularity/purchases", crashed))["applied"]
        wrong = await admin.call("POST", "/popularity/purchases",
                                 {"order": old, "user": u, "fen": 200}, ok=False)
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (409, "order_id_conflict")
        right = await admin.call("POST", "/popularity/purchases", {"order": old, "user": u, "fen": 100})
        assert right == {"order": old, "user": u, "points": 8, "applied": False}  # not poisoned
        balance = [(await admin.call("GET", f"/popularity/accounts/{x}"))["balance"] for x in (u, other)]
        assert balance == [800 + 200 + 8, 40]
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_a_freeze_holds_points_and_a_violation_burns_them(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Frozen points can't be spent and don't expire; a lift gives each lot the life it had left."""
    # A violation burns everything, and the user is told.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 800)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 10)) as c:
            before = (await c.request("popularity.get"))["lots"][0]["expires_at_ms"]
            await admin.advance(HOUR)
            await admin.call("POST", "/popularity/freezes", {"user": u, "frozen": True})
            refused = await c.request("popularity.use", timeout_s=20, **use(1))
            assert refused["code"] == "points_frozen"
            await admin.advance(72 * HOUR)  # far past the lot's 48 h
            held = await c.request("popularity.get")
            assert (held["balance"], held["frozen"]) == (800, True)
            await admin.call("POST", "/popularity/freezes", {"user": u, "frozen": False})
            lifted = await c.request("popularity.get")
            assert lifted["balance"] == 800 and not lifted["frozen"]
            # the lot got back the frozen time (72 h and the moments between the calls)
            assert 0 <= lifted["lots"][0]["expires_at_ms"] - before - 72 * HOUR < 5000
            burned = await admin.call("POST", "/popularity/violations", {"id": "v1", "user": u})
            assert burned["burned"] == 800
            told = await c.next_event("popularity.points")
            while told.get("reason") != "violation":
                told = await c.next_event("popularity.points")
            assert (told["delta"], told["balance"]) == (-800, 0)
            again = await admin.call("POST", "/popularity/violations", {"id": "v1", "user": u})
            assert again["burned"] == 800 and (await c.request("popularity.get"))["balance"] == 0
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_card_use_rules_targeting_and_hash_ownership(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Card use rules: category, followers, maturity, 3 uses a day, points, targeting, content ownership."""
    # Followers for fan reach, maturity for advanced cards, one targeting error per field, and a re-upload of
    # content another account boosted (refused, refunded as a fresh lot, the day's use given back).
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin, followers=100, days_ago=10)
        other = await creator(admin)
        await buy(admin, u, 2000)
        await buy(admin, other, 200)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 5)) as c, \
                await Client.connect(srv.ws, srv.token(other, ttl_s=86400 * 5)) as o:
            async def code_of(n: int, **extra: Any) -> str:
                return str((await c.request("popularity.use", timeout_s=20, **use(n, **extra)))
                           .get("code", "ok"))

            assert await code_of(1, category="food") == "category_mismatch"
            assert await code_of(2, card="fan_reach") == "not_enough_followers"
            assert await code_of(3, cover="advanced") == "not_mature"
            bad = {"targeting_region": {**TARGETING, "region": {"radius_km": 0}},
                   "targeting_age": {**TARGETING, "age": {"min": 30, "max": 20}},
                   "targeting_gender": {**TARGETING, "gender": "x"},
                   "targeting_interests": {**TARGETING, "interests": {"core": ["a", "b"]}}}
            for code, targeting in bad.items():
                assert await code_of(4, targeting=targeting) == code
            taken = use(5)
            assert (await o.request("popularity.use", timeout_s=20, **{**taken, "use": "o1"}))["type"] \
                == "popularity.used"
            refused = await c.request("popularity.use", timeout_s=20, **taken)
            assert refused["code"] == "content_taken"
            refund = await c.next_event("popularity.points")
            while refund.get("reason") != "refund":
                refund = await c.next_event("popularity.points")
            assert refund["delta"] == 100
            await admin.call("PUT", f"/popularity/accounts/{u}", {"followers": 10_000})
            assert await code_of(6, card="fan_reach") == "ok"
            assert await code_of(7) == "ok"
            assert await code_of(8, card="live_recommendation") == "ok"
            assert await code_of(9) == "use_limit"  # 3 a day (the refused one gave its back)
            await admin.advance(DAY)
            assert await code_of(10) == "ok"
            account = await admin.call("GET", f"/popularity/accounts/{u}")
            assert account["balance"] == 2000 - 300 - 100 - 200 - 100
        code, out = await run_audit(vk.url)
        assert code == 0, out


async def test_refusals_whose_bound_is_a_setting_name_the_configured_bound(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """`not_enough_followers` and `use_limit` say the deployment's bounds, not the defaults."""
    srv, _ = own_server({"GIFTWIRE_CARD_USES_PER_DAY": "1", "GIFTWIRE_FAN_REACH_FOLLOWERS": "50"})
    async with Admin(srv) as admin:
        u = await creator(admin, followers=10, days_ago=10)
        await buy(admin, u, 2000)
        async with await Client.connect(srv.ws, srv.token(u)) as c:
            few = await c.request("popularity.use", timeout_s=20, **use(1, card="fan_reach"))
            assert (few["code"], few["message"]) == ("not_enough_followers",
                                                     "fan reach needs 50 followers")
            assert (await c.request("popularity.use", timeout_s=20, **use(2)))["type"] \
                == "popularity.used"
            spent = await c.request("popularity.use", timeout_s=20, **use(3))
            assert (spent["code"], spent["message"]) == (
                "use_limit", "today's card uses are used up (1 a day); more tomorrow")


async def test_an_identical_use_retry_replays_and_a_changed_one_conflicts(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A `popularity.use` sent again later replays its first reply, charged once; a changed one conflicts."""
    # No start given. The same use id with any field changed is `use_id_conflict`.
    srv, _ = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 300)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400)) as c:
            plan = use(1)
            first = await c.request("popularity.use", timeout_s=20, **plan)
            assert (first["type"], first["balance"]) == ("popularity.used", 200)
            await admin.advance(60_000)  # "now" moved: a defaulted start is not the same
            again = await c.request("popularity.use", timeout_s=20, **plan)
            assert {**again, "id": first["id"]} == first
            for changed in ({"card": "live_recommendation"}, {"content": "c-other"},
                            {"targeting": {**TARGETING, "gender": "female"}},
                            {"start_at_ms": await admin.now_ms() + HOUR}):
                refused = await c.request("popularity.use", timeout_s=20, **{**plan, **changed})
                assert refused["code"] == "use_id_conflict", changed
            account = await admin.call("GET", f"/popularity/accounts/{u}")
            assert (account["balance"], account["uses_today"]) == (200, 1)


async def test_schedule_cancel_and_the_decaying_weight(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A scheduled use pays now, starts on time, weighs 1.0 for 2 h then × 0.85 per 30 min, and ends."""
    # Start and end are events (weight 0 at the end). A scheduled use cancelled before its start gives its
    # points back; after its start it cannot be cancelled.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 1000)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 5)) as c:
            start = await admin.now_ms() + HOUR
            plan = use(1, start_at_ms=start)
            used = await c.request("popularity.use", timeout_s=20, **plan)
            assert (used["starts_at_ms"], used["balance"]) == (start, 900)

            async def weight() -> float:
                return float((await admin.call("GET", f"/content/{plan['content']}/boost"))["weight"])

            assert await weight() == 0.0
            await admin.advance(HOUR)
            started = await c.next_event("popularity.use.state", timeout_s=10)
            assert (started["use"], started["state"]) == ("u1", "started")
            assert await weight() == 1.0
            await admin.advance(2 * HOUR)
            assert await weight() == 0.85
            await admin.advance(30 * 60_000)
            assert await weight() == 0.7225
            await admin.advance(4 * HOUR)
            ended = await c.next_event("popularity.use.state", timeout_s=10)
            assert ended["state"] == "ended" and await weight() == 0.0

            later = use(2, start_at_ms=await admin.now_ms() + HOUR)
            await c.request("popularity.use", timeout_s=20, **later)
            cancelled = await c.request("popularity.cancel", use="u2", timeout_s=20)
            assert (cancelled["state"], cancelled["balance"]) == ("cancelled", 900)
            again = await c.request("popularity.cancel", use="u2", timeout_s=20)
            assert again["seq"] == cancelled["seq"]
            replay = await c.request("popularity.use", timeout_s=20, **later)  # no free boost
            assert (replay["type"], replay["use"]) == ("popularity.used", "u2")
            assert (await c.request("popularity.get"))["balance"] == 900
            assert (await admin.call("GET", f"/content/{later['content']}/boost"))["active"] == []
            await c.request("popularity.use", timeout_s=20, **use(3))
            late = await c.request("popularity.cancel", use="u3", timeout_s=20)
            assert late["code"] == "use_started"
            assert (await c.request("popularity.cancel", use="nope", timeout_s=20))["code"] == "use_unknown"
        code, out = await run_audit(vk.url)
        assert code == 0, out


async def test_points_parked_in_a_scheduled_use_keep_their_expiry_and_a_violation(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A cancelled scheduled use returns points with their lots' expiry; one paid before a violation, none."""
    # Never a fresh 48 h: parking points for 29 days does not keep them alive, and nothing back is no `refund`
    # event. The violation burned every unused point.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 300)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 40)) as c:
            bought = (await c.request("popularity.get"))["lots"][0]["expires_at_ms"]
            now = await admin.now_ms()
            await c.request("popularity.use", timeout_s=20, **use(1, start_at_ms=now + 10 * HOUR))
            await admin.advance(HOUR)
            back = await c.request("popularity.cancel", use="u1", timeout_s=20)
            assert (back["state"], back["balance"]) == ("cancelled", 300)
            lots = (await c.request("popularity.get"))["lots"]
            assert sorted(lot["expires_at_ms"] for lot in lots) == [bought, bought]  # as bought
            # parked past the lots' 48 h: a cancel then gives nothing back
            await c.request("popularity.use", timeout_s=20, **use(2, start_at_ms=now + 29 * DAY))
            await admin.advance(28 * DAY)
            late = await c.request("popularity.cancel", use="u2", timeout_s=20)
            assert (late["state"], late["balance"]) == ("cancelled", 0)
            refunds = [e for e in c.events() if e.get("reason") == "refund"]
            assert [e["delta"] for e in refunds] == [100]  # u1's price; none of 0 for u2
            # a violation: a use paid before it refunds nothing when cancelled
            await buy(admin, u, 300)
            await c.request("popularity.use", timeout_s=20,
                            **use(3, start_at_ms=await admin.now_ms() + DAY))
            burned = await admin.call("POST", "/popularity/violations", {"id": uid("v"), "user": u})
            assert burned["burned"] == 200
            forfeit = await c.request("popularity.cancel", use="u3", timeout_s=20)
            assert (forfeit["state"], forfeit["balance"]) == ("cancelled", 0)
            await buy(admin, u, 300)  # after the violation, uses refund as before
            await c.request("popularity.use", timeout_s=20,
                            **use(4, start_at_ms=await admin.now_ms() + DAY))
            again = await c.request("popularity.cancel", use="u4", timeout_s=20)
            assert again["balance"] == 300
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_dashboard_figures_and_warnings_once_per_crossing(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Reported figures reach the creator live; a figure past its threshold warns once per crossing."""
    # It warns again only after it came back within.
    srv, _ = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 100)
        async with await Client.connect(srv.ws, srv.token(u)) as c:
            await c.request("popularity.use", timeout_s=20, **use(1))
            reports = [(3000, 600, 8000), (2000, 600, 8000), (2000, 400, 7000), (3000, 600, 7000),
                       (2000, 600, 7000)]
            seen = []
            for completion, interaction, bounce in reports:
                await admin.call("POST", "/popularity/figures", {
                    "user": u, "use": "u1", "completion_bp": completion,
                    "interaction_bp": interaction, "followers_per_hour": 12, "bounce_bp": bounce})
                ev = await c.next_event("popularity.dashboard")
                assert ev["figures"]["completion_bp"] == completion
                seen.append(ev.get("warnings", []))
        assert seen == [["bounce"], ["completion"], ["interaction"], [], ["completion"]]


async def test_random_workload_over_moved_days_keeps_lots_and_ledger_exact(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A random popularity workload over moved days passes the audit, every user's lots summing to balance."""
    # Grants, sign-ins, uses, expiries, violations, freezes and cancels.
    srv, vk = own_server(TEST_CLOCK)
    rng = random.Random(11)
    async with Admin(srv) as admin:
        users = [await creator(admin, followers=20_000, days_ago=200) for _ in range(4)]
        clients = [await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 20)) for u in users]
        n = 0
        for _ in range(120):
            i = rng.randrange(len(users))
            u, c = users[i], clients[i]
            action = rng.choice(["buy", "signin", "use", "schedule", "cancel", "advance",
                                 "freeze", "lift", "violation"])
            n += 1
            if action == "buy":
                await buy(admin, u, rng.choice([80, 240, 800]))
            elif action == "signin":
                await c.request("popularity.signin")
            elif action in ("use", "schedule"):
                start = {"start_at_ms": await admin.now_ms() + HOUR} if action == "schedule" else {}
                await c.request("popularity.use", timeout_s=20,
                                **use(n, card=rng.choice(["video_heating", "fan_reach"]), **start))
            elif action == "cancel":
                await c.request("popularity.cancel", use=f"u{rng.randrange(1, n + 1)}", timeout_s=20)
            elif action == "advance":
                await admin.advance(rng.choice([HOUR, 12 * HOUR, DAY, 2 * DAY]))
            elif action in ("freeze", "lift"):
                await admin.call("POST", "/popularity/freezes", {"user": u, "frozen": action == "freeze"})
            else:
                await admin.call("POST", "/popularity/violations", {"id": f"v{n}", "user": u})
        for c in clients:
            await c.request("popularity.get")
            await c.close()
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_advanced_cards_cover_the_live_room_and_schedules_survive_a_worker_restart(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """An advanced card boosts video and live room together; a scheduled use survives a worker restart."""
    # The account is mature. A use scheduled while one worker runs starts on time under the next worker (the
    # due time is in Redis, not a timer), and a cancel takes the window off both.
    vk = fresh_valkey()
    gw = start("gateway", vk.url, None, TEST_CLOCK)
    worker = start("worker", vk.url, gw.data_dir, TEST_CLOCK)
    async with Admin(gw) as admin:
        u = await creator(admin, followers=5000, days_ago=200)
        young = await creator(admin, followers=5000, days_ago=10)
        await buy(admin, u, 1000)
        await buy(admin, young, 1000)
        async with await Client.connect(gw.ws, gw.token(u, ttl_s=86400 * 5)) as c:
            async def weight(content: str) -> float:
                return float((await admin.call("GET", f"/content/{content}/boost"))["weight"])

            start_at = await admin.now_ms() + HOUR
            plan = use(1, cover="advanced", live_room="room1", start_at_ms=start_at)
            assert (await c.request("popularity.use", timeout_s=20, **plan))["type"] == "popularity.used"
            worker.signal(15)
            assert worker.wait() == 0
            start("worker", vk.url, gw.data_dir, TEST_CLOCK)
            await admin.advance(HOUR)
            started = await c.next_event("popularity.use.state", timeout_s=15)
            assert started["state"] == "started"
            assert await weight(plan["content"]) == 1.0 and await weight("room1") == 1.0
            other = use(2, cover="advanced", live_room="room2", start_at_ms=await admin.now_ms() + HOUR)
            await c.request("popularity.use", timeout_s=20, **other)
            await c.request("popularity.cancel", use="u2", timeout_s=20)
            await admin.advance(HOUR)
            assert await weight(other["content"]) == 0.0 and await weight("room2") == 0.0
        async with await Client.connect(gw.ws, gw.token(young, ttl_s=86400 * 5)) as y:
            refused = await y.request("popularity.use", timeout_s=20,
                                      **use(3, cover="advanced", live_room="room3"))
            assert refused["code"] == "not_mature"


async def expire_event(c: Client) -> dict[str, Any]:
    """The next `popularity.points` event with reason `expire` (other changes skipped)."""
    ev = await c.next_event("popularity.points", timeout_s=15)
    while ev.get("reason") != "expire":
        ev = await c.next_event("popularity.points", timeout_s=15)
    return ev


async def test_balance_views_are_net_of_expired_lots(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Past 48 h, with no sweep running, every balance view shows the expired points gone."""
    # `balance.get`, the admin's balances and its user view; the points are burned, the user told, and the
    # audit stays clean.
    srv, vk = own_server({"GIFTWIRE_POINTS_SWEEP_TICK_MS": str(10**10), **TEST_CLOCK})
    async with Admin(srv) as admin:
        by_client, by_balances, by_user = [await creator(admin) for _ in range(3)]
        for u in (by_client, by_balances, by_user):
            await buy(admin, u, 100)
            await admin.grant(u, 3, asset="coin")
        async with await Client.connect(srv.ws, srv.token(by_client, ttl_s=86400 * 5)) as c, \
                await Client.connect(srv.ws, srv.token(by_user, ttl_s=86400 * 5)) as cu:
            before = await c.request("balance.get")
            assert before["balances"] == {"popularity": 100, "coin": 3}
            await admin.advance(48 * HOUR)
            after = await c.request("balance.get")
            assert after["balances"] == {"coin": 3}
            assert (await expire_event(c))["delta"] == -100
            assert await admin.balances(by_balances) == {"coin": 3}
            assert (await admin.call("GET", f"/users/{by_user}"))["balances"] == {"coin": 3}
            told = await expire_event(cu)
            assert (told["delta"], told["balance"]) == (-100, 0)
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_the_sweep_burns_an_idle_users_expired_lots(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """With nobody reading the user, the sweep alone burns each lot at 48 h; a frozen user's stay."""
    # The user hears `expire`, the newer lot stays until its own time; the audit stays clean.
    srv, vk = own_server({"GIFTWIRE_POINTS_SWEEP_TICK_MS": "100", **TEST_CLOCK})
    redis = Redis.from_url(vk.url, decode_responses=True)

    async def raw_points(user: str) -> int:
        """The stored balance, read without running anything that would burn lots."""
        return int(await redis.hget(keys.user(user).balances, "popularity") or 0)

    async with Admin(srv) as admin:
        idle, frozen = await creator(admin), await creator(admin)
        await buy(admin, idle, 100)
        await buy(admin, frozen, 80)
        await admin.call("POST", "/popularity/freezes", {"user": frozen, "frozen": True})
        await admin.advance(10 * HOUR)
        await buy(admin, idle, 200)
        async with await Client.connect(srv.ws, srv.token(idle, ttl_s=86400 * 5)) as c:
            await admin.advance(38 * HOUR)  # the first lot's 48 h
            told = await expire_event(c)
            assert (told["delta"], told["balance"], [lot["points"] for lot in told["lots"]]) \
                == (-100, 200, [200])
            assert await raw_points(idle) == 200
            await admin.advance(10 * HOUR)  # the second lot's
            assert ((await expire_event(c))["delta"], await raw_points(idle)) == (-200, 0)
        assert await raw_points(frozen) == 80  # frozen points do not expire
        # nothing left to look at (the sweep settles its index just after the event went out)
        for _ in range(100):
            if await redis.zscore(keys.LOTS_DUE, idle) is None:
                break
            await asyncio.sleep(0.05)
        assert await redis.zscore(keys.LOTS_DUE, idle) is None
        assert await metric(srv, "giftwire_points_sweep_users_total") >= 2  # both burns its own
        await redis.aclose()
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_spending_from_two_live_lots_takes_the_older_first(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """With two unexpired lots, a use takes from the older first, and from the newer only once it is empty."""
    srv, _ = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 150)
        await admin.advance(HOUR)
        await buy(admin, u, 300)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400)) as c:
            assert [lot["points"] for lot in (await c.request("popularity.get"))["lots"]] == [150, 300]
            await c.request("popularity.use", timeout_s=20, **use(1))
            assert [lot["points"] for lot in (await c.request("popularity.get"))["lots"]] == [50, 300]
            await c.request("popularity.use", timeout_s=20, **use(2))
            left = await c.request("popularity.get")
            assert (left["balance"], [lot["points"] for lot in left["lots"]]) == (250, [250])


async def test_a_violation_while_frozen_burns_every_point(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A violation burns a frozen user's points all the same; the user is told and stays frozen."""
    # A freeze holds points against expiry and spending, not against a violation.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 400)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400)) as c:
            await admin.call("POST", "/popularity/freezes", {"user": u, "frozen": True})
            burned = await admin.call("POST", "/popularity/violations", {"id": "v1", "user": u})
            assert burned["burned"] == 400
            told = await c.next_event("popularity.points")
            while told.get("reason") != "violation":
                told = await c.next_event("popularity.points")
            assert (told["delta"], told["balance"], told["frozen"]) == (-400, 0, True)
            after = await c.request("popularity.get")
            assert (after["balance"], after["frozen"], "lots" in after) == (0, True, False)
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_a_lot_granted_during_a_freeze_loses_only_the_frozen_time_since_its_grant(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A lot bought while frozen gets back at the lift only the frozen time since its grant."""
    # An older lot gets all of the frozen time; each then expires on its new time.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 100)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 5)) as c:
            await admin.advance(HOUR)
            await admin.call("POST", "/popularity/freezes", {"user": u, "frozen": True})
            await admin.advance(10 * HOUR)
            await buy(admin, u, 200)
            held = await c.request("popularity.get")
            old, new = (lot["expires_at_ms"] for lot in held["lots"])
            await admin.advance(5 * HOUR)
            await admin.call("POST", "/popularity/freezes", {"user": u, "frozen": False})
            lifted = await c.request("popularity.get")
            assert [lot["points"] for lot in lifted["lots"]] == [100, 200]
            old_after, new_after = (lot["expires_at_ms"] for lot in lifted["lots"])
            # 15 h and 5 h, plus the moments the calls took
            assert 0 <= old_after - old - 15 * HOUR < 5000
            assert 0 <= new_after - new - 5 * HOUR < 5000
            await admin.advance(old_after - await admin.now_ms())
            assert (await c.request("popularity.get"))["balance"] == 200
            await admin.advance(new_after - await admin.now_ms())
            assert (await c.request("popularity.get"))["balance"] == 0
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_an_old_account_under_1000_followers_gets_no_advanced_card(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A 200-day-old account with 999 followers is `not_mature` for an advanced card; at 1,000 it is used."""
    # Nothing is taken when refused.
    srv, _ = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin, followers=999, days_ago=200)
        await buy(admin, u, 100)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400)) as c:
            refused = await c.request("popularity.use", timeout_s=20, **use(1, cover="advanced"))
            assert refused["code"] == "not_mature"
            assert (await c.request("popularity.get"))["balance"] == 100
            await admin.call("PUT", f"/popularity/accounts/{u}", {"followers": 1000})
            used = await c.request("popularity.use", timeout_s=20, **use(2, cover="advanced"))
            assert (used["type"], used["balance"]) == ("popularity.used", 0)


async def test_a_start_in_the_past_or_beyond_30_days_is_bad_field(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """`start_at_ms` before now or over 30 days ahead is `bad_field`, nothing taken; 30 days ahead is fine."""
    srv, _ = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 100)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400)) as c:
            now = await admin.now_ms()
            for n, start in ((1, now - 60_000), (2, now + 31 * DAY)):
                refused = await c.request("popularity.use", timeout_s=20, **use(n, start_at_ms=start))
                assert refused["code"] == "bad_field", start
            assert (await c.request("popularity.get"))["balance"] == 100
            start = await admin.now_ms() + 30 * DAY - 60_000
            used = await c.request("popularity.use", timeout_s=20, **use(3, start_at_ms=start))
            assert (used["starts_at_ms"], used["balance"]) == (start, 0)


async def test_a_signin_at_local_midnight_counts_for_the_new_day(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A sign-in at local midnight, to the ms, counts for the new day: the streak's second day, 75 points."""
    # Seconds before midnight a second sign-in is the same day and earns nothing more.
    tz_name = offset_with_midnight_in(3600)
    tz = days.parse_timezone(tz_name)
    srv, _ = own_server({"GIFTWIRE_TIMEZONE": tz_name, **TEST_CLOCK})
    async with Admin(srv) as admin:
        u = await creator(admin)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400)) as c:
            first = await c.request("popularity.signin")
            assert (first["delta"], first["streak"]) == (50, 1)
            today = days.local_day(await admin.now_ms(), tz)
            midnight = int(datetime.combine(today + timedelta(days=1), datetime.min.time(), tz)
                           .timestamp() * 1000)
            assert days.local_day(midnight - 1, tz) == today
            assert days.local_day(midnight, tz) == today + timedelta(days=1)
            await admin.advance(midnight - 5000 - await admin.now_ms())
            before = await c.request("popularity.signin")
            assert "delta" not in before and before["streak"] == 1
            assert await admin.now_ms() < midnight, "the test ran too slowly to sign in before midnight"
            await admin.advance(midnight - await admin.now_ms())
            after = await c.request("popularity.signin")
            assert (after["delta"], after["streak"], after["balance"]) == (75, 2, 125)


async def test_a_use_refused_or_still_settling_cannot_be_cancelled_and_has_no_figures(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Cancelling a refused or still-settling use is `use_unknown`; such uses have no figures (404)."""
    # Never `use_started`. The platform's figures for a refused, a cancelled or an unknown use are 404; the
    # audit stays clean.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        async with two_creators(srv, admin, (300, 100)) as (u, c, o):
            taken = use(1)
            assert (await o.request("popularity.use", timeout_s=20, **taken))["type"] == "popularity.used"
            assert (await c.request("popularity.use", timeout_s=20, **taken))["code"] == "content_taken"
            assert (await c.request("popularity.cancel", use="u1", timeout_s=20))["code"] == "use_unknown"
            later = use(2, start_at_ms=await admin.now_ms() + HOUR)
            await c.request("popularity.use", timeout_s=20, **later)
            assert (await c.request("popularity.cancel", use="u2", timeout_s=20))["state"] == "cancelled"
            figures = {"user": u, "completion_bp": 3000, "interaction_bp": 600,
                       "followers_per_hour": 1, "bounce_bp": 1000}
            for never_boosted in ("u1", "u2", "nope"):
                r = await admin.call("POST", "/popularity/figures", {**figures, "use": never_boosted},
                                     ok=False)
                assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), never_boosted
            r = await admin.call("POST", "/popularity/figures", {**figures, "user": uid("ghost"),
                                                                  "use": "u1"}, ok=False)
            assert (r.status_code, r.json()["error"]["code"]) == (404, "user_unknown")
            # a use whose first step ran but whose settlement has not finished (a worker died)
            redis = Redis.from_url(vk.url, decode_responses=True)
            scripts = Scripts(redis)
            scripts.load("server.popularity")
            s, now = Settings(), await admin.now_ms()
            paid = await scripts["pop_use"](keys=user_keys(u), args=[
                "u3", "video_heating", "basic", "c-settling", "ab" * 8, "music", 100, now,
                now + 6 * HOUR, days.today_key(now, s.timezone), now, 3, 10_000, 0, 1000,
                s.events_bound, "", ""])
            await redis.aclose()
            assert paid[0] == "applied"
            assert (await c.request("popularity.cancel", use="u3", timeout_s=20))["code"] == "use_unknown"
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_the_audit_finds_points_that_no_lot_backs(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A popularity balance with no lots at all fails the audit's `lots_match_points`, naming the user."""
    # The points were written around the lots.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
    redis = Redis.from_url(vk.url, decode_responses=True)
    await redis.hincrby(keys.user(u).balances, "popularity", 7)
    await redis.hincrby(keys.user(u).system, "mint:popularity", -7)  # the ledger still sums
    await redis.aclose()
    code, out = await run_audit(vk.url)
    assert code != 0 and "FAIL lots_match_points" in out and f"{u}: no lots" in out, out


async def test_a_user_noted_while_the_sweep_reads_them_stays_in_its_index(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """A user noted by a grant while the sweep reads them stays in its index, their new lot not lost."""
    # The sweep's index is on its own slot. A claim takes at most its batch of due users and leases them; a
    # user with nothing left leaves at the settle, but one noted meanwhile keeps the noted time; a settle that
    # comes after its lease ran out takes nobody out; a batch of 9,000 is claimed in one call.
    redis = Redis.from_url(fresh_valkey().url, decode_responses=True)  # no worker sweeps it
    scripts = Scripts(redis)
    scripts.load("server.popularity")
    quiet, granted, later = uid("sw"), uid("sw"), uid("sw")
    await redis.zadd(keys.LOTS_DUE, {quiet: 100, granted: 101, later: 102})
    claimed = await scripts["lots_due"](keys=[keys.LOTS_DUE], args=["claim", 200, 60_200, 2])
    assert claimed[1:] == [quiet, granted]
    await redis.zadd(keys.LOTS_DUE, {granted: 150}, lt=True)  # a grant, mid-read
    await scripts["lots_due"](keys=[keys.LOTS_DUE], args=["settle", 200, 60_200, quiet, 0, granted, 0])
    assert await redis.zscore(keys.LOTS_DUE, quiet) is None
    assert await redis.zscore(keys.LOTS_DUE, granted) == 150
    assert await redis.zscore(keys.LOTS_DUE, later) == 102  # the next batch's
    # a sweep that stalled past its lease: a note after the lease ran out cannot lower it,
    # and the late settle must not take that user out of the index
    stalled = (await scripts["lots_due"](keys=[keys.LOTS_DUE], args=["claim", 300, 60_300, 1]))[1:]
    assert stalled == [later]
    await redis.zadd(keys.LOTS_DUE, {later: 70_000}, lt=True)  # a grant, long after the lease
    await scripts["lots_due"](keys=[keys.LOTS_DUE], args=["settle", 70_001, 60_300, later, 0])
    assert await redis.zscore(keys.LOTS_DUE, later) == 60_300  # still looked at again
    # a batch setting past what Lua can unpack (~8,000): the claim still answers them all
    await redis.zadd(keys.LOTS_DUE, {f"many-{i}": 400 for i in range(9_000)})
    many = await scripts["lots_due"](keys=[keys.LOTS_DUE], args=["claim", 500, 60_500, 10_000])
    assert many[0] == "applied"
    assert {u for u in many[1:] if u.startswith("many-")} == {f"many-{i}" for i in range(9_000)}
    await redis.aclose()


async def test_a_cancel_run_again_after_a_crash_still_leaves_its_refund_to_the_sweep(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A cancel re-sent after a crash answers as before and puts the user back in the sweep's index."""
    # The refund went in but the note for the expiry sweep was lost (a worker killed in between, simulated by
    # taking the user out of the index); back in it, the refunded lot will still be burned when it expires.
    srv, vk = own_server(TEST_CLOCK)
    redis = Redis.from_url(vk.url, decode_responses=True)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 1000)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400)) as c:
            await c.request("popularity.use", timeout_s=20,
                            **use(1, start_at_ms=await admin.now_ms() + HOUR))
            cancelled = await c.request("popularity.cancel", use="u1", timeout_s=20)
            assert cancelled["state"] == "cancelled"
            await redis.zrem(keys.LOTS_DUE, u)  # the note after the refund never happened
            again = await c.request("popularity.cancel", use="u1", timeout_s=20)
            assert again["seq"] == cancelled["seq"]
        assert await redis.zscore(keys.LOTS_DUE, u) is not None
    await redis.aclose()


async def test_a_hash_is_given_back_when_its_owners_last_use_is_cancelled(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Content whose uses were all cancelled before starting may be boosted by another account."""
    # It never boosted. While one of the owner's uses still holds the hash it stays `content_taken`, and
    # replaying a cancelled use's request does not claim it again.
    srv, _vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        async with two_creators(srv, admin) as (_a, ca, cb):
            start = await admin.now_ms() + HOUR
            first = use(1, start_at_ms=start)
            second = {**first, "use": "u2", "start_at_ms": start + HOUR}
            for u in (first, second):
                assert (await ca.request("popularity.use", timeout_s=20, **u))["type"] == "popularity.used"
            theirs = {**use(1), "content_hash": first["content_hash"]}
            assert (await cb.request("popularity.use", timeout_s=20, **theirs))["code"] == "content_taken"
            assert (await ca.request("popularity.cancel", use="u1", timeout_s=20))["state"] == "cancelled"
            theirs["use"] = "u2"
            assert (await cb.request("popularity.use", timeout_s=20, **theirs))["code"] == "content_taken"
            assert (await ca.request("popularity.cancel", use="u2", timeout_s=20))["state"] == "cancelled"
            replay = await ca.request("popularity.use", timeout_s=20, **first)
            assert (replay["type"], replay["use"]) == ("popularity.used", "u1")
            theirs["use"] = "u3"
            assert (await cb.request("popularity.use", timeout_s=20, **theirs))["type"] == "popularity.used"
            again = {**use(3), "content_hash": first["content_hash"]}
            assert (await ca.request("popularity.use", timeout_s=20, **again))["code"] == "content_taken"


async def test_content_claim_release_keeps_a_hash_claimed_before_uses_were_kept(
        redis: Redis) -> None:
    """A claim release by another account or of an unknown use changes nothing; a bare owner key stays."""
    # The claim step directly. A hash claimed before its uses were kept with it (a bare owner key) is never
    # given back by a release.
    scripts = Scripts(redis)
    scripts.load("server.popularity")
    h = f"{random.getrandbits(64):016x}"
    ks = [keys.content_owner(h), keys.content_owner_uses(h)]
    claim = scripts["content_claim"]
    assert (await claim(keys=ks, args=["ann", "u1", "claim"]))[0] == "applied"
    assert (await claim(keys=ks, args=["ann", "u1", "claim"]))[0] == "exists"
    assert list(await claim(keys=ks, args=["bo", "u9", "claim"])) == ["rejected", "content_taken"]
    assert (await claim(keys=ks, args=["bo", "u1", "release"]))[0] == "exists"
    assert (await claim(keys=ks, args=["ann", "u7", "release"]))[0] == "exists"
    assert (await claim(keys=ks, args=["ann", "u1", "release"]))[0] == "applied"
    assert await redis.exists(*ks) == 0
    old = f"{random.getrandbits(64):016x}"
    ks = [keys.content_owner(old), keys.content_owner_uses(old)]
    await redis.set(ks[0], "ann")  # as an earlier version recorded the first booster
    assert (await claim(keys=ks, args=["ann", "u2", "claim"]))[0] == "applied"
    assert (await claim(keys=ks, args=["ann", "u2", "release"]))[0] == "applied"
    assert await redis.get(ks[0]) == "ann"
    assert list(await claim(keys=ks, args=["bo", "u1", "claim"])) == ["rejected", "content_taken"]


async def test_a_voided_use_is_refunded_unboosted_and_its_hash_given_back(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Voiding a dead-lettered use takes its boost away, gives its hash back and refunds the price."""
    # Its last step always fails (a fault), after it claimed its hash and boosted its content; sent again
    # meanwhile it is not run again (one dead letter). After the void: nothing charged, nothing boosted, the
    # audit clean.
    srv, vk = own_server({**TEST_CLOCK, "GIFTWIRE_CLAIM_IDLE_MS": "100",
                          "GIFTWIRE_SETTLE_ATTEMPTS_MAX": "3", "GIFTWIRE_FAULT": "poison_use_settle"})
    async with Admin(srv) as admin:
        async with two_creators(srv, admin) as (_a, ca, cb):
            poisoned = {**use(1), "use": "poison-1"}
            failed = await ca.request("popularity.use", timeout_s=30, **poisoned)
            assert (failed["type"], failed["code"]) == ("error", "settlement_failed")
            # sent again while its dead letter waits: answered at once, not run into another one
            for _ in range(2):
                again = await ca.request("popularity.use", timeout_s=10, **poisoned)
                assert (again["type"], again["code"]) == ("error", "settlement_failed")
            await asyncio.sleep(0.4)  # past the retry interval: nothing was left to re-run
            boost = f"/content/{poisoned['content']}/boost"
            assert (await admin.call("GET", boost))["weight"] == 1.0  # step 3 ran
            (dead,) = (await dead_letters(admin, 1))["dead_letters"]
            voided = await admin.call("POST", f"/dead-letters/0/{dead['id']}/void")
            assert voided["outcome"] == "refunded"
            assert (await admin.call("GET", boost))["weight"] == 0.0
            assert (await ca.request("popularity.get"))["balance"] == 300
            theirs = {**use(1), "content_hash": poisoned["content_hash"]}
            assert (await cb.request("popularity.use", timeout_s=20, **theirs))["type"] == "popularity.used"
        code, out = await run_audit(vk.url)
        assert code == 0 and "dead letters: 0" in out, out


async def test_a_cancel_while_frozen_gives_back_only_what_was_alive_at_the_freeze(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Points from a lot that expired before a freeze stay burned when their use is cancelled during it."""
    # They used to come back, and the balance showed them until the thaw burned them again; the audit stays
    # clean.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        await buy(admin, u, 200)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 5)) as c:
            later = use(1, start_at_ms=await admin.now_ms() + 10 * DAY)
            assert (await c.request("popularity.use", timeout_s=20, **later))["balance"] == 100
            await admin.advance(2 * DAY + HOUR)  # the lot's 48 h are over
            await admin.call("POST", "/popularity/freezes", {"user": u, "frozen": True})
            cancelled = await c.request("popularity.cancel", use="u1", timeout_s=20)
            assert (cancelled["state"], cancelled["balance"]) == ("cancelled", 0)
            assert (await admin.call("GET", f"/popularity/accounts/{u}"))["balance"] == 0
            await admin.call("POST", "/popularity/freezes", {"user": u, "frozen": False})
            assert (await c.request("popularity.get"))["balance"] == 0
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_a_purchase_past_the_balance_bound_is_refused_and_its_order_stays_free(
        admin: Admin) -> None:
    """A purchase past GIFTWIRE_AMOUNT_MAX (10^12) is `400 amount_too_large`, and its order stays free."""
    # Orders of 10^12 fen buy 8·10^10 points each: twelve fit, the thirteenth is refused with nothing granted
    # (the balance went past the bound before). The order stays that user's payment, and the same report again
    # is granted once a violation burned the points.
    rich, other = await creator(admin), await creator(admin)
    for _ in range(12):
        await admin.call("POST", "/popularity/purchases",
                         {"order": uid("big"), "user": rich, "fen": 10**12})
    order = uid("big")
    r = await admin.call("POST", "/popularity/purchases",
                         {"order": order, "user": rich, "fen": 10**12}, ok=False)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "amount_too_large")
    assert (await admin.balances(rich))["popularity"] == 12 * 8 * 10**10
    r = await admin.call("POST", "/popularity/purchases",
                         {"order": order, "user": other, "fen": 10**12}, ok=False)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "order_id_conflict")
    await admin.call("POST", "/popularity/violations", {"id": uid("v"), "user": rich})
    again = await admin.call("POST", "/popularity/purchases",
                             {"order": order, "user": rich, "fen": 10**12})
    assert (again["points"], again["applied"]) == (8 * 10**10, True)
    assert (await admin.balances(rich))["popularity"] == 8 * 10**10


async def test_points_parked_in_a_use_keep_the_life_a_lifted_freeze_gave_every_lot(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Points parked in a use during a 72 h freeze get the lots' moved expiry: 48 h + the frozen time."""
    # Cancelled 75 h after the purchase, they come back (they expired at 48 h before) and expire 120 h after
    # it.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        u = await creator(admin)
        bought = await admin.now_ms()
        await buy(admin, u, 100)
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 6)) as c:
            later = use(1, start_at_ms=bought + 10 * DAY)
            assert (await c.request("popularity.use", timeout_s=20, **later))["balance"] == 0
            await admin.advance(2 * HOUR)
            await admin.call("POST", "/popularity/freezes", {"user": u, "frozen": True})
            await admin.advance(72 * HOUR)
            await admin.call("POST", "/popularity/freezes", {"user": u, "frozen": False})
            await admin.advance(HOUR)  # 75 h after the purchase
            cancelled = await c.request("popularity.cancel", use="u1", timeout_s=20)
            assert (cancelled["state"], cancelled["balance"]) == ("cancelled", 100)
            (lot,) = (await admin.call("GET", f"/popularity/accounts/{u}"))["lots"]
            assert abs(lot["expires_at_ms"] - (bought + 120 * HOUR)) < 5_000, lot
        code, out = await run_audit(vk.url)
        assert code == 0 and "ok   lots_match_points" in out, out


async def test_the_audit_names_points_no_lot_backs(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A balance of points with no lots, or lots that hold another sum, fail lots_match_points by name."""
    srv, vk = own_server({})
    async with Admin(srv) as admin:
        u, w = await creator(admin), await creator(admin)
        await buy(admin, u, 80)
        raw = Redis.from_url(vk.url, decode_responses=True)
        try:
            await raw.hincrby(keys.user(u).balances, "popularity", 5)
            await raw.hincrby(keys.user(w).balances, "popularity", 7)  # w has no lots at all
            await raw.hincrby(keys.user(w).system, "mint:popularity", -12)
        finally:
            await raw.aclose()
        code, out = await run_audit(vk.url)
        assert code == 1 and "FAIL lots_match_points" in out, out
        assert f"{u}: lots hold 80 points, the balance says 85" in out, out
        assert f"{w}: no lots, the balance says 7" in out, out
