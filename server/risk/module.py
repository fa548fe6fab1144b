"""The risk engine (SPEC section 1 table 4): signals from every gateway (device, address,
actions), judged by the workers, decisions enforced on every gateway from a cached view
and re-checked by the settlement steps; cases and appeals. Where things are:

    gate.py               the gateway's cached view and guard; signals per tick
    engine.py             the judging (a consumer group on the risk streams), a job apart
                          from settlement: `giftwire jobs`
    rules.py              the automation measure (pure)
    lua/risk_apply.lua    where a decision lands (the user's slot) and reaches gateways
    lua/risk_device.lua / risk_cluster.lua / risk_actions.lua   the counts, each on its
                          owner's slot
    admin.py              cases, appeals; cases.py: paging them (the cursor)
"""

from __future__ import annotations

from typing import Any

from server.parts import Parts
from server.risk import admin
from server.risk.engine import Engine
from server.risk.gate import RiskGate


def install(p: Parts) -> None:
    p.scripts.load("server.risk")
    admin.install(p)
    if not p.settings.risk_enabled:
        return
    engine = Engine(p.scripts, p.settings)
    p.periodic.add("risk-engine", engine.run, every_ms=p.settings.risk_engine_tick_ms,
                   apart=True)

    def setup(gw: Any) -> Any:
        return RiskGate(gw).run

    p.gateway.append(setup)
