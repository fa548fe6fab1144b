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
    conn: str

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


def reply_payload(conn: str, event_json: str) -> str:
    return f"{keys.REPLY_PREFIX}{conn} {event_json}"


class GiftService:
    def __init__(self, redis: Any, scripts: Scripts, settings: Settings) -> None:
        self.redis = redis
        self.scripts = scripts
        self.s = settings
        self._fault = settings.fault

    async def reply(self, user: str, conn: str, event_json: str) -> None:
        if conn:
            await publish(self.redis, self.s.redis_cluster, keys.user(user).channel,
                          reply_payload(conn, event_json))

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
             s.amount_max, DAY_COUNTER_TTL_S, s.events_bound, req.gift_id],
        )

    def credit_call(self, sender: str, tid: str, rec: dict[str, Any], today: Today) -> Call:
        s, rk = self.s, keys.user(rec["to"])
        return (
            [rk.profile, rk.balances, rk.system, rk.transfers, rk.blocks, rk.offers, rk.ledger,
             rk.events, rk.channel],
            [tid, sender, rec["asset"], rec["count"], rec["room"], today.now_ms, rec["gift_id"],
             s.offer_timeout_s * 1000, s.offers_per_user_max, s.amount_max,
             s.events_bound, rec["day"]],
        )

    def finalize_call(self, sender: str, tid: str, outcome: str, detail: str, gift_day: str,
                      today: Today) -> Call:
        s, sk = self.s, keys.user(sender)
        return (
            [sk.profile, sk.balances, sk.system, sk.transfers, sk.day(gift_day),
             sk.day(today.day), sk.ledger, sk.events, sk.channel],
            [tid, outcome, detail, today.now_ms, s.events_bound, s.mentor_reward_asset,
             s.mentor_reward_cards],
        )

    # -- what happens after each step ----------------------------------------
    async def after_debit(self, req: SendRequest, status: str, payload: str) -> dict[str, Any] | None:
        """Handle step 1's answer; the record when the gift goes on to the recipient."""
        if status == "rejected":
            return None  # the script published the rejection
        if status == "conflict":
            await self.reply(req.sender, req.conn, rejection(req.tid, req.gift_id, "gift_id_conflict"))
            return None
        rec: dict[str, Any] = orjson.loads(payload)
        if status == "exists" and rec["st"] != "escrowed":
            await self.reply(req.sender, req.conn, rec["ev"])
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
                        today: Today, conn: str) -> None:
        k, a = self.finalize_call(sender, tid, outcome, detail, gift_day, today)
        status, event_json, mentor = await self.scripts.send_finalize(keys=k, args=a)
        await self.after_finalize(sender, tid, outcome, status, event_json, mentor, today, conn)

    async def after_finalize(self, sender: str, tid: str, outcome: str, status: str,
                             event_json: str, mentor: str, today: Today, conn: str) -> None:
        if status == "stale":
            log.error("transfer %s: %s after state %s", tid, outcome, event_json,
                      extra={"transfer_id": tid})
            return
        if status == "exists" and outcome in ("delivered", "offered", "rejected"):
            await self.reply(sender, conn, event_json)
        if mentor:
            s = self.s
            await self.grant(mentor, f"$mentor:{tid}", s.mentor_reward_asset,
                             s.mentor_reward_cards, "promo", "mentor_reward", today.now_ms)

    # -- offers -----------------------------------------------------------
    async def resolve_offer(self, recipient: str, tid: str, action: str, today: Today,
                            conn: str) -> bool:
        """Accept, decline or time out an offer; False when it is not due yet."""
        rk = keys.user(recipient)
        outcome, payload, fresh = await self.scripts.offer_resolve(
            keys=[rk.profile, rk.balances, rk.system, rk.transfers, rk.offers, rk.ledger,
                  rk.events, rk.channel],
            args=[tid, action, today.now_ms, self.s.amount_max, self.s.events_bound],
        )
        if outcome == "not_due":
            return False
        sender, gift_id = rules.split_transfer_id(tid)
        if outcome == "not_found":
            await self.reply(recipient, conn, rejection(tid, gift_id, "offer_not_found"))
            return True
        rec = orjson.loads(payload)
        if fresh != "new":
            await self.reply(recipient, conn, rec["ev"])
        await self._finalize(sender, tid, outcome, rec.get("reason", ""), rec["day"], today, "")
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
