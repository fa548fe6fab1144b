"""Enterprise accounts through the admin API of a real server: eligibility from the
platform's figures, a brand's batch issuance (once per id, with who it reached), orders in
a shop window (a gift above the threshold, the ROI counted once), cards by fan-club level."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from protocol.client import Client
from server.store import keys
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, run_audit, uid


async def enterprise(admin: Admin, **figures: object) -> str:
    e = uid("ent")
    await admin.user(e)
    if figures:
        await admin.call("PUT", f"/enterprises/{e}", figures)
    return e


async def refill(admin: Admin, asset: str, cards: int) -> int:
    """The platform's stock of `asset` grows by `cards` (issuances draw from it); the stock now."""
    out = await admin.call("POST", "/notes/stock", {"id": uid("fill"), "asset": asset,
                                                     "amount": cards})
    return int(out["stock"])


async def stock_of(admin: Admin, asset: str) -> int:
    kinds = (await admin.call("GET", "/notes"))["kinds"]
    return int(next(k["stock"] for k in kinds if k["asset"] == asset))


async def test_a_brand_issues_cards_once_and_sees_who_got_them(server: Proc, admin: Admin) -> None:
    """From 500,000 fans a verified brand credits each named user once; its view shows who got the cards."""
    # Below 500,000 fans or unverified, a brand may not issue. Each credit is a `balance.changed`, reason
    # `enterprise`, unknown users are listed; the same issuance again credits nothing more, another under its
    # id is a conflict; the view breaks the recipients down by profile.
    e = await enterprise(admin, brand_verified=True, fans=499_999)
    users = [uid() for _ in range(3)]
    await admin.user(users[0], vip=True, region="eu", gender="female")
    await admin.user(users[1], real_name_verified=True)
    await admin.user(users[2])
    ghost = uid()
    body = {"id": "launch", "asset": "note.mi", "cards": 2, "users": [*users, ghost]}
    no = await admin.call("POST", f"/enterprises/{e}/issuances", body, ok=False)
    assert (no.status_code, no.json()["error"]["code"]) == (409, "enterprise_not_eligible")
    await refill(admin, "note.mi", 8)
    got = await admin.call("PUT", f"/enterprises/{e}", {"fans": 500_000})
    assert got["eligible"] == {"brand_marketing": True, "ecommerce": False,
                               "user_operations": False}
    async with await Client.connect(server.ws, server.token(users[0])) as c:
        first = await admin.call("POST", f"/enterprises/{e}/issuances", body)
        ev = await c.next_event("balance.changed")
        assert (ev["reason"], ev["asset"], ev["delta"]) == ("enterprise", "note.mi", 2)
    assert (first["credited"], first["unknown"], first["replayed"]) == (3, [ghost], False)
    assert first["complete"] is False  # a user it names is not registered
    again = await admin.call("POST", f"/enterprises/{e}/issuances", body)
    assert (again["replayed"], again["credited"], again["unknown"]) == (True, 3, [ghost])
    await admin.user(ghost)  # registered since: the same issuance again completes it
    done = await admin.call("POST", f"/enterprises/{e}/issuances", body)
    assert (done["credited"], done["unknown"], done["complete"]) == (4, [], True)
    assert await admin.balances(ghost) == {"note.mi": 2}
    for u in users:
        assert await admin.balances(u) == {"note.mi": 2}
    clash = await admin.call("POST", f"/enterprises/{e}/issuances", {**body, "cards": 3}, ok=False)
    assert (clash.status_code, clash.json()["error"]["code"]) == (409, "issuance_id_conflict")
    view = await admin.call("GET", f"/enterprises/{e}/issuances/launch")
    assert (view["users"], view["credited"], view["kind"], view["complete"]) == (4, 4, "brand", True)
    assert view["breakdown"] == {"vip": 1, "real_name_verified": 1, "regions": {"eu": 1},
                                 "genders": {"female": 1}}
    await admin.call("PUT", f"/enterprises/{e}", {"fans": 10})  # no longer eligible: a new
    # issuance is refused, the recorded one still answers
    assert (await admin.call("POST", f"/enterprises/{e}/issuances", body))["replayed"] is True
    fresh = await admin.call("POST", f"/enterprises/{e}/issuances", {**body, "id": "later"},
                             ok=False)
    assert (fresh.status_code, fresh.json()["error"]["code"]) == (409, "enterprise_not_eligible")
    bad = await admin.call("POST", f"/enterprises/{e}/issuances", {**body, "asset": "coin"},
                           ok=False)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "unknown_asset")


