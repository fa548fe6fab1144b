"""Popularity cards (SPEC section 2, seed 000): points in lots that expire 48 h after each
grant, spent oldest first; earning (sign-in streaks, creator tasks, purchases, small-card
exchange); violations and fraud freezes; card uses with targeting, category and
schedules; the recommender's decaying weight; the creator's live dashboard.
Where things are:

    rules.py                  targeting, prices, cycles, maturity, the decay weight (pure)
    handlers.py / admin.py    the client's requests / what the platform reports and reads
    flows.py                  card uses and cancels through settlement; the schedule job
    sweep.py                  the bounded expiry sweep of users nobody reads
    lua/_popularity.lua       where lots expire (on every read and spend, a balance view
                              and the sweep) and are spent oldest first
    lua/lots_due.lua          the sweep's index of users whose lots come due (its own slot)
    lua/pop_use.lua           where a card use's rules are enforced (frozen, category,
                              followers, maturity, 3 a day, points)
    lua/content_claim.lua     where the first booster of a content hash owns it
    lua/order_claim.lua       where an order id is one payment, platform-wide (one user,
                              one amount)
"""

from __future__ import annotations

from typing import Any

from server.parts import Parts
from server.popularity import admin, audit, flows, handlers, sweep


def install(p: Parts) -> None:
    p.scripts.load("server.popularity")
    p.managed_assets.add("popularity")  # points are lots: never granted without one
    p.requests.add("popularity.get", handlers.get, ("popularity.points",))
    p.requests.add("popularity.signin", handlers.signin, ("popularity.points", "error"))
    p.requests.add("popularity.exchange", handlers.exchange, ("popularity.points", "error"))
    p.requests.add("popularity.buy", handlers.buy, ("popularity.points", "error"))
    p.requests.add("popularity.use", handlers.use, ("popularity.used", "error"))
    p.requests.add("popularity.cancel", handlers.cancel, ("popularity.use.state", "error"))
    p.flows.add(flows.UseFlow(p.scripts, p.settings, p.replies))
    p.flows.add(flows.CancelFlow(p.scripts, p.settings, p.replies))
    p.periodic.add("card-use-schedule", flows.schedule(p.scripts, p.settings),
                   every_ms=p.settings.popularity_tick_ms)
    p.periodic.add("lot-expiry-sweep", sweep.sweep(p.scripts, p.settings, p.clock.now_ms),
                   every_ms=p.settings.points_sweep_tick_ms)

    async def refresh(user: str, now_ms: int) -> None:
        """Before a user's balances are shown: their expired lots burn (the user's slot)."""
        await p.scripts["pop_read"](keys=flows.user_keys(user), args=[now_ms, p.settings.events_bound])

    p.balance_refreshes.append(refresh)
    admin.install(p)
    p.audits.append((audit.INVARIANT, audit.check_lots))

    def setup(gw: Any) -> None:
        gw.ext[handlers.EXT] = p

    p.gateway.append(setup)
