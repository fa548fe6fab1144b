"""`giftwire audit` in full: the ledger's invariants (with the escrow every subsystem
holds in flight) and each module's own, named in the report."""

from __future__ import annotations

from typing import Any

from server.config import Settings
from server.ledger.audit import CORE_INVARIANTS, AuditResult, audit, report


async def full_audit(redis: Any, settings: Settings | None = None) -> tuple[AuditResult, str]:
    """Every invariant of every module; returns the result and its report."""
    from server import parts

    p = parts.build(settings or Settings(), redis)
    result = await audit(p.scripts, p.escrow_holders)
    for _, check in p.audits:
        await check(p.scripts, result)
    return result, report(result, (*CORE_INVARIANTS, *(name for name, _ in p.audits)))
