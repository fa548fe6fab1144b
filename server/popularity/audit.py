"""Popularity's audit invariant: every user's points balance equals the points left in
their unexpired-or-not-yet-burned lots (a lot never holds more than was granted), for users
with lots and for users with points but no lots at all."""

from __future__ import annotations

from typing import Any

from server.ledger.audit import SCAN_COUNT, AuditResult, read_slots
from server.store import keys

INVARIANT = "lots_match_points"


async def check_lots(scripts: Any, r: AuditResult) -> None:
    """Every account with lots or a balance: what its lots hold equals its points, both read
    at one instant (an empty lots hash is no key: a balance without one has no lots)."""
    redis = scripts.redis
    users: set[str] = set()
    for pattern in (keys.SCAN_LOTS, keys.SCAN_BALANCES):
        users.update([keys.owner_of(k) async for k in redis.scan_iter(match=pattern,
                                                                      count=SCAN_COUNT)])
    ordered = sorted(users)
    slots = [[keys.user(u).lot_points, keys.user(u).balances] for u in ordered]
    for user, (points, balances) in zip(ordered, await read_slots(scripts, slots), strict=True):
        lots = sum(int(x) for x in points.values())
        balance = int(balances.get("popularity") or 0)
        if lots != balance:
            r.fail(INVARIANT, f"{user}: lots hold {lots} points, the balance says {balance}"
                   if points else f"{user}: no lots, the balance says {balance}")
