"""A partner's bonuses on a delivered gift: steps at the end of the gift flow (and of an
offer's accept), each on one owner's slot and idempotent, run only for a gift whose
sender's record carries a partner's channel. A bonus refused (the recipient's points at
the bound) never undoes the gift."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from server.config import Settings
from server.gifting.flow import ReceivedGift
from server.partners import metrics
from server.partners.rules import Partner
from server.popularity.flows import note_lots, user_keys
from server.settlement.flows import Step
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status
from server.store.pipeline import Call

log = logging.getLogger("giftwire.partners")


def _partner(partners: dict[str, Partner], item: ReceivedGift) -> tuple[Partner, dict[str, Any]] | None:
    rec = item.delivered
    if rec is None or not rec.get("ch"):
        return None  # not the recipient's (yet), or not from a partner
    partner = partners.get(rec["ch"])
    if partner is None:  # a partner since removed from the configuration: no bonus
        return None
    return partner, rec


def points_step(s: Settings, partners: dict[str, Partner], redis: Any,
                now_ms: Callable[[], int]) -> Step:
    """`points=N`: the recipient earns N popularity points per card, as a fresh lot."""

    def call(item: ReceivedGift, _batch: Any) -> Call | None:
        found = _partner(partners, item)
        if found is None or not found[0].points_per_card:
            return None
        partner, rec = found
        return (user_keys(item.to),
                [f"$partner:{item.tid}", partner.points_per_card * int(rec["count"]), "partner",
                 now_ms(), s.points_lot_ttl_s * 1000, s.events_bound, "", s.amount_max])

    async def after(item: ReceivedGift, reply: list[Any], _batch: Any) -> None:
        st = status(reply)
        channel = (item.delivered or {}).get("ch", "")
        if st is Status.APPLIED or st is Status.EXISTS:
            await note_lots(redis, item.to, now_ms())  # the lot's expiry is swept
            if st is Status.APPLIED:
                metrics.BONUSES.inc(channel=channel, bonus="points")
        elif st is Status.REJECTED or st is Status.CONFLICT:
            # past the bound (a resend may grant it once there is room), or granted before
            # with another GIFTWIRE_PARTNERS: the gift stands either way
            log.info("partner points for gift %s not granted: %s", item.tid,
                     reply[1] if st is Status.REJECTED else "granted before with other points",
                     extra={"transfer_id": item.tid})
        else:
            raise UnknownStatus(f"pop_grant answered {reply!r}")

    return Step("pop_grant", call, after)


def campaign_step(partners: dict[str, Partner], now_ms: Callable[[], int]) -> Step:
    """`campaign`: sender and recipient join the channel's joint campaign."""

    def call(item: ReceivedGift, _batch: Any) -> Call | None:
        found = _partner(partners, item)
        if found is None or not found[0].campaign:
            return None
        return ([keys.partner_campaign(found[0].channel)], [item.sender, item.to, now_ms()])

    async def after(item: ReceivedGift, reply: list[Any], _batch: Any) -> None:
        if status(reply) is not Status.APPLIED:
            raise UnknownStatus(f"partner_join answered {reply!r}")
        if int(reply[1]):
            metrics.BONUSES.inc(int(reply[1]), channel=str((item.delivered or {})["ch"]),
                                bonus="campaign")

    return Step("partner_join", call, after)
