"""Red-envelope shares decided by the group's Lua step directly (the worker's own call
builders), over many sizes: every share ≥ 1, exactly K winners, shares summing to the
total in any grab order, the same answer on a re-run, and a mean near total/K."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.config import Settings
from server.groups.envelopes import GrabFlow, GrabItem, Now, SendFlow, SendItem
from server.settlement.replies import Replies
from server.store import keys
from server.store.embedded import EmbeddedValkey
from server.store.scripts import Scripts
from tests.support import uid

S = Settings()
NOW = Now(1_800_000_000_000, "20270115")


@pytest.fixture(scope="module")
async def redis(valkey: EmbeddedValkey) -> AsyncIterator[Redis]:
    client = Redis.from_url(valkey.url, decode_responses=True)
    yield client
    await client.aclose()


async def open_envelope(redis: Redis, scripts: Scripts, total: int, shares: int,
                        members: list[str]) -> tuple[str, GrabFlow]:
    """A group with `members` and an open envelope of `total` cards for `shares`."""
    group, owner = uid("g"), uid("o")
    g = keys.group(group)
    await scripts["group_setup"](keys=[g.profile, g.members],
                                 args=[owner, "core", "iron_fan", 100_000, 0, NOW.now_ms])
    await redis.hset(g.members, mapping={m: "member" for m in [*members, owner]})
    flow = SendFlow(scripts, S, Replies(redis, False))
    item = SendItem(owner, group, "e", "note.do", total, shares, "")
    call = flow.open_call(item, NOW)
    assert (await scripts["env_open"](keys=call[0], args=call[1]))[0] == "applied"
    return group, GrabFlow(scripts, S, Replies(redis, False))


async def grab(scripts: Scripts, flow: GrabFlow, group: str, name: str, user: str) -> list[str]:
    call = flow.grab_call(GrabItem(user, group, name, ""), NOW)
    return list(await scripts["env_grab"](keys=call[0], args=call[1]))


async def test_shares_are_exact_for_many_sizes_in_any_order(redis: Redis) -> None:
    """200 random envelopes grabbed by K + 3 members: K winners, each share ≥ 1, sum N; the others refused."""
    # Sizes include K = 1, K = N and in between; members grab in random order.
    scripts = Scripts(redis)
    scripts.load("server.groups")
    rng = random.Random(7)
    sizes = [(1, 1), (5, 5), (7, 1), (1000, 3)] + [
        (n, rng.randint(1, n)) for n in (rng.randint(1, 300) for _ in range(196))]
    for total, k in sizes:
        members = [uid("m") for _ in range(k + 3)]
        group, flow = await open_envelope(redis, scripts, total, k, members)
        name = next(iter(await redis.zrange(keys.group(group).envelopes, 0, -1)))
        rng.shuffle(members)
        got = [await grab(scripts, flow, group, name, m) for m in members]
        won = [int(r[1]) for r in got if r[0] == "applied"]
        assert len(won) == k and sum(won) == total and min(won) >= 1, (total, k, won)
        assert [r[1] for r in got if r[0] == "rejected"] == ["envelope_empty"] * 3
        again = await grab(scripts, flow, group, name, members[0])
        assert (again[0], int(again[1])) == ("exists", int(got[0][1]))


async def test_shares_average_total_over_k(redis: Redis) -> None:
    """Over 300 envelopes of 100 cards for 10, the first grab's share averages about 10, and shares vary."""
    # The double-mean draw; shares are not all equal.
    scripts = Scripts(redis)
    scripts.load("server.groups")
    firsts = []
    for _ in range(300):
        members = [uid("m") for _ in range(10)]
        group, flow = await open_envelope(redis, scripts, 100, 10, members)
        name = next(iter(await redis.zrange(keys.group(group).envelopes, 0, -1)))
        firsts.append(int((await grab(scripts, flow, group, name, members[0]))[1]))
    mean = sum(firsts) / len(firsts)
    assert 9.0 <= mean <= 11.5 and len(set(firsts)) > 10, (mean, sorted(set(firsts)))


async def test_large_envelopes_draw_from_the_whole_range(redis: Redis) -> None:
    """Of 20 envelopes of 10^10 cards for 2, some first share passes 2^32; the two always sum to the total."""
    # The first share is uniform on [1, 10^10 - 1]; a 32-bit draw never passed 2^32.
    scripts = Scripts(redis)
    scripts.load("server.groups")
    firsts = []
    for _ in range(20):
        members = [uid("m") for _ in range(2)]
        group, flow = await open_envelope(redis, scripts, 10**10, 2, members)
        name = next(iter(await redis.zrange(keys.group(group).envelopes, 0, -1)))
        a, b = [int((await grab(scripts, flow, group, name, m))[1]) for m in members]
        assert a + b == 10**10 and min(a, b) >= 1
        firsts.append(a)
    assert max(firsts) > 2**32, firsts
