"""Settlement's re-check of a red-envelope grab: the risk module's step at the head of the
grab flow, on the grabber's slot (the group's slot, where the share is decided, cannot read
the grabber's state). A gateway's cached view refuses most grabs of a frozen or banned
account; this catches one that raced the decision (queued before the view heard of it)."""

from __future__ import annotations

from typing import Any

from server.config import Settings
from server.gateway.endpoint import error_frame
from server.groups.envelopes import grab_record
from server.groups.metrics import GRABS
from server.settlement.flows import Step
from server.settlement.replies import Replies
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status
from server.store.pipeline import Call


def check_step(s: Settings, replies: Replies) -> Step:
    def call(item: Any, now: Any) -> Call:
        uk = keys.user(item.user)
        # per request: a re-run of this request passes as it did (its share may be decided
        # and owed), while a later request is checked afresh (an earlier one may have passed
        # and then been refused by the group, deciding nothing)
        return ([uk.profile, uk.risk_grab_check(item.group, item.envelope, item.route),
                 uk.transfers],
                [now.now_ms, s.envelope_ttl_s * 1000, grab_record(item.group, item.envelope)])

    async def after(item: Any, reply: list[Any], _now: Any) -> None:
        st = status(reply)
        if st is Status.REJECTED:  # nothing decided yet: the refusal is the reply
            GRABS.inc(outcome=str(reply[1]))  # (counted as the group's refusals are)
            await replies.send(item.user, item.route, error_frame(str(reply[1])))
            item.done = True
        elif st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"risk_grab_check answered {reply!r}")

    return Step("risk_grab_check", call, after)