async def test_an_issuance_may_name_as_many_users_as_the_bound(server: Proc, admin: Admin) -> None:
    """An issuance may name GIFTWIRE_ISSUANCE_USERS_MAX (10,000) users, and the same call again replays it."""
    # The registered ones are credited, the others listed unknown (the first 100). The replay's reply once
    # held more values than Lua can unpack: a 500.
    e = await enterprise(admin, brand_verified=True, fans=500_000)
    known = sorted(uid("k") for _ in range(3))
    for u in known:
        await admin.user(u)
    users = [*known, *(f"{uid('n')}-{i}" for i in range(10_000 - len(known)))]
    body = {"id": "wide", "asset": "note.do", "cards": 1, "users": users}
    await refill(admin, "note.do", 10_000)
    first = await admin.call("POST", f"/enterprises/{e}/issuances", body)
    assert (first["credited"], len(first["unknown"]), first["complete"]) == (3, 100, False)
    again = await admin.call("POST", f"/enterprises/{e}/issuances", body)
    assert (again["replayed"], again["credited"]) == (True, 3)
    view = await admin.call("GET", f"/enterprises/{e}/issuances/wide")
    assert (view["users"], view["credited"]) == (10_000, 3)
    for u in known:
        assert await admin.balances(u) == {"note.do": 1}


async def test_orders_in_a_shop_window_gift_their_buyer_and_count_once(admin: Admin) -> None:
    """A shop-window order of 100 yuan or more gifts its buyer one `do` card; a smaller one only counts."""
    # A repeated report changes nothing, another buyer under its id is a conflict; the ROI is GMV per card
    # issued.
    e = await enterprise(admin)
    buyer = uid()
    await admin.user(buyer)
    no = await admin.call("POST", f"/enterprises/{e}/orders",
                          {"order": "o1", "buyer": buyer, "fen": 20_000}, ok=False)
    assert no.json()["error"]["code"] == "enterprise_not_eligible"
    await admin.call("PUT", f"/enterprises/{e}", {"shop_window": True})
    await refill(admin, "note.do", 2)
    big = await admin.call("POST", f"/enterprises/{e}/orders",
                           {"order": "o1", "buyer": buyer, "fen": 20_000})
    assert (big["gift"], big["replayed"]) == ({"asset": "note.do", "cards": 1}, False)
    small = await admin.call("POST", f"/enterprises/{e}/orders",
                             {"order": "o2", "buyer": buyer, "fen": 9_999})
    assert small["gift"] is None
    again = await admin.call("POST", f"/enterprises/{e}/orders",
                             {"order": "o1", "buyer": buyer, "fen": 20_000})
    assert again == {**big, "replayed": True}
    other = uid()
    await admin.user(other)
    for clashing in ({"buyer": other, "fen": 20_000}, {"buyer": buyer, "fen": 30_000}):
        clash = await admin.call("POST", f"/enterprises/{e}/orders",
                                 {"order": "o1", **clashing}, ok=False)
        assert (clash.status_code, clash.json()["error"]["code"]) == (409, "order_id_conflict"), clashing
    unknown = await admin.call("POST", f"/enterprises/{e}/orders",
                               {"order": "o4", "buyer": uid(), "fen": 20_000}, ok=False)
    assert unknown.status_code == 404
    assert await admin.balances(buyer) == {"note.do": 1}
    assert await admin.balances(other) == {}
    roi = (await admin.call("GET", f"/enterprises/{e}"))["roi"]
    assert roi == {"orders": 2, "gmv_fen": 29_999, "cards": 1, "gmv_fen_per_card": 29_999}
    full = uid()  # a buyer whose balance is at the bound: counted, the gift not (yet)
    await admin.user(full)
    await admin.grant(full, 10**12)
    late = await admin.call("POST", f"/enterprises/{e}/orders",
                            {"order": "o3", "buyer": full, "fen": 10_000}, ok=False)
    assert (late.status_code, late.json()["error"]["code"]) == (400, "amount_too_large")
    roi = (await admin.call("GET", f"/enterprises/{e}"))["roi"]
    assert (roi["orders"], roi["cards"]) == (3, 1)
    await admin.call("POST", "/revocations", {"id": "room", "user": full, "asset": "note.do",
                                              "amount": 5})
    granted = await admin.call("POST", f"/enterprises/{e}/orders",
                               {"order": "o3", "buyer": full, "fen": 10_000})
    assert granted["gift"] == {"asset": "note.do", "cards": 1}
    assert (await admin.call("GET", f"/enterprises/{e}"))["roi"]["cards"] == 2


async def test_user_operations_issue_by_fan_level(admin: Admin, redis: Redis) -> None:
    """Each fan gets the cards of the highest tier their fan-club level reaches; below every tier, nothing."""
    # The level is the fan's with the enterprise (a creator); the fan groups' activity is required.
    e = await enterprise(admin)
    fan, cold = uid(), uid()
    await admin.user(fan)
    await admin.user(cold)
    await redis.hset(keys.user(fan).like_levels, e, 3)  # as likes in its live room leave it
    ghost = uid()  # never registered: listed unknown, not below the tiers
    body = {"id": "loyal", "asset": "note.sol", "tiers": {"1": 2, "3": 4, "50": 9},
            "users": [fan, cold, ghost]}
    no = await admin.call("POST", f"/enterprises/{e}/tiered-issuances", body, ok=False)
    assert no.json()["error"]["code"] == "enterprise_not_eligible"
    await admin.call("PUT", f"/enterprises/{e}", {"group_active": True})
    await refill(admin, "note.sol", 4)
    out = await admin.call("POST", f"/enterprises/{e}/tiered-issuances", body)
    assert (out["credited"], out["below_tiers"], out["unknown"]) == (1, 1, [ghost])
    assert await admin.balances(fan) == {"note.sol": 4}
    assert await admin.balances(cold) == {}
    for tiers in ({"x": 1}, {"01": 1}, {"9" * 5000: 1}, {"0": 1}):
        bad = await admin.call("POST", f"/enterprises/{e}/tiered-issuances",
                               {**body, "id": "other", "tiers": tiers}, ok=False)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_field"), tiers
    await redis.hset(keys.user(cold).like_levels, e, 9)  # levels reached since: no new plan
    again = await admin.call("POST", f"/enterprises/{e}/tiered-issuances", body)
    assert again["replayed"] is True and await admin.balances(cold) == {}


