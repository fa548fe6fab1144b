"""The risk engine's count steps called directly on the session's Valkey, one batch per call
as the engine makes them: the IP-cluster count across calls and inside one call (which gift
brought it to the threshold), the window and the bound, and the action record's reply (the
kept times after the call's oldest action, and every newer one)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from server.store import keys
from server.store.scripts import Scripts
from tests.support import uid

WINDOW, THRESHOLD, CAP = 600_000, 20, 1000
T0 = 1_800_000_000_000


@pytest.fixture(scope="module")
def scripts(redis: Redis) -> Scripts:
    sc = Scripts(redis)
    sc.load("server.risk")
    return sc


async def cluster(scripts: Scripts, key: str, gifts: list[tuple[str, int]],
                  cap: int = CAP) -> list[Any]:
    args: list[Any] = [WINDOW, THRESHOLD, cap]
    for account, ms in gifts:
        args += [account, ms]
    status, n, accounts, reached = await scripts["risk_cluster"](keys=[key], args=args)
    return [status, int(n), accounts, int(reached)]  # counts come back as strings (exact)


async def test_cluster_count_reaches_the_threshold_at_the_20th_account(scripts: Scripts) -> None:
    """19 accounts in one call stay under; the 20th, in the next, reaches it and names all 20."""
    # It reaches the threshold at its own gift's time; a repeat gift of a counted account adds nothing.
    key = keys.cluster_gifts("10.1.2.0/24", uid("r"))
    first = [(f"a{i}", T0 + i) for i in range(19)]
    assert await cluster(scripts, key, first) == ["applied", 19, "", 0]
    again = await cluster(scripts, key, [("a3", T0 + 50)])
    assert again == ["applied", 19, "", 0]
    got = await cluster(scripts, key, [("a5", T0 + 60), ("a19", T0 + 70), ("a6", T0 + 80)])
    assert (got[1], got[3]) == (20, T0 + 70)
    assert sorted(got[2].strip("[]").replace('"', "").split(",")) == sorted(
        f"a{i}" for i in range(20))


async def test_cluster_count_inside_one_call_and_its_window(scripts: Scripts) -> None:
    """Of 25 accounts in one call the threshold is reached at the 20th's gift; old gifts leave the window."""
    # Accounts whose gift left the window no longer count.
    key = keys.cluster_gifts("10.9.9.0/24", uid("r"))
    gifts = [(f"b{i}", T0 + 1000 * i) for i in range(25)]
    got = await cluster(scripts, key, gifts)
    assert (got[1], got[3]) == (25, T0 + 1000 * 19)
    later = T0 + 24_000 + WINDOW  # every one of those gifts has left the window
    assert (await cluster(scripts, key, [("c0", later)]))[:2] == ["applied", 1]


async def test_cluster_record_is_bounded(scripts: Scripts) -> None:
    """Beyond the bound the oldest accounts fall out."""
    key = keys.cluster_gifts("10.7.7.0/24", uid("r"))
    got = await cluster(scripts, key, [(f"d{i}", T0 + i) for i in range(30)], cap=25)
    assert got[1] == 25
    assert "d0" not in got[2] and "d29" in got[2]


async def test_action_record_replies_with_what_each_action_saw(scripts: Scripts,
                                                               redis: Redis) -> None:
    """With 5 times kept, adding 3 actions answers 7 entries newest first and keeps 5; judged ones apart."""
    # The 7 are the 5 kept after its oldest action and the 2 newer. The judged actions (not likes) are kept
    # apart, 3 of them, so likes between them never push them out.
    uk = keys.user(uid("u"))
    key, judged_key = uk.risk_actions, uk.risk_judged

    async def record(all_: list[str], judged: list[str]) -> Any:
        return await scripts["risk_actions"](keys=[key, judged_key],
                                             args=[5, 60_000, 3, len(all_), *all_, *judged])

    old = [f"{T0 + i}:gift" for i in range(6)]
    await record(old, old)
    new = [f"{T0 + 10}:like", f"{T0 + 11}:gift", f"{T0 + 12}:grab"]
    reply = await record(new, new[1:])
    assert reply[0] == "applied"
    assert reply[1].split(",") == [*reversed(new), *reversed(old)][:7]
    assert reply[2].split(",") == [*reversed(new[1:]), *reversed(old)][:4]
    assert await redis.lrange(key, 0, -1) == [*reversed(new), *reversed(old)][:5]
    assert await redis.lrange(judged_key, 0, -1) == [*reversed(new[1:]), *reversed(old)][:3]
    await redis.delete(key)  # (as a lift by an older version, which knew only this list)
    await record([f"{T0 + 15}:gift"], [f"{T0 + 15}:gift"])
    assert await redis.lrange(judged_key, 0, -1) == [f"{T0 + 15}:gift"]  # started afresh too
    await record(old, old)
    likes = [f"{T0 + 20 + i}:like" for i in range(10)]  # likes only: the judged ones stay
    reply = await record(likes, [])
    assert reply[2].split(",") == [*reversed(old)][:3]  # as they stand
    assert await redis.lrange(key, 0, -1) == list(reversed(likes))[:5]
    assert 0 < await redis.pttl(key) <= 60_000 and 0 < await redis.pttl(judged_key) <= 60_000


