"""The note economy (SPEC section 1, "Kinds, sets and stock", seed 002): task rewards that
draw each card's kind by published odds from a stock the platform refills, and complete
sets redeemed for a reward. Where things are:

    economy.py            the operations (single-owner calls in order) and the odds (pure)
    handlers.py           notes.get / notes.redeem
    admin.py              odds and stock, refills, task rewards, redemptions
    lua/note_draw.lua     where a reward's kinds are drawn and the stock runs out
    lua/note_reward.lua   where the drawn cards are credited (from mint), once
    lua/note_redeem.lua   where a set is checked complete, burned and rewarded
    lua/note_settle.lua   where a draw is settled: credited, or its cards back in stock
    lua/note_stock.lua    where the stock is refilled
    lua/note_take.lua     where an enterprise's issuance (another module's) takes its kind
"""

from __future__ import annotations

from typing import Any

from server.notes import admin, handlers
from server.notes.economy import Economy
from server.parts import Parts

# how often a worker looks for draws pending past GIFTWIRE_NOTE_DRAW_TTL_S (days): rare work
NOTE_SWEEP_MS = 60_000


def install(p: Parts) -> None:
    p.scripts.load("server.notes")
    reward_asset = p.settings.set_reward.rpartition(":")[0]
    if reward_asset in p.managed_assets:  # config checks popularity; a module may add more
        raise ValueError(f"GIFTWIRE_SET_REWARD: {reward_asset} is not granted as a plain balance")
    e = Economy(p.scripts, p.settings, p.redis)
    p.requests.add("notes.get", handlers.get, ("notes.info",))
    p.requests.add("notes.redeem", handlers.redeem, ("notes.redeemed", "error"))
    admin.install(p, e)
    p.periodic.add("note-draw-returns", e.sweep, every_ms=NOTE_SWEEP_MS)

    def setup(gw: Any) -> None:
        gw.ext[handlers.EXT] = e

    p.gateway.append(setup)
