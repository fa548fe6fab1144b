"""Popularity's audit invariant: every user's points balance equals the points left in
their unexpired-or-not-yet-burned lots (a lot never holds more than was granted), for users
with lots and for users with points but no lots at all."""

from __future__ import annotations

from typing import Any

from server.ledger.audit import SCAN_COUNT, AuditResult, read_slots
from server.store import keys

INVARIANT = "lots_match_points"


async def check_lots(scripts: Any, r: AuditResult) -> None:
    redis = scripts.redis
    users = [keys.owner_of(key) async for key in redis.scan_iter(match=keys.SCAN_LOTS,
                                                                 count=SCAN_COUNT)]
    slots = [[keys.user(u).lot_points, keys.user(u).balances] for u in users]
    for user, (points, balances) in zip(users, await read_slots(scripts, slots), strict=True):
        lots = sum(int(x) for x in points.values())
        balance = int(balances.get("popularity") or 0)
        if lots != balance:
            r.fail(INVARIANT, f"{user}: lots hold {lots} points, the balance says {balance}")
    # points that no lot backs: a balance with no lots key (the walk above never sees it)
    async for key in redis.scan_iter(match=keys.SCAN_BALANCES, count=SCAN_COUNT):
        balance = int(await redis.hget(key, "popularity") or 0)
        user = keys.owner_of(key)
        if balance and not await redis.exists(keys.user(user).lot_points):
            r.fail(INVARIANT, f"{user}: no lots, the balance says {balance}")
