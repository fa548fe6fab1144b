"""The expiry sweep: burns the expired lots of users nobody reads, in bounded batches.

Reads and spends burn a user's expired lots already (lua/_popularity.lua `expire_lots`),
so the sweep is not needed for correctness; it keeps idle users' points from lingering
past their expiry in the ledger and tells them. Single-owner: the index of users to look
at (`keys.LOTS_DUE`) has its own slot and its own script (lua/lots_due.lua); each user is
read on their own slot (`pop_read`). Every tick:

    claim   (index)  at most `points_sweep_batch_max` users whose time came, leased
    read    (users)  `pop_read`: due lots burn (a ledger transfer to burn, an `expire`
                     event); the soonest expiry left comes back
    settle  (index)  each user's next time (or out of the index: no lots, or frozen)

A step that adds lots or lifts a freeze calls `flows.note_lots` after its script (on a
retry too), so a user with lots is always in the index at or before their soonest expiry.
Users with lots from before the sweep existed join the index at their next grant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from server.config import Settings
from server.metrics import REGISTRY, Counter
from server.popularity.flows import user_keys
from server.store import keys
from server.store.pipeline import Call, run_calls
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.popularity")
SWEPT = REGISTRY.add(Counter("giftwire_points_sweep_users_total",
                             "users the expiry sweep read (their due lots burned)"))
# how long a claimed user is left to the worker that claimed them: far longer than one
# tick's reads, so two workers do not read the same user; a worker that dies mid-tick
# delays its users' burn by this much
LEASE_MS = 60_000


def soonest_expiry(view_json: str) -> int:
    """The soonest expiry of a points view (`pop_read`), or 0: no lots, or frozen (they do
    not expire until a lift, which notes the user again)."""
    view = orjson.loads(view_json)
    lots = view.get("lots") or []
    return 0 if view.get("frozen") or not lots else int(lots[0]["expires_at_ms"])


def sweep(scripts: Scripts, s: Settings, clock_ms: Callable[[], int]) -> Any:
    """The periodic job: the due users of one bounded batch are read (their expired lots
    burn) and given their next time; how many were read. `clock_ms`: the time at the settle
    (a settle that comes after its lease ran out no longer owns its users)."""

    async def run(now_ms: int) -> int:
        index, leased = [keys.LOTS_DUE], now_ms + LEASE_MS
        claimed = await scripts["lots_due"](
            keys=index, args=["claim", now_ms, leased, s.points_sweep_batch_max])
        users = [str(u) for u in claimed[1:]]
        if not users:
            return 0
        calls: list[Call] = [(user_keys(u), [now_ms, s.events_bound]) for u in users]
        replies = await run_calls(scripts.redis, s.redis_cluster, scripts["pop_read"], calls)
        settled: list[Any] = []
        for user, reply in zip(users, replies, strict=True):
            if isinstance(reply, Exception):  # left leased: looked at again after the lease
                log.error("expiry sweep: %s not read: %r", user, reply)
            else:
                settled += [user, soonest_expiry(str(reply[1]))]
        SWEPT.inc(len(settled) // 2)  # the users read (a failed read is retried, not counted)
        if settled:
            await scripts["lots_due"](keys=index, args=["settle", clock_ms(), leased, *settled])
        return len(users)

    return run
