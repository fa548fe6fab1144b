"""The risk engine's reading, in-process on a real Valkey: a backlog far over one read is
judged in one tick (up to its budget), a malformed entry is dropped alone, and entries a
killed engine left unacknowledged are dropped (not judged twice), and the like speed rule's
refusals count for the rate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson

from server.app import connect
from server.config import Settings
from server.risk import signals
from server.risk.engine import GROUP, READ_MAX, Engine
from server.store import keys
from server.store.embedded import EmbeddedValkey
from server.store.scripts import Scripts
from tests.support import uid

T0 = 1_800_000_000_000


async def test_a_backlog_is_caught_up_and_a_bad_entry_dropped_alone(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """A backlog with an unreadable batch is caught up in one tick; 51 gifts in 5 s still ban for the rate."""
    # 5 reads' worth of like-speed entries, one unreadable batch and a batch of 51 gifts of one user in 5 s
    # all go in one tick.
    vk = fresh_valkey()
    redis = connect(vk.url)
    scripts = Scripts(redis)
    scripts.load("server.risk")
    s = Settings(redis_url=vk.url, risk_enabled=True)
    engine = Engine(scripts, s)
    stream, bot = keys.risk_stream(0), uid("bot")
    await engine.run(T0)  # creates the group
    for _ in range(5 * READ_MAX):
        await redis.xadd(stream, {"user": uid("f"), "signal": "like_speed", "refused": "3"})
    await redis.xadd(stream, {signals.BATCH: b"[[1,2]]"})
    gifts = [{"kind": "gift", "user": bot, "device": "", "ip": "", "to": "x",
              "at_ms": str(T0 + 90 * i)} for i in range(51)]
    for entry in signals.encode(gifts):
        await redis.xadd(stream, entry)  # type: ignore[arg-type]
    try:
        assert await engine.run(T0) == 5 * READ_MAX + 2
        profile = await redis.hgetall(keys.user(bot).profile)
        assert profile.get("risk_banned") == "1"
        assert (await redis.xpending(stream, GROUP))["pending"] == 0
    finally:
        await redis.aclose()


async def test_entries_a_killed_engine_left_are_dropped_not_judged_twice(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """A batch a dead engine left pending is dropped once idle past GIFTWIRE_CLAIM_IDLE_MS, not rejudged."""
    # The next engine's check drops it without counting its actions again.
    vk = fresh_valkey()
    redis = connect(vk.url)
    scripts = Scripts(redis)
    scripts.load("server.risk")
    s = Settings(redis_url=vk.url, risk_enabled=True, claim_idle_ms=1)
    stream, user = keys.risk_stream(0), uid("u")
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    sig = {"kind": "gift", "user": user, "device": "", "ip": "", "to": "x", "at_ms": str(T0)}
    for entry in signals.encode([sig]):
        await redis.xadd(stream, entry)  # type: ignore[arg-type]
    await redis.xreadgroup(GROUP, "risk-dead", {stream: ">"}, count=10)  # read, never acked
    await asyncio.sleep(0.02)  # idle past the 1 ms claim_idle_ms
    try:
        engine = Engine(scripts, s)
        await engine.run(T0)
        assert (await redis.xpending(stream, GROUP))["pending"] == 0
        assert await redis.lrange(keys.user(user).risk_actions, 0, -1) == []  # not counted
        consumers = {c["name"]: c["pending"] for c in await redis.xinfo_consumers(stream, GROUP)}
        assert consumers["risk-dead"] == 0  # owes nothing now; forgotten after an hour idle
    finally:
        await redis.aclose()


async def test_the_like_speed_rules_refusals_count_for_the_rate(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """40 likes in 4 s with 11 refused by the like speed rule make 51 actions: banned for the rate."""
    # The device is blacklisted too. With 10 refused (50 actions) the fan is left alone.
    vk = fresh_valkey()
    redis = connect(vk.url)
    scripts = Scripts(redis)
    scripts.load("server.risk")
    engine = Engine(scripts, Settings(redis_url=vk.url, risk_enabled=True))
    stream = keys.risk_stream(0)
    await engine.run(T0)  # creates the group
    fans = {uid("fast"): 11, uid("calm"): 10}
    for fan, refused in fans.items():
        for i in range(refused):  # written at once by the like handler, before the gateway's tick
            await redis.xadd(stream, {"user": fan, "signal": "like_speed", "refused": "2",
                                      "at_ms": str(T0 + 100 * i)})
        likes = [{"kind": "like", "user": fan, "device": f"d-{fan}", "ip": "", "to": "",
                  "at_ms": str(T0 + 100 * i)} for i in range(40)]
        for entry in signals.encode(likes):
            await redis.xadd(stream, entry)  # type: ignore[arg-type]
    try:
        await engine.run(T0)
        fast, calm = fans
        assert (await redis.hgetall(keys.user(fast).profile)).get("risk_banned") == "1"
        assert await redis.exists(keys.device_ban(f"d-{fast}")) == 1
        assert "risk_banned" not in await redis.hgetall(keys.user(calm).profile)
        case = orjson.loads(await redis.get(keys.risk_case(
            (await redis.zrange(keys.RISK_CASES, 0, -1))[0])))
        assert (case["user"], case["reason"], case["evidence"]["likes_refused"]) == \
            (fast, "automation_rate", 11)
    finally:
        await redis.aclose()
