"""The note economy: task rewards drawn by the published odds from a stock the platform
refills, and complete sets redeemed for a reward. The Lua steps first, called directly
with their KEYS and ARGV (each test its own stock key in the `{notes}` slot), then the
admin API and the WebSocket requests of a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from protocol.client import Client
from server.config import Settings, note_weights, problems
from server.notes.economy import DRAW_KEYS, Economy, odds
from server.store import keys
from server.store.embedded import EmbeddedValkey
from server.store.scripts import Scripts
from tests.support import Admin, Proc, metric, run_audit, uid

S = Settings()
W = note_weights(S)  # do..ti 14 each, rare 2: a total of 100
NOW = 1_770_000_000_000
KINDS = list(W)
SET = [f"note.{k}" for k in S.note_kinds]


@pytest.fixture(scope="module")
def scripts(redis: Redis) -> Scripts:
    sc = Scripts(redis)
    for package in ("server.ledger", "server.notes"):
        sc.load(package)
    return sc


def stock_key() -> str:
    return f"{keys.NOTE_STOCK}-{uid()}"  # the same slot, a stock of the test's own


def draw_keys(stock: str) -> list[str]:
    return [stock, f"{stock}:pending", f"{stock}:pending:at"]


async def draw(sc: Scripts, stock: str, reward: str, user: str, randoms: list[int],
               weights: dict[str, int] = W, nonce: str = "n1", now: int = NOW) -> Any:
    return await sc["note_draw"](
        keys=draw_keys(stock),
        args=[user, reward, len(randoms), nonce, now, len(weights), *weights, *weights.values(),
              *randoms])


async def settle(sc: Scripts, stock: str, user: str, reward: str, nonce: str, mode: str) -> Any:
    return await sc["note_settle"](keys=draw_keys(stock), args=[user, reward, nonce, mode])


async def fill(r: Redis, stock: str, **cards: int) -> None:
    await r.hset(stock, mapping={f"note.{k}": n for k, n in cards.items()})


async def test_a_draw_follows_the_weights_by_its_random_numbers(redis: Redis, scripts: Scripts) -> None:
    """Each card's random number picks a kind by cumulative weight; the stock loses and counts the draw."""
    # do 0–13, re 14–27, …, ti 84–97, rare 98–99, then round again.
    stock = stock_key()
    await fill(redis, stock, **{k: 10 for k in S.note_kinds})
    reply = await draw(scripts, stock, uid("rw"), "alice", [0, 13, 14, 97, 98, 99, 100, 2**52 - 1])
    assert reply[0] == "applied"
    d = json.loads(reply[1])
    # 2^52 - 1 = 4503599627370495, whose remainder by 100 is 95: ti
    assert d == {"user": "alice", "reward": d["reward"], "cards": 8, "nonce": "n1",
                 "drawn": ["note.do", "note.do", "note.re", "note.ti", "note.rare", "note.rare",
                           "note.do", "note.ti"]}
    left = await redis.hgetall(stock)
    assert left["note.do"] == "7" and left["issued:note.do"] == "3"
    assert left["note.rare"] == "8" and left["issued:note.rare"] == "2"
    assert left["note.mi"] == "10" and "issued:note.mi" not in left


async def test_kinds_out_of_stock_or_without_weight_are_never_drawn(redis: Redis,
                                                                    scripts: Scripts) -> None:
    """A kind out of stock passes its number to the next kind in stock; a kind of weight 0 is never drawn."""
    # With `do` out of stock the total shrinks by its weight; weight 0 holds even for a kind in stock.
    stock = stock_key()
    await fill(redis, stock, do=0, re=1, mi=5)
    reply = await draw(scripts, stock, uid("rw"), "u", [0, 0], {"note.do": 14, "note.re": 14,
                                                              "note.mi": 14, "note.fa": 0})
    # the first card takes the only `re`; the second finds only `mi` with stock and weight
    assert json.loads(reply[1])["drawn"] == ["note.re", "note.mi"]
    await fill(redis, stock, fa=100)
    reply = await draw(scripts, stock, uid("rw"), "u", [13, 27, 5],
                       {"note.mi": 14, "note.fa": 0})
    assert json.loads(reply[1])["drawn"] == ["note.mi"] * 3
    assert (await redis.hgetall(stock))["note.fa"] == "100"


