"""Gifting (SPEC section 1): note cards from one user to another, instantly or as an
offer the recipient accepts or declines. Where things are:

    handlers.py          the gateway's checks, then an entry for settlement
    flow.py              the gift flow: debit → credit → finalize → mentor reward
    offers.py            accept / decline / timeout of a held gift
    lua/send_debit.lua   where the daily limit and every sender rule is enforced
    lua/recv_credit.lua  where blocks, bans and confirmation are applied
    admin.py             follows, blocks, mentors, the festival calendar
    lua/frame_redeem.lua where a festival's avatar frame is redeemed (after a gift that day)
"""

from __future__ import annotations

from typing import Any

from server.gifting import admin, handlers
from server.gifting.flow import GiftFlow
from server.gifting.offers import ACTIONS, OfferFlow, Sweep
from server.parts import Parts

GIFT_REPLIES = ("gift.confirmed", "gift.rejected", "error")
ACCEPT_REPLIES = ("gift.received", "gift.rejected", "error")
DECLINE_REPLIES = ("gift.voided", "gift.rejected", "error")


def install(p: Parts) -> None:
    p.scripts.load("server.gifting")
    p.requests.add("gift.send", handlers.send, GIFT_REPLIES)
    p.requests.add("gift.accept", handlers.accept, ACCEPT_REPLIES)
    p.requests.add("gift.decline", handlers.decline, DECLINE_REPLIES)
    p.requests.add("festival.frame", handlers.frame, ("festival.framed", "error"))
    p.flows.add(GiftFlow(p.redis, p.scripts, p.settings, p.replies))
    for action in ACTIONS:
        p.flows.add(OfferFlow(action, p.redis, p.scripts, p.settings, p.replies))
    sweep = Sweep(OfferFlow("timeout", p.redis, p.scripts, p.settings, p.replies))
    p.periodic.add("offer-timeouts", sweep.run, every_ms=p.settings.sweep_interval_ms)
    admin.install(p)

    def setup(gw: Any) -> None:
        gw.ext[handlers.FRAME_EXT] = p.scripts["frame_redeem"]

    p.gateway.append(setup)
