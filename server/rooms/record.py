"""The room's step of a gift sent in a room: after the gift settled (delivered), one
more idempotent call on the room's slot records it (board, broadcast). Rooms add it to
gifting's flow through the flows registry; the gift flow itself knows no room."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from server.config import Settings
from server.gifting.flow import ReceivedGift
from server.settlement.flows import Step
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status
from server.store.pipeline import Call

log = logging.getLogger("giftwire.rooms")


def record_step(s: Settings, now_ms: Callable[[], int]) -> Step:
    """`now_ms`: the time the room records the settled gift (its event's `at_ms`)."""

    def call(item: ReceivedGift, _batch: Any) -> Call | None:
        rec = item.delivered
        if not item.room or rec is None:
            return None  # not in a room, or not (yet) the recipient's: an open offer is not
        rk = keys.room(item.room)
        return ([rk.profile, rk.recorded, rk.board, rk.channel],
                [item.tid, item.sender, item.to, rec["asset"], rec["count"], rec["cost"],
                 s.publish_mode, s.room_recorded_ttl_s, rec.get("tier", 0), rec.get("badge", 0),
                 now_ms()])

    async def after(item: ReceivedGift, reply: list[Any], _batch: Any) -> None:
        st = status(reply)
        if st is Status.REJECTED:  # the room is gone: the gift itself stands
            log.info("gift %s names unknown room %s", item.tid, item.room,
                     extra={"transfer_id": item.tid})
        elif st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"room_record answered {reply!r}")

    return Step("room_record", call, after)


class QuotedGift(Protocol):
    """What the quote step reads and sets of a gift flow's item."""

    tid: str
    asset: str
    room: str
    price_num: int
    price_den: int
    tier: int


def quote_step(s: Settings, now_ms: Any) -> Step:
    """Before the sender pays: the room quotes the boost (an open wish prices by audience)."""

    def call(item: QuotedGift, batch: Any) -> Call | None:
        if not item.room:
            return None
        rk = keys.room(item.room)
        return ([rk.profile, rk.quotes, rk.audience, rk.audience_expiry],
                [item.tid, item.asset, now_ms(batch), s.wish_tiers_arg, s.room_recorded_ttl_s])

    async def after(item: QuotedGift, reply: list[Any], _batch: Any) -> None:
        st = status(reply)
        if st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"room_quote answered {reply!r}")
        item.price_num, item.price_den, item.tier = int(reply[1]), int(reply[2]), int(reply[3])

    return Step("room_quote", call, after)