async def test_a_draw_past_the_stock_takes_nothing(redis: Redis, scripts: Scripts) -> None:
    """Asking more cards than the drawable kinds hold is `stock_empty`, the stock untouched."""
    # A kind of weight 0 in stock does not count.
    stock = stock_key()
    await fill(redis, stock, do=1, re=1, fa=50)
    before = await redis.hgetall(stock)
    reply = await draw(scripts, stock, uid("rw"), "u", [1, 2, 3], {"note.do": 1, "note.re": 1,
                                                                 "note.fa": 0})
    assert reply == ["rejected", "stock_empty"]
    assert await redis.hgetall(stock) == before


async def test_a_pending_draw_replays_until_it_is_settled(redis: Redis, scripts: Scripts) -> None:
    """The same (user, reward) returns the pending draw and takes nothing more until it is settled."""
    # Whatever numbers it brings; another card count is a conflict; another user's reward of the same id is
    # another draw. Settled `done`, it leaves the pending set and the stock as it is; a later draw settled
    # `return` gives its cards back and leaves the drawn count.
    stock = stock_key()
    await fill(redis, stock, **{k: 10 for k in S.note_kinds})
    first = await draw(scripts, stock, "r1", "u", [0, 50])
    after = await redis.hgetall(stock)
    assert await draw(scripts, stock, "r1", "u", [99, 99], nonce="n2") == ["exists", first[1]]
    assert await draw(scripts, stock, "r1", "u", [0]) == ["conflict", ""]
    assert await redis.hgetall(stock) == after
    assert (await draw(scripts, stock, "r1", "v", [0]))[0] == "applied"
    pending, at = draw_keys(stock)[1:]
    assert await redis.zscore(at, "u r1") == NOW
    assert await settle(scripts, stock, "u", "r1", "other", "done") == ["not_found", ""]
    assert await settle(scripts, stock, "u", "r1", "n1", "done") == ["applied", ""]
    assert await settle(scripts, stock, "u", "r1", "n1", "return") == ["not_found", ""]
    assert not await redis.hexists(pending, "u r1") and await redis.zscore(at, "u r1") is None
    assert (await redis.hgetall(stock))["issued:note.do"] == "2"  # v's card and u's first
    again = await draw(scripts, stock, "r1", "u", [14], nonce="n3")
    assert json.loads(again[1])["drawn"] == ["note.re"]
    assert await settle(scripts, stock, "u", "r1", "n3", "return") == ["applied", ""]
    left = await redis.hgetall(stock)
    assert (left["note.re"], left["issued:note.re"]) == ("10", "0")


async def test_a_refill_is_idempotent_and_bounded(redis: Redis, scripts: Scripts) -> None:
    """A refill adds once per id (a replay answers the stock as after it); past the amount bound, refused."""
    # Another asset or amount under the id is a conflict.
    stock, refills = stock_key(), f"{keys.NOTE_REFILLS}-{uid()}"

    async def call(rid: str, asset: str, n: int) -> Any:
        return await scripts["note_stock"](keys=[stock, refills], args=[rid, asset, n, S.amount_max])

    assert await call("r1", "note.do", 5) == ["applied", "5"]
    await redis.hincrby(stock, "note.do", -2)  # as draws leave it
    assert await call("r1", "note.do", 5) == ["exists", "5"]  # the first answer
    assert await call("r1", "note.do", 6) == ["conflict", ""]
    assert await call("r1", "note.re", 5) == ["conflict", ""]
    assert await call("r2", "note.do", S.amount_max) == ["rejected", "amount_too_large"]
    assert await redis.hgetall(stock) == {"note.do": "3"}


