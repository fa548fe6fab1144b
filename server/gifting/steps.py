"""The sender-side steps both gifting flows end with: record the outcome on the sender's
slot (`send_finalize.lua`), then reward a newcomer's mentor on the mentor's slot
(`grant.lua`), and what their replies mean."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from server.config import Settings
from server.gifting import rules
from server.gifting.metrics import SETTLED
from server.ledger.grants import grant_call
from server.settlement.replies import Replies
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status
from server.store.pipeline import Call
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.gifting")
DAY_COUNTER_TTL_S = 2 * 86400  # a day's counters outlive the day, for late refunds
FESTIVAL_CACHE_MS = 1000  # a calendar change reaches the workers within a second
ANSWERED_BY_FINALIZE = frozenset({"delivered", "offered", "rejected"})  # the sender's own request


@dataclass(frozen=True)
class Today:
    """What the clock says for one batch: time, local day and festival pricing."""

    now_ms: int
    day: str
    festival: bool
    yesterday: str = ""  # the day before (its counters keep refusals a day longer)


class StaleTransition(Exception):
    """The sender's record is not yet where this outcome applies: retry the entry later."""


class Calendar:
    """The local day and whether it is a festival; the calendar is re-read at most once a
    second (FESTIVAL_CACHE_MS)."""

    def __init__(self, redis: Any, settings: Settings) -> None:
        self.redis = redis
        self.tz = rules.parse_timezone(settings.timezone)
        self._cached: tuple[str, int, bool] = ("", 0, False)  # (day, checked at ms, answer)

    async def today(self, now_ms: int) -> Today:
        local = rules.local_day(now_ms, self.tz)
        day, yesterday = rules.day_key(local), rules.day_key(local - timedelta(days=1))
        cached_day, checked_ms, festival = self._cached
        if day != cached_day or now_ms - checked_ms >= FESTIVAL_CACHE_MS:
            festival = bool(await self.redis.sismember(keys.FESTIVALS, day))
            self._cached = (day, now_ms, festival)
        return Today(now_ms, day, festival, yesterday)


class SenderSteps:
    """Step 3 and the mentor reward, shared by the gift flow and the offer flows."""

    def __init__(self, settings: Settings, replies: Replies) -> None:
        self.s = settings
        self.replies = replies

    def finalize_call(self, sender: str, tid: str, outcome: str, detail: str, gift_day: str,
                      today: Today, route: str) -> Call:
        s, sk = self.s, keys.user(sender)
        return (
            [sk.profile, sk.balances, sk.system, sk.transfers, sk.day(gift_day),
             sk.day(today.day), sk.ledger, sk.events, sk.channel],
            [tid, outcome, detail, today.now_ms, s.mentor_reward_asset, s.mentor_reward_cards,
             s.events_bound, route],
        )

    async def after_finalize(self, sender: str, tid: str, outcome: str, reply: list[Any],
                             route: str, stale_retries: bool) -> tuple[bool, str]:
        """(whether the transfer moved on, the mentor to reward or ''). A stale transition
        raises when `stale_retries` (an offer's outcome reached the sender before the gift's
        own step 3, after a crash: retried later, it applies), else it means the transfer
        moved past this step and the request gets the latest stored answer."""
        st = status(reply)
        if st is Status.STALE:
            if stale_retries:
                raise StaleTransition(f"{tid}: {outcome} while the sender's record is {reply[1]}")
            log.info("transfer %s: %s after state %s", tid, outcome, reply[1],
                     extra={"transfer_id": tid})
            if reply[2]:
                await self.replies.send(sender, route, reply[2])
            return False, ""
        if st is Status.APPLIED:
            SETTLED.inc(outcome=outcome)
        elif st is Status.EXISTS:
            if outcome in ANSWERED_BY_FINALIZE:  # a re-run: answer the request that waits
                await self.replies.send(sender, route, reply[1])
        else:
            raise UnknownStatus(f"send_finalize answered {reply!r}")
        return True, str(reply[2])

    def reward_call(self, mentor: str, tid: str, today: Today) -> Call | None:
        if not mentor:
            return None
        s = self.s
        return grant_call(s, mentor, f"$mentor:{tid}", s.mentor_reward_asset,
                          s.mentor_reward_cards, "promo", "mentor_reward", today.now_ms)

    @staticmethod
    def after_reward(mentor: str, tid: str, reply: list[Any]) -> None:
        st = status(reply)
        if st is Status.REJECTED or st is Status.CONFLICT:
            # the newcomer's side is rewarded already; the mentor's account refused
            log.warning("mentor reward for %s to %s: %s", tid, mentor, reply,
                        extra={"transfer_id": tid})


class GiftingFlow:
    """What the gift and offer flows share: the batch's day, the sender's steps, and the
    mentor reward as their last step (items carry `tid` and `mentor`)."""

    def __init__(self, redis: Any, scripts: Scripts, settings: Settings, replies: Replies) -> None:
        self.redis = redis
        self.scripts = scripts
        self.s = settings
        self.replies = replies
        self.calendar = Calendar(redis, settings)
        self.sender = SenderSteps(settings, replies)

    async def prepare(self, now_ms: int) -> Today:
        return await self.calendar.today(now_ms)

    def reward_call(self, item: Any, today: Today) -> Call | None:
        return self.sender.reward_call(item.mentor, item.tid, today)

    async def after_reward(self, item: Any, reply: list[Any], today: Today) -> None:
        self.sender.after_reward(item.mentor, item.tid, reply)
