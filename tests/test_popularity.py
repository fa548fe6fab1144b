"""Popularity cards through the public interfaces on a moved clock: lots expiring at 48 h
exactly and spent oldest first, the sign-in streak, creator tasks, purchases, small-card
exchange, violations and fraud freezes, card uses with their rules, targeting and hash
ownership, schedules and cancels, the recommender's decaying weight, the dashboard."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from protocol.client import Client
from server.config import Settings
from server.popularity.flows import user_keys
from server.store import keys
from server.store.embedded import EmbeddedValkey
from server.store.scripts import Scripts
from tests.support import TEST_CLOCK, Admin, Proc, run_audit, uid

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


def use(n: int, **extra: Any) -> dict[str, Any]:
    return {"use": f"u{n}", "card": "video_heating", "content": f"c{uid('v')}",
            "content_hash": f"{random.getrandbits(64):016x}", "category": "music",
            "targeting": TARGETING, **extra}


async def test_lots_expire_at_48h_exactly_and_are_spent_oldest_first(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Two purchases 10 h apart: at 48 h minus 1 ms both count, at 48 h exactly the first is
    burned (an `expire` event), and a card use takes from the oldest lot left."""
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


async def test_tasks_purchases_and_exchange(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """The 6th on-topic post of a week grants 500 once (reported twice, counted once);
    purchases are idempotent by order and exact; 10 small cards exchange into 100 points."""
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
        bought = await admin.call("POST", "/popularity/purchases", {"order": "o1", "user": u, "fen": 1250})
        again = await admin.call("POST", "/popularity/purchases", {"order": "o1", "user": u, "fen": 1250})
        assert (bought["points"], bought["applied"], again["applied"]) == (100, True, False)
        r = await admin.call("POST", "/popularity/purchases", {"order": "o1", "user": u, "fen": 99},
                             ok=False)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "order_id_conflict")
        await admin.grant(u, 25, asset="small_card")
        async with await Client.connect(srv.ws, srv.token(u, ttl_s=86400 * 30)) as c:
            assert (await c.request("popularity.exchange", exchange="x1", cards=5))["code"] == "exchange_unit"
            assert (await c.request("popularity.exchange", exchange="x2", cards=30))["code"] \
                == "insufficient_cards"
            ex = await c.request("popularity.exchange", exchange="x3", cards=20)
            assert (ex["delta"], ex["reason"], ex["balance"]) == (200, "exchange", 300)
            same = await c.request("popularity.exchange", exchange="x3", cards=20)
            assert same["balance"] == 300
        assert (await admin.balances(u))["small_card"] == 5
        code, out = await run_audit(vk.url)
        assert code == 0, out


async def test_an_order_is_one_payment_platform_wide(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A purchase reported again replays its answer; its order with another amount or for another
    user is `409 order_id_conflict` and credits no one; a retry after a crash between the
    order's record and the grant completes the grant, once; a wrong report of an order granted
    before orders had records leaves no record behind (the right one still replays)."""
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
                                                            Settings().events_bound, ""])
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
    """Frozen points cannot be spent and do not expire; lifting the freeze gives each lot
    the life it had left; a violation burns everything and the user is told."""
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
    """Category, followers for fan reach, maturity for advanced cards, 3 uses a day, points,
    one targeting error per field, and a re-upload of content another account boosted
    (refused, refunded as a fresh lot, the day's use given back)."""
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


async def test_an_identical_use_retry_replays_and_a_changed_one_conflicts(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """The same `popularity.use` (no start given) sent again later gets the first reply and is
    charged once; the same use id with any field changed is `use_id_conflict`."""
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
    """A use scheduled for later takes its points now, starts on time (an event), weighs 1.0
    for 2 h then × 0.85 per 30 min, and ends (an event, weight 0); a scheduled use cancelled
    before its start comes back as a fresh lot; after its start it cannot be cancelled."""
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


async def test_dashboard_figures_and_warnings_once_per_crossing(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Reported figures reach the creator live; a figure past its threshold warns once, and
    again only after it came back within."""
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
    """Grants, sign-ins, uses, expiries, violations, freezes and cancels at random over
    moved days: the audit passes and every user's lots sum to their balance."""
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
    """A mature account's advanced card boosts its video and its live room together; a use
    scheduled while one worker runs starts on time under the next worker (the due time is
    in Redis, not a timer), and a cancel takes the window off both."""
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