async def user(redis: Redis, balances: dict[str, int] | None = None) -> str:
    u = uid()
    k = keys.user(u)
    await redis.hset(k.profile, "registered_at_ms", NOW)
    for asset, n in (balances or {}).items():  # as grants leave them: against mint
        await redis.hincrby(k.balances, asset, n)
        await redis.hincrby(k.system, f"mint:{asset}", -n)
    return u


async def zero_sum(redis: Redis, u: str) -> None:
    k = keys.user(u)
    total: dict[str, int] = {}
    for a, n in (await redis.hgetall(k.balances)).items():
        total[a] = total.get(a, 0) + int(n)
    for acc, n in (await redis.hgetall(k.system)).items():
        a = acc.split(":", 1)[1]
        total[a] = total.get(a, 0) + int(n)
    assert all(v == 0 for v in total.values()), total


async def test_a_reward_credits_from_mint_once(redis: Redis, scripts: Scripts) -> None:
    """A reward's credit moves each drawn kind from mint to the balance once; a replay moves nothing."""
    # With a ledger line and a `balance.changed` (`task_reward`); a replay returns the record.
    u = await user(redis, {"note.do": 1})
    k = keys.user(u)
    args = ["$reward:r1", "n1", NOW, S.amount_max, S.events_bound, "note.do", 2, "note.rare", 1]
    reply = await scripts["note_reward"](keys=k.account, args=args)
    assert reply[0] == "applied"
    assert json.loads(reply[1]) == {"st": "posted", "drawn": {"note.do": 2, "note.rare": 1},
                                    "balances": {"note.do": 3, "note.rare": 1}, "nonce": "n1"}
    assert await scripts["note_reward"](keys=k.account, args=args) == ["exists", reply[1]]
    assert await redis.hgetall(k.balances) == {"note.do": "3", "note.rare": "1"}
    lines = [f for _, f in await redis.xrange(k.ledger)]
    assert [(f["asset"], f["delta"], f["account"], f["kind"]) for f in lines] == [
        ("note.do", "2", "mint", "task_reward"), ("note.rare", "1", "mint", "task_reward")]
    events = [json.loads(f["e"]) for _, f in await redis.xrange(k.events)]
    assert [(e["asset"], e["delta"], e["reason"], e["balance"]) for e in events] == [
        ("note.do", 2, "task_reward", 3), ("note.rare", 1, "task_reward", 1)]
    await zero_sum(redis, u)


async def test_a_reward_past_the_bound_credits_nothing(redis: Redis, scripts: Scripts) -> None:
    """One kind that would pass GIFTWIRE_AMOUNT_MAX refuses the whole credit; so does an unknown user."""
    u = await user(redis, {"note.re": S.amount_max})
    k = keys.user(u)
    reply = await scripts["note_reward"](keys=k.account, args=[
        "$reward:r1", "n1", NOW, S.amount_max, S.events_bound, "note.do", 1, "note.re", 1])
    assert reply == ["rejected", "amount_too_large"]
    assert await redis.hgetall(k.balances) == {"note.re": str(S.amount_max)}
    ghost = keys.user(uid())
    assert await scripts["note_reward"](keys=ghost.account, args=[
        "$reward:r1", "n1", NOW, S.amount_max, S.events_bound, "note.do", 1]) == [
            "rejected", "user_unknown"]


async def redeem(sc: Scripts, u: str, rid: str, sets: int, kinds: list[str] = SET,
                 reward: tuple[str, int] = ("coin", 100)) -> Any:
    return await sc["note_redeem"](keys=keys.user(u).account, args=[
        f"$set:{rid}", sets, *reward, NOW, S.amount_max, S.events_bound, *kinds])


