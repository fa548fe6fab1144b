"""Regions' part of the audit: an erased account holds nothing. A gift of theirs that was
still settling at the erasure may refund to it; the audit names it, for an operator to
revoke (a revocation reaches an erased account)."""

from __future__ import annotations

from typing import Any

from server.ledger.audit import SCAN_COUNT, AuditResult
from server.store import keys

INVARIANT = "erased_hold_nothing"


async def check_erased(scripts: Any, r: AuditResult) -> None:
    redis = scripts.redis
    async for key in redis.scan_iter(match=keys.SCAN_ERASED, count=SCAN_COUNT):
        user = key[key.index("{u:") + 3: key.index("}")]
        held = {a: int(n) for a, n in (await redis.hgetall(keys.user(user).balances)).items()
                if int(n)}
        if held:
            r.fail(INVARIANT, f"erased user {user} holds {held}: revoke it (POST /revocations)")