async def test_issuances_and_order_gifts_draw_from_the_stock_and_stop_when_it_is_empty(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """An issuance takes its plan's cards from the stock once; short of them: 409 `stock_empty`."""
    # Refilled, the same issuance goes through; an order is counted without its gift while the stock is
    # empty, and the same report grants it after a refill. Replays take nothing again; the audit passes.
    srv, vk = own_server({})
    async with Admin(srv) as admin:
        e = await enterprise(admin, brand_verified=True, fans=500_000, shop_window=True)
        users = [uid() for _ in range(3)]
        for u in users:
            await admin.user(u)
        ghost = uid("ghost")  # not registered: takes nothing from the stock until it is
        body = {"id": "drop", "asset": "note.la", "cards": 2, "users": [*users, ghost]}
        await refill(admin, "note.la", 5)
        short = await admin.call("POST", f"/enterprises/{e}/issuances", body, ok=False)
        assert (short.status_code, short.json()["error"]["code"]) == (409, "stock_empty")
        assert "6 note.la" in short.json()["error"]["message"]
        assert [await admin.balances(u) for u in users] == [{}, {}, {}]
        assert await stock_of(admin, "note.la") == 5
        await refill(admin, "note.la", 3)
        done = await admin.call("POST", f"/enterprises/{e}/issuances", body)
        assert (done["credited"], done["unknown"], done["complete"]) == (3, [ghost], False)
        again = await admin.call("POST", f"/enterprises/{e}/issuances", body)
        assert again["replayed"] is True and await stock_of(admin, "note.la") == 2
        kinds = {k["asset"]: k for k in (await admin.call("GET", "/notes"))["kinds"]}
        assert kinds["note.la"]["drawn"] == 6  # issued from the stock: only what someone holds
        await admin.user(ghost)  # registered since: the same issuance again takes its 2 and credits
        last = await admin.call("POST", f"/enterprises/{e}/issuances", body)
        assert (last["credited"], last["complete"]) == (4, True)
        assert await stock_of(admin, "note.la") == 0
        full = uid("full")  # a balance at the bound: refused, and its cards go back to the stock
        await admin.user(full)
        await admin.grant(full, 10**12, "note.la")
        await refill(admin, "note.la", 2)
        over = await admin.call("POST", f"/enterprises/{e}/issuances",
                                {"id": "over", "asset": "note.la", "cards": 2, "users": [full]})
        assert (over["refused"], over["complete"]) == ([full], False)
        assert await stock_of(admin, "note.la") == 2
        # an unregistered name first in the plan takes nothing: the registered one gets the stock
        first, last = f"a{uid()}", f"z{uid()}"
        await admin.user(last)
        tight = await admin.call("POST", f"/enterprises/{e}/issuances",
                                 {"id": "tight", "asset": "note.la", "cards": 2,
                                  "users": [first, last]})
        assert (tight["credited"], tight["unknown"], tight["short"]) == (1, [first], [])
        assert await stock_of(admin, "note.la") == 0
        buyer = users[0]
        no_gift = await admin.call("POST", f"/enterprises/{e}/orders",
                                   {"order": "o1", "buyer": buyer, "fen": 10_000}, ok=False)
        assert (no_gift.status_code, no_gift.json()["error"]["code"]) == (409, "stock_empty")
        roi = (await admin.call("GET", f"/enterprises/{e}"))["roi"]
        assert (roi["orders"], roi["cards"]) == (1, 0)  # counted; its gift waits
        await refill(admin, "note.do", 1)
        granted = await admin.call("POST", f"/enterprises/{e}/orders",
                                   {"order": "o1", "buyer": buyer, "fen": 10_000})
        assert granted["gift"] == {"asset": "note.do", "cards": 1}
        replay = await admin.call("POST", f"/enterprises/{e}/orders",
                                  {"order": "o1", "buyer": buyer, "fen": 10_000})
        assert replay["replayed"] is True and await stock_of(admin, "note.do") == 0
        assert await admin.balances(buyer) == {"note.la": 2, "note.do": 1}
        kinds = {k["asset"]: k for k in (await admin.call("GET", "/notes"))["kinds"]}
        assert (kinds["note.la"]["drawn"], kinds["note.do"]["drawn"]) == (10, 1)
    code, out = await run_audit(vk.url)
    assert code == 0, out