async def test_a_set_burns_one_of_each_kind_and_grants_the_reward(redis: Redis,
                                                                  scripts: Scripts) -> None:
    """Two sets burn two of each kind and grant 2 × 100 coin from mint in one step; a replay is `exists`."""
    # Another count of sets under the id is a conflict.
    u = await user(redis, {**{a: 2 for a in SET}, "note.do": 5})
    reply = await redeem(scripts, u, "x1", 2)
    assert reply[0] == "applied"
    rec = json.loads(reply[1])
    assert rec["sets"] == 2 and rec["reward"] == {"asset": "coin", "amount": 200}
    assert rec["balances"] == {**{a: 0 for a in SET}, "note.do": 3, "coin": 200}
    k = keys.user(u)
    assert {a: int(n) for a, n in (await redis.hgetall(k.balances)).items() if int(n)} == {
        "note.do": 3, "coin": 200}
    assert await redeem(scripts, u, "x1", 2) == ["exists", reply[1]]
    assert await redeem(scripts, u, "x1", 1) == ["conflict", ""]
    kinds = [(f["account"], f["kind"]) for _, f in await redis.xrange(k.ledger)]
    assert kinds == [("burn", "set_redeem")] * len(SET) + [("mint", "set_reward")]
    await zero_sum(redis, u)


async def test_an_incomplete_set_or_a_full_balance_redeems_nothing(redis: Redis,
                                                                   scripts: Scripts) -> None:
    """A set one kind short is `set_incomplete`, a reward past the bound refused; either way nothing moves."""
    u = await user(redis, {a: 1 for a in SET[:-1]})
    assert await redeem(scripts, u, "x1", 1) == ["rejected", "set_incomplete"]
    v = await user(redis, {**{a: 1 for a in SET}, "coin": S.amount_max - 50})
    before = await redis.hgetall(keys.user(v).balances)
    assert await redeem(scripts, v, "x1", 1) == ["rejected", "amount_too_large"]
    assert await redis.hgetall(keys.user(v).balances) == before
    assert await redis.hlen(keys.user(v).transfers) == 0


async def test_forgotten_draws_go_back_to_the_stock(redis: Redis, scripts: Scripts) -> None:
    """A draw never credited goes back to the stock after GIFTWIRE_NOTE_DRAW_TTL_S; a credited one stays."""
    # The forgotten draw was never asked again. One credited just before a crash kept it from being settled is
    # only settled: its card stays the user's, out of the stock.
    e = Economy(scripts, S, redis)
    for a in SET:
        await e.refill(uid("f"), a, 10)
    u = await user(redis)
    ttl_ms = S.note_draw_ttl_s * 1000

    async def raw_draw(reward: str, nonce: str, randoms: list[int]) -> None:
        reply = await scripts["note_draw"](keys=DRAW_KEYS, args=[
            u, reward, len(randoms), nonce, NOW, len(W), *W, *W.values(), *randoms])
        assert reply[0] == "applied"

    before = await e.stock()
    await raw_draw("lost", "nx", [0, 0])  # two `do`, never credited
    await raw_draw("kept", "nk", [14])  # one `re`, credited, never settled
    await scripts["note_reward"](keys=keys.user(u).account, args=[
        "$reward:kept", "nk", NOW, S.amount_max, S.events_bound, "note.re", 1])
    await e.sweep(NOW + ttl_ms - 1)  # not yet due
    assert await redis.hexists(keys.NOTE_PENDING, f"{u} lost")
    await e.sweep(NOW + ttl_ms)
    after = await e.stock()
    assert after["note.do"] == before["note.do"]  # given back, and out of the drawn count
    assert after["note.re"] == (before["note.re"][0] - 1, before["note.re"][1] + 1)
    assert not await redis.hexists(keys.NOTE_PENDING, f"{u} lost")
    assert not await redis.hexists(keys.NOTE_PENDING, f"{u} kept")
    assert await redis.hgetall(keys.user(u).balances) == {"note.re": "1"}


def test_odds_are_published_as_weights_over_the_total() -> None:
    """Default odds: 14% for each of do..ti, 2% rare; the kinds in stock share an empty kind's chance."""
    assert odds(W) == {**{a: 0.14 for a in SET[:-1]}, "note.rare": 0.02}
    assert sum(odds(W).values()) == pytest.approx(1)
    now = odds(W, {"note.do": 0, "note.rare": 3, "note.re": 1})
    assert now == {**{a: 0.0 for a in SET}, "note.re": 0.875, "note.rare": 0.125}


