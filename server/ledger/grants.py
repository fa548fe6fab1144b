"""Moving an asset between a user and a system account of the user's slot (mint, burn,
promo): grants, revocations, rewards. One idempotent script call (`lua/grant.lua`)."""

from __future__ import annotations

from typing import Any

from server.config import Settings
from server.store import keys
from server.store.outcomes import Status, status
from server.store.pipeline import Call
from server.store.scripts import Scripts


def grant_call(s: Settings, user: str, transfer_id: str, asset: str, delta: int, account: str,
               reason: str, now_ms: int) -> Call:
    uk = keys.user(user)
    return ([*uk.account, uk.erased],
            [transfer_id, asset, delta, account, reason, now_ms, s.amount_max, s.events_bound])


async def grant(scripts: Scripts, s: Settings, user: str, transfer_id: str, asset: str,
                delta: int, account: str, reason: str, now_ms: int) -> tuple[Status, str]:
    """(APPLIED | EXISTS, balance after), (REJECTED, code) or (CONFLICT, '')."""
    k, a = grant_call(s, user, transfer_id, asset, delta, account, reason, now_ms)
    reply: list[Any] = await scripts["grant"](keys=k, args=a)
    return status(reply), str(reply[1])
