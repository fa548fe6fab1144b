"""Regions (SPEC section 1, table 5, seed 002's 国际化赠送流程差异): policies by the
region of a user's account. Where things are:

    rules.py       GIFTWIRE_REGIONS: approval rules and GDPR regions (pure)
    approvals.py   an approver's decision on a gift held for it (the offer flows, inline)
    privacy.py     a user's data exported, or erased (GDPR)
    admin.py       the policies, a user's pending offers, approvals, export and erasure
    audit.py       an erased account holds nothing
    lua/user_erase.lua   where an account that holds nothing is erased, the ledger kept

The hold itself is gifting's: `recv_credit.lua` (server/gifting/lua) is where a gift to a
user of a region that needs approval is held for it, and `offer_resolve.lua` where only an
approver may resolve it. A region's published odds are the note economy's (server/notes).
"""

from __future__ import annotations

from typing import Any

from server.parts import Parts
from server.regions import admin, audit
from server.regions.rules import parse
from server.store import keys


def install(p: Parts) -> None:
    regions = parse(p.settings.regions)
    assert not isinstance(regions, str), regions  # refused at start-up (server.config.problems)
    p.scripts.load("server.regions")
    admin.install(p, regions)
    p.audits.append((audit.INVARIANT, audit.check_erased))

    def setup(gw: Any) -> None:
        async def erased(conn: Any) -> str | None:
            """An erased account connects no more (its token is still the platform's)."""
            return "account_erased" if await gw.redis.exists(keys.user(conn.user).erased) else None

        gw.connect_checks.append(erased)

    p.gateway.append(setup)