def test_economy_settings_are_checked_at_start() -> None:
    """Bad note economy settings are refused at start with the variable's name."""
    # Odds naming an unknown kind, no weight at all, a set kind that is not a kind, a reward in popularity
    # points (lots), or bounds past what one call may carry.
    for changes, name in [({"note_odds": ("gold:1",)}, "GIFTWIRE_NOTE_ODDS"),
                          ({"note_odds": ("do:0",)}, "GIFTWIRE_NOTE_ODDS"),
                          ({"note_odds": ("do:1", "do:2")}, "GIFTWIRE_NOTE_ODDS"),
                          ({"set_kinds": ("do", "gold")}, "GIFTWIRE_SET_KINDS"),
                          ({"set_reward": "popularity:5"}, "GIFTWIRE_SET_REWARD"),
                          ({"set_reward": "coin:0"}, "GIFTWIRE_SET_REWARD"),
                          ({"set_reward": "coin"}, "GIFTWIRE_SET_REWARD"),
                          ({"reward_cards_max": 1001}, "GIFTWIRE_REWARD_CARDS_MAX"),
                          ({"sets_per_redemption_max": 101}, "GIFTWIRE_SETS_PER_REDEMPTION_MAX")]:
        assert any(name in p for p in problems(S.replace(**changes))), changes
    assert not problems(S.replace(note_odds=("rare:1",), set_kinds=("do", "re"),
                                  set_reward="note.rare:1"))


# -- through a real server -------------------------------------------------------------


async def refill_all(admin: Admin, n: int = 1000) -> None:
    for a in SET:
        await admin.call("POST", "/notes/stock", {"id": uid("f"), "asset": a, "amount": n})


async def test_task_rewards_through_the_admin_api(server: Proc, admin: Admin) -> None:
    """An admin reward draws from the stock and credits the user, who hears `balance.changed`."""
    # The event's reason is `task_reward`. The same id again replays without drawing; the view shows the odds,
    # the stock and the drawn count; unknown users and bad bodies get codes.
    await refill_all(admin)
    drawn_before = await metric(server, "giftwire_note_cards_drawn_total")
    before = {k["asset"]: k for k in (await admin.call("GET", "/notes"))["kinds"]}
    u = uid()
    await admin.user(u)
    async with await Client.connect(server.ws, server.token(u)) as c:
        got = await admin.call("POST", "/notes/rewards", {"id": f"t-{u}", "user": u, "cards": 5})
        assert sum(got["drawn"].values()) == 5 and set(got["drawn"]) <= set(SET)
        assert got["balances"] == got["drawn"] and got["replayed"] is False
        seen: dict[str, int] = {}
        while sum(seen.values()) < 5:
            ev = await c.next_event("balance.changed")
            assert ev["reason"] == "task_reward" and ev["transfer_id"] == f"$reward:t-{u}"
            seen[ev["asset"]] = ev["delta"]
        assert seen == got["drawn"]
    again = await admin.call("POST", "/notes/rewards", {"id": f"t-{u}", "user": u, "cards": 5})
    assert again == {**got, "replayed": True}
    assert await admin.balances(u) == got["drawn"]
    view = await admin.call("GET", "/notes")
    after = {k["asset"]: k for k in view["kinds"]}
    for a in SET:
        n = got["drawn"].get(a, 0)
        assert after[a]["stock"] == before[a]["stock"] - n
        assert after[a]["drawn"] == before[a]["drawn"] + n
    assert after["note.rare"]["odds"] == 0.02 and after["note.rare"]["weight"] == 2
    assert view["set_reward"] == {"asset": "coin", "amount": 100} and view["set_kinds"] == SET
    r = await admin.call("POST", "/notes/rewards", {"id": f"t-{u}", "user": uid()}, ok=False)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "user_unknown")
    r = await admin.call("POST", "/notes/rewards", {"id": f"t-{u}", "user": u, "cards": 4}, ok=False)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "reward_id_conflict")
    for body, code in [({"id": "a", "user": u, "cards": 11}, "bad_field"),
                       ({"id": "a", "user": u, "cards": 0}, "bad_field"),
                       ({"user": u}, "missing_field"),
                       ({"id": "a", "user": u, "kind": "do"}, "unknown_field")]:
        r = await admin.call("POST", "/notes/rewards", body, ok=False)
        assert (r.status_code, r.json()["error"]["code"]) == (400, code), body
    # (the replay and the refusals counted nothing)
    assert await metric(server, "giftwire_note_cards_drawn_total") == drawn_before + 5


