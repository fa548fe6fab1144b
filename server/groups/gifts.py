"""In-chat gifts: a gift sent with a `group` is a gift with every rule of any gift, plus
two steps groups add to gifting's flow through the flows registry: before the sender
pays, both sides must be members (`group_check`, read only); after it was delivered, the
group's stream shows it once (`group_record`)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from protocol.messages import rejection
from server.config import Settings
from server.gifting.flow import ReceivedGift
from server.gifting.metrics import REJECTED
from server.settlement.flows import Step
from server.settlement.replies import Replies
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status
from server.store.pipeline import Call

log = logging.getLogger("giftwire.groups")


class GroupGift(Protocol):
    tid: str
    gift_id: str
    sender: str
    to: str
    group: str
    route: str
    done: bool


def check_step(s: Settings, replies: Replies) -> Step:
    def call(item: GroupGift, _batch: Any) -> Call | None:
        if not item.group:
            return None
        g = keys.group(item.group)
        return ([g.profile, g.members, g.gift_check(item.tid), g.gift_checks],
                [item.sender, item.to, item.tid, s.room_recorded_ttl_s, item.route])

    async def after(item: GroupGift, reply: list[Any], _batch: Any) -> None:
        st = status(reply)
        if st is Status.REJECTED:  # nothing was paid: the refusal is the reply
            REJECTED.inc(reason=str(reply[1]))
            await replies.send(item.sender, item.route,
                               rejection(item.tid, item.gift_id, str(reply[1])))
            item.done = True
        elif st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"group_check answered {reply!r}")

    return Step("group_check", call, after)


def record_step(s: Settings) -> Step:
    """After a gift reached its recipient (delivered, or an offer accepted): the group's
    stream shows it once."""

    def call(item: ReceivedGift, _batch: Any) -> Call | None:
        rec = item.delivered
        if not item.group or rec is None:
            return None  # not (yet) the recipient's: an open offer is not shown
        g = keys.group(item.group)
        return ([g.profile, g.recorded, g.channel],
                [item.tid, item.sender, item.to, rec["asset"], rec["count"], s.publish_mode,
                 s.room_recorded_ttl_s])

    async def after(item: ReceivedGift, reply: list[Any], _batch: Any) -> None:
        st = status(reply)
        if st is Status.REJECTED:
            log.info("gift %s names unknown group %s", item.tid, item.group,
                     extra={"transfer_id": item.tid})
        elif st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"group_record answered {reply!r}")

    return Step("group_record", call, after)
