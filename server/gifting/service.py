"""Runs the Lua steps of a gift in order, each on one owner's slot.

send:    send_debit (sender) → recv_credit (recipient) → send_finalize (sender)
accept/decline/timeout: offer_resolve (recipient) → send_finalize (sender)

Every step is idempotent by the transfer id, so any worker can re-run an entry
from the start after a crash and the transfer completes exactly once. Each
request gets one reply: the event a step published, or — when no step changed
anything (a replay) — the stored event, sent to the requesting connection only.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

import orjson

from protocol.messages import rejection
from server.config import Settings
from server.gifting import rules
from server.store import keys
from server.store.channels import publish
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.gifting")


@dataclass(frozen=True)
class SendRequest:
    sender: str
    gift_id: str
    to: str
    asset: str
    count: int
    room: str
    route: str  # `<conn>/<n>` of the request, or '' (no one waits for the reply)

    @property
    def tid(self) -> str:
        return rules.transfer_id(self.sender, self.gift_id)

    @property
    def fingerprint(self) -> str:
        return f"{self.to}|{self.asset}|{self.count}|{self.room}"


@dataclass(frozen=True)
class Today:
    """What the clock says for one batch: time, local day and festival pricing."""

    now_ms: int
    day: str
    festival: bool


Call = tuple[list[str], list[Any]]  # KEYS and ARGV of one script call
DAY_COUNTER_TTL_S = 2 * 86400  # a day's counters outlive the day, for late refunds
OFFER_STATUSES = frozenset({"applied", "exists", "lost", "rejected", "not_found", "not_due"})


def reply_payload(route: str, frame_json: str) -> str:
    return f"{keys.REPLY_PREFIX}{route} {frame_json}"


class GiftService:
    def __init__(self, redis: Any, scripts: Scripts, settings: Settings) -> None:
        self.redis = redis
        self.scripts = scripts
        self.s = settings
        self._fault = settings.fault

    async def reply(self, user: str, route: str, frame_json: str) -> None:
        """Answer one request only (a replay or a conflict): the hub hands it to that request
        if it still waits, and to nobody else; a request already answered drops it."""
        if route:
            await publish(self.redis, self.s.redis_cluster, keys.user(user).channel,
                          reply_payload(route, frame_json))

    # -- the calls of each step (also pipelined by the worker and the load test) --
    def debit_call(self, req: SendRequest, today: Today) -> Call:
        s, sk = self.s, keys.user(req.sender)
        num, den = (s.festival_cost_num, s.festival_cost_den) if today.festival else (1, 1)
        return (
            [sk.profile, sk.balances, sk.system, sk.transfers, sk.follows, sk.blocks,
             sk.blocked_by, sk.day(today.day), sk.ledger, sk.events, sk.channel],
            [req.tid, req.to, req.asset, req.count, req.room, today.now_ms, req.fingerprint,
             today.day, s.gifts_per_day, s.vip_bonus_gifts, s.pair_gifts_per_day,
             s.follow_min_s * 1000, num, den, s.newcomer_window_s * 1000, s.newcomer_free_cards,
             s.amount_max, DAY_COUNTER_TTL_S, s.events_bound, req.gift_id, req.route],
        )

    def credit_call(self, sender: str, tid: str, rec: dict[str, Any], today: Today,
                    void: bool = False) -> Call:
        s, rk = self.s, keys.user(rec["to"])
        return (
            [rk.profile, rk.balances, rk.system, rk.transfers, rk.blocks, rk.offers, rk.ledger,
             rk.events, rk.channel],
            [tid, sender, rec["asset"], rec["count"], rec["room"], today.now_ms, rec["gift_id"],
             s.offer_timeout_s * 1000, s.offers_per_user_max, s.amount_max,
             s.events_bound, rec["day"], "void" if void else ""],
        )

    def finalize_call(self, sender: str, tid: str, outcome: str, detail: str, gift_day: str,
                      today: Today, route: str = "") -> Call:
        s, sk = self.s, keys.user(sender)
        return (
            [sk.profile, sk.balances, sk.system, sk.transfers, sk.day(gift_day),
             sk.day(today.day), sk.ledger, sk.events, sk.channel],
            [tid, outcome, detail, today.now_ms, s.events_bound, s.mentor_reward_asset,
             s.mentor_reward_cards, route],
        )

    # -- what happens after each step ----------------------------------------
    async def after_debit(self, req: SendRequest, status: str, payload: str) -> dict[str, Any] | None:
        """Handle step 1's answer; the record when the gift goes on to the recipient."""
        if status == "rejected":
            return None  # the script published the rejection
        if status == "conflict":
            await self.reply(req.sender, req.route, rejection(req.tid, req.gift_id, "gift_id_conflict"))
            return None
        rec: dict[str, Any] = orjson.loads(payload)
        if status == "exists" and rec["st"] != "escrowed":
            await self.reply(req.sender, req.route, rec["ev"])
            return None
        if self._fault == "kill_after_escrow":
            log.warning("fault injection: SIGKILL after escrow of %s", req.tid,
                        extra={"transfer_id": req.tid})
            os.kill(os.getpid(), signal.SIGKILL)
        return rec

    async def after_credit(self, recipient: str, tid: str, outcome: str, detail: str) -> None:
        if outcome == "offered":
            await self.redis.zadd(keys.OFFERS_DUE, {f"{recipient} {tid}": int(detail)})

    async def _finalize(self, sender: str, tid: str, outcome: str, detail: str, gift_day: str,
                        today: Today) -> None:
        """Step 3 after an offer's outcome: nobody on the sender's side waits for a reply."""
        k, a = self.finalize_call(sender, tid, outcome, detail, gift_day, today)
        status, event_json, mentor = await self.scripts.send_finalize(keys=k, args=a)
        await self.after_finalize(sender, tid, outcome, status, event_json, mentor, today, "")

    async def after_finalize(self, sender: str, tid: str, outcome: str, status: str,
                             event_json: str, mentor: str, today: Today, route: str) -> None:
        if status == "stale":
            log.error("transfer %s: %s after state %s", tid, outcome, event_json,
                      extra={"transfer_id": tid})
            return
        if status == "exists" and outcome in ("delivered", "offered", "rejected"):
            await self.reply(sender, route, event_json)
        if status == "applied" and self._fault == "kill_after_finalize":
            log.warning("fault injection: SIGKILL after finalize of %s", tid,
                        extra={"transfer_id": tid})
            os.kill(os.getpid(), signal.SIGKILL)
        if mentor:
            s = self.s
            await self.grant(mentor, f"$mentor:{tid}", s.mentor_reward_asset,
                             s.mentor_reward_cards, "promo", "mentor_reward", today.now_ms)

    # -- offers -----------------------------------------------------------
    async def resolve_offer(self, recipient: str, tid: str, action: str, today: Today,
                            route: str) -> bool:
        """Accept, decline or time out an offer; False when it is not due yet. The request
        (if any) gets exactly one reply: the new event (routed by the script), or the stored
        event of a repeated action, or a rejection saying how the offer already ended."""
        rk = keys.user(recipient)
        status, outcome, payload, code = await self.scripts.offer_resolve(
            keys=[rk.profile, rk.balances, rk.system, rk.transfers, rk.offers, rk.ledger,
                  rk.events, rk.channel],
            args=[tid, action, today.now_ms, self.s.amount_max, self.s.events_bound, route],
        )
        if status not in OFFER_STATUSES:
            raise ValueError(f"offer_resolve answered {status!r} for {tid}")
        if status == "not_due":
            return False
        sender, gift_id = rules.split_transfer_id(tid)
        if status in ("not_found", "rejected"):  # nothing changed
            if action == "timeout":  # a due entry without its offer: never sweep it again
                await self.redis.zrem(keys.OFFERS_DUE, f"{recipient} {tid}")
            await self.reply(recipient, route, rejection(tid, gift_id, code or "offer_not_found"))
            return True
        rec = orjson.loads(payload)
        if status == "exists":
            await self.reply(recipient, route, rec["ev"])
        elif code:  # 'lost', or 'applied' by a late accept that timed the offer out
            await self.reply(recipient, route, rejection(tid, gift_id, code))
        # the sender's step runs again on every path: it is idempotent, and a crash may have
        # come between the two steps
        await self._finalize(sender, tid, outcome, rec.get("reason", ""), rec["day"], today)
        await self.redis.zrem(keys.OFFERS_DUE, f"{recipient} {tid}")
        return True

    async def sweep(self, today: Today) -> int:
        """Time out due offers, at most `sweep_batch_max`; returns how many were due."""
        due = await self.redis.zrangebyscore(
            keys.OFFERS_DUE, "-inf", today.now_ms, start=0, num=self.s.sweep_batch_max
        )
        for member in due:
            recipient, _, tid = member.partition(" ")
            await self.resolve_offer(recipient, tid, "timeout", today, "")
        return len(due)

    # -- grants -----------------------------------------------------------
    async def grant(self, user: str, tid: str, asset: str, delta: int, account: str,
                    reason: str, now_ms: int) -> tuple[str, str]:
        """Move `delta` between `user` and a system account; ('applied'|'exists', balance),
        ('rejected', code) or ('conflict', '')."""
        uk = keys.user(user)
        status, detail = await self.scripts.grant(
            keys=[uk.profile, uk.balances, uk.system, uk.transfers, uk.ledger, uk.events,
                  uk.channel],
            args=[tid, asset, delta, account, reason, now_ms, self.s.amount_max,
                  self.s.events_bound],
        )
        return str(status), str(detail)