async def test_refills_through_the_admin_api(admin: Admin) -> None:
    """An admin refill adds to one kind's stock once per id; bad ids, assets or amounts get codes."""
    # A replay answers as the first time; an amount over the bound is `amount_too_large`, as a grant's; a
    # trailing slash is no route (404, not a 307).
    rid = uid("f")
    first = await admin.call("POST", "/notes/stock", {"id": rid, "asset": "note.mi", "amount": 3})
    assert first["replayed"] is False
    again = await admin.call("POST", "/notes/stock", {"id": rid, "asset": "note.mi", "amount": 3})
    assert again == {**first, "replayed": True}  # the stock as it is now: nothing drawn since
    r = await admin.call("GET", "/notes/", ok=False)  # a trailing slash is another path
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    for body, status, code in [({"id": rid, "asset": "note.mi", "amount": 4}, 409, "refill_id_conflict"),
                               ({"id": "z", "asset": "coin", "amount": 4}, 400, "unknown_asset"),
                               ({"id": "z", "asset": ["note.do"], "amount": 4}, 400, "unknown_asset"),
                               ({"id": "z", "asset": "note.mi", "amount": 0}, 400, "bad_field"),
                               # over the bound: as a grant says it, whatever its size
                               ({"id": "z", "asset": "note.mi", "amount": 10**12 + 1}, 400,
                                "amount_too_large"),
                               ({"id": "z", "asset": "note.mi", "amount": 10**30}, 400,
                                "amount_too_large")]:
        r = await admin.call("POST", "/notes/stock", body, ok=False)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), body


async def test_sets_are_redeemed_over_the_websocket(server: Proc, admin: Admin) -> None:
    """`notes.redeem` refuses an incomplete set, then burns one of each kind for 100 coin; the id replays."""
    # `notes.get` publishes the odds; a redemption answers `notes.redeemed` and the events.
    u = uid()
    await admin.user(u)
    for a in SET[:-1]:
        await admin.grant(u, 1, a)
    async with await Client.connect(server.ws, server.token(u)) as c:
        info = await c.request("notes.get")
        assert info["type"] == "notes.info" and info["set_kinds"] == SET
        published = {k["asset"]: k["odds"] for k in info["kinds"]}
        assert published == {**{a: 0.14 for a in SET[:-1]}, "note.rare": 0.02}
        assert all(set(k) == {"asset", "odds", "odds_now", "in_stock"} for k in info["kinds"])
        no = await c.request("notes.redeem", redemption="x1")
        assert (no["type"], no["code"]) == ("error", "set_incomplete")
        await admin.grant(u, 1, "note.rare")
        ok = await c.request("notes.redeem", redemption="x1")
        assert ok["type"] == "notes.redeemed" and ok["sets"] == 1 and ok["replayed"] is False
        assert ok["reward"] == {"asset": "coin", "amount": 100}
        assert ok["balances"] == {**{a: 0 for a in SET}, "coin": 100}
        reasons = []
        while len(reasons) < len(SET) + 1:
            ev = await c.next_event("balance.changed")
            if ev["transfer_id"] == "$set:x1":
                reasons.append((ev["asset"], ev["reason"]))
        assert reasons == [(a, "set_redeem") for a in SET] + [("coin", "set_reward")]
        again = await c.request("notes.redeem", redemption="x1")
        assert again == {**ok, "id": again["id"], "replayed": True}
        clash = await c.request("notes.redeem", redemption="x1", sets=2)
        assert clash["code"] == "redemption_id_conflict"
        too_many = await c.request("notes.redeem", redemption="x2", sets=101)
        assert too_many["code"] == "bad_field"
    assert await admin.balances(u) == {"coin": 100}
    r = await admin.call("POST", "/notes/redemptions", {"id": "x9", "user": u}, ok=False)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "set_incomplete")
    # (the audit runs on a server of its own below: the shared one has other tests' gifts in
    # flight, which a snapshot read while they settle cannot balance)