async def test_a_decision_in_force_names_the_case_that_put_it_there(scripts: Scripts,
                                                                    redis: Redis) -> None:
    """risk_apply applies a restriction or ban once and answers re-runs with the case in force."""
    # The same decision run again (an engine that died after it) answers `exists` with its own case, another
    # one with the first case, so the engine keeps exactly the case that is in force. A lift clears it, and
    # only its own case's (another case's appeal lifts nothing).
    user = uid("rk")
    uk = keys.user(user)
    await redis.hset(uk.profile, "registered_at_ms", T0)

    async def apply(action: str, case: str, level: str = "low") -> list[Any]:
        return list(await scripts["risk_apply"](
            keys=[uk.profile, uk.events, uk.channel, uk.risk_actions, uk.risk_judged],
            args=[action, T0 + 86_400_000, case, level, "shared_device", "face_verification",
                  T0, "100:3600:p"]))

    assert (await apply("restrict", "c1"))[0] == "applied"
    assert (await apply("restrict", "c1"))[::2] == ["exists", "c1"]  # its own re-run
    assert (await apply("restrict", "c2"))[::2] == ["exists", "c1"]  # another decision
    assert (await apply("ban", "b1", "high"))[0] == "applied"
    assert (await apply("ban", "b2", "high"))[::2] == ["exists", "b1"]
    # an appeal of a case that is not the one in force lifts nothing (b2 opened no ban)
    assert (await apply("lift", "b2", "high"))[0] == "exists"
    assert await redis.hget(uk.profile, "risk_banned") == "1"
    assert await redis.hget(uk.profile, "risk_cleared_until") is None  # nor clears anything
    assert (await apply("lift", "c1"))[0] == "applied"
    assert (await apply("restrict", "c3"))[::2] == ["exists", ""]  # cleared after the appeal


async def test_the_largest_device_threshold_is_still_reached(scripts: Scripts) -> None:
    """At GIFTWIRE_DEVICE_ACCOUNTS_MAX's bound (200) the 201st account on a device still fires the rule."""
    # It is placed 201st, and so is every later one once the oldest fall out.
    from server.risk.rules import DEVICE_ACCOUNTS_KEPT

    assert DEVICE_ACCOUNTS_KEPT == 201  # the bound (200) and the one that trips it
    device = uid("dev")
    k = [keys.device_accounts(device), keys.device_ban(device)]
    places = [int((await scripts["risk_device"](
        keys=k, args=[f"a{i}", T0 + i, WINDOW, DEVICE_ACCOUNTS_KEPT]))[1]) for i in range(203)]
    assert places[199] == 200  # the 200th: allowed
    assert places[200:] == [201, 201, 201]  # the 201st and every later one: over the bound


async def test_case_hold_is_taken_once_and_released_only_by_its_holder(scripts: Scripts,
                                                                      redis: Redis) -> None:
    """A second appeal cannot take a held case; a release with another token leaves the hold."""
    # Once the holder releases it, the next appeal takes it; a hold that lapsed is not deleted
    # by its former holder after another appeal took it.
    hold = [keys.risk_case_resolving(uid("case"))]
    assert await scripts["case_hold"](keys=hold, args=["take", "a", 30_000]) == ["applied", ""]
    assert await scripts["case_hold"](keys=hold, args=["take", "b", 30_000]) == ["exists", ""]
    assert await scripts["case_hold"](keys=hold, args=["release", "b"]) == ["exists", ""]
    assert await redis.get(hold[0]) == "a"
    assert await scripts["case_hold"](keys=hold, args=["release", "a"]) == ["applied", ""]
    assert await redis.exists(hold[0]) == 0
    assert await scripts["case_hold"](keys=hold, args=["take", "b", 30_000]) == ["applied", ""]
    assert 0 < await redis.pttl(hold[0]) <= 30_000
    await redis.delete(hold[0])  # b's hold lapsed; c takes the case and a late b leaves it be
    assert await scripts["case_hold"](keys=hold, args=["take", "c", 30_000]) == ["applied", ""]
    assert await scripts["case_hold"](keys=hold, args=["release", "b"]) == ["exists", ""]
    assert await redis.get(hold[0]) == "c"