async def test_an_empty_stock_and_custom_odds(own_server: Callable[..., tuple[Proc, EmbeddedValkey]]
                                              ) -> None:
    """A fresh stock is `stock_empty` until refilled; odds of `rare:1` draw only rare; a 2-kind set pays."""
    # On a fresh deployment nothing is drawn until the platform refills the stock. A set of two kinds earns
    # the configured reward, through the admin API and in bulk.
    srv, vk = own_server({"GIFTWIRE_NOTE_ODDS": "rare:1", "GIFTWIRE_SET_KINDS": "rare,do",
                          "GIFTWIRE_SET_REWARD": "note.ti:3"})
    async with Admin(srv) as admin:
        u = uid()
        await admin.user(u)
        r = await admin.call("POST", "/notes/rewards", {"id": "t1", "user": u, "cards": 2}, ok=False)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "stock_empty")
        await admin.call("POST", "/notes/stock", {"id": "f1", "asset": "note.do", "amount": 50})
        r = await admin.call("POST", "/notes/rewards", {"id": "t1", "user": u, "cards": 2}, ok=False)
        assert r.json()["error"]["code"] == "stock_empty"  # `do` has no weight here
        await admin.call("POST", "/notes/stock", {"id": "f2", "asset": "note.rare", "amount": 3})
        got = await admin.call("POST", "/notes/rewards", {"id": "t1", "user": u, "cards": 2})
        assert got["drawn"] == {"note.rare": 2}
        bulk = await admin.call("POST", "/bulk", {"note_rewards": [
            {"id": "t2", "user": u}, {"id": "t3", "user": u}]})
        assert bulk["note_rewards"] == 1
        # items are applied concurrently: one of the two found the last card
        [err] = bulk["errors"]
        assert (err["kind"], err["index"] in (0, 1), err["code"]) == ("note_rewards", True,
                                                                    "stock_empty")
        view = {k["asset"]: k for k in (await admin.call("GET", "/notes"))["kinds"]}
        assert (view["note.rare"]["stock"], view["note.rare"]["drawn"]) == (0, 3)
        assert view["note.rare"]["odds"] == 1.0 and view["note.do"]["odds"] == 0.0
        assert view["note.rare"]["odds_now"] == 0.0  # out of stock: nothing can be drawn now
        await admin.grant(u, 1, "note.do")
        done = await admin.call("POST", "/notes/redemptions", {"id": "s1", "user": u})
        assert done["reward"] == {"asset": "note.ti", "amount": 3}
        assert await admin.balances(u) == {"note.rare": 2, "note.ti": 3}
    rc, out = await run_audit(vk.url)
    assert rc == 0, out


async def test_one_reward_raced_from_many_requests_is_drawn_once(server: Proc, admin: Admin) -> None:
    """Twenty concurrent requests of one reward draw and credit once; the others replay that answer."""
    # The stock is down by exactly its cards: a draw that lost the race went back.
    await refill_all(admin, 100)

    async def totals() -> tuple[int, int]:
        kinds = (await admin.call("GET", "/notes"))["kinds"]
        return sum(k["stock"] for k in kinds), sum(k["drawn"] for k in kinds)

    stock, drawn = await totals()
    u = uid()
    await admin.user(u)
    body = {"id": f"race-{u}", "user": u, "cards": 3}
    async with httpx.AsyncClient(base_url=admin.client.base_url, headers=admin.client.headers) as h:
        replies = await asyncio.gather(*(h.post("/notes/rewards", json=body) for _ in range(20)))
    assert {r.status_code for r in replies} == {200}
    assert len({json.dumps(r.json()["drawn"], sort_keys=True) for r in replies}) == 1
    assert sum(not r.json()["replayed"] for r in replies) == 1
    assert sum((await admin.balances(u)).values()) == 3
    assert await totals() == (stock - 3, drawn + 3)
