"""The gift flow (entry kind `send`): four single-owner steps, each idempotent by the
transfer id `<sender>:<gift_id>`.

    send_debit (sender)  → recv_credit (recipient) → send_finalize (sender) → grant (mentor)

Each request gets one reply: the event a step published (routed to the request), or,
when a step only replays what was done before, the stored event sent to that request.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from protocol.messages import rejection
from server.config import Settings
from server.gifting import rules
from server.gifting.metrics import REJECTED
from server.gifting.steps import DAY_COUNTER_TTL_S, GiftingFlow, Today
from server.settlement.entries import Envelope
from server.settlement.flows import Step
from server.settlement.replies import Replies
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status
from server.store.pipeline import Call
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.gifting")
KIND = "send"
# the sender's record state of a settled gift → the outcome the later steps see
SETTLED_AS = {"delivered": "delivered", "accepted": "accepted", "offered": "offered",
              "voided": "voided", "refunded": "rejected", "rejected": "rejected"}


class ReceivedGift(Protocol):
    """What a room or a group reads to show a gift once it is the recipient's: a gift flow's
    item, or an accept's (`offers.OfferItem`)."""

    @property
    def tid(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def to(self) -> str: ...
    @property
    def room(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def delivered(self) -> dict[str, Any] | None: ...  # the sender's record, once received


@dataclass
class GiftItem:
    sender: str
    gift_id: str
    to: str
    asset: str
    count: int
    room: str
    route: str  # `<conn>/<n>` of the request, or '' (no one waits for the reply)
    group: str = ""  # the fan group it was sent in (groups add their steps)
    channel: str = ""  # the partner app it came from ("": the platform's own)
    void: bool = False  # an operator gives up on it: the recipient's step refuses
    # a price multiplier quoted before the debit (the live-stream boost) and its tier
    price_num: int = 1
    price_den: int = 1
    tier: int = 0
    settled: bool = False  # settled by an earlier run: only the idempotent later steps run
    done: bool = False
    rec: dict[str, Any] | None = None  # the sender's record once step 1 escrowed it
    outcome: str = ""
    detail: str = ""
    held_by: str = ""  # 'approver': an offer a third party decides (a region's rule)
    mentor: str = ""

    @property
    def tid(self) -> str:
        return rules.transfer_id(self.sender, self.gift_id)

    @property
    def delivered(self) -> dict[str, Any] | None:
        """The sender's record once the cards are the recipient's (delivered, or an offer
        accepted before this re-run), else None: what a room or a group records."""
        return self.rec if self.outcome in ("delivered", "accepted") else None


def payload(d: dict[str, Any], channel: str = "") -> dict[str, Any]:
    """The entry fields of a `gift.send` frame (the gateway writes them, `decode` reads), and
    the partner app's channel of the connection it came on, if any."""
    out = {"gift_id": d["gift_id"], "to": d["to"], "asset": d["asset"], "count": d["count"],
           "room": d.get("room", ""), "group": d.get("group", "")}
    if channel:
        out["channel"] = channel
    return out


class GiftFlow(GiftingFlow):
    kind = KIND

    def __init__(self, redis: Any, scripts: Scripts, settings: Settings, replies: Replies) -> None:
        super().__init__(redis, scripts, settings, replies)
        self.steps: tuple[Step, ...] = (
            Step("send_debit", self.debit_call, self.after_debit),
            Step("recv_credit", self.credit_call, self.after_credit),
            Step("send_finalize", self.finalize_call, self.after_finalize),
            Step("grant", self.reward_call, self.after_reward),
        )

    def decode(self, env: Envelope, f: dict[str, str]) -> GiftItem:
        return GiftItem(env.user, f["gift_id"], f["to"], f["asset"], int(f["count"]),
                        f.get("room", ""), env.route, f.get("group", ""),
                        channel=f.get("channel", ""))

    # -- 1: the sender's side ----------------------------------------------------
    def debit_call(self, item: GiftItem, today: Today) -> Call:
        s, sk = self.s, keys.user(item.sender)
        num, den = (s.festival_cost_num, s.festival_cost_den) if today.festival else (1, 1)
        # festival and boost compose by multiplying: cost = ceil(count × fest × boost)
        num, den = num * item.price_num, den * item.price_den
        return (
            [sk.profile, sk.balances, sk.system, sk.transfers, sk.follows, sk.blocks,
             sk.blocked_by, sk.day(today.day), sk.ledger, sk.events, sk.channel, sk.like_levels,
             sk.day(today.yesterday or today.day)],
            [item.tid, item.gift_id, item.to, item.asset, item.count, item.room, today.day,
             today.now_ms, s.gifts_per_day, s.vip_bonus_gifts, s.pair_gifts_per_day,
             s.follow_min_s * 1000, num, den, s.newcomer_window_s * 1000, s.newcomer_free_cards,
             s.amount_max, DAY_COUNTER_TTL_S, s.events_bound, item.route, item.tier, item.group,
             item.channel, s.refusals_recorded_per_day],
        )

    async def after_debit(self, item: GiftItem, reply: list[Any], today: Today) -> None:
        st = status(reply)
        item.done = True
        if st is Status.REJECTED:  # the script published the rejection, routed to the request
            REJECTED.inc(reason=orjson.loads(reply[1])["code"])
        elif st is Status.CONFLICT:
            REJECTED.inc(reason="gift_id_conflict")
            await self.replies.send(item.sender, item.route,
                                    rejection(item.tid, item.gift_id, "gift_id_conflict"))
        elif st is Status.APPLIED or st is Status.EXISTS:
            rec: dict[str, Any] = orjson.loads(reply[1])
            item.rec, item.done = rec, False
            if rec["st"] != "escrowed":  # settled before: the stored answer is the reply...
                await self.replies.send(item.sender, item.route, rec["ev"])
                # ...and the steps after the sender's (the mentor, the room) run again, in
                # case the run that settled it stopped before them: each is idempotent
                item.settled = True
                item.outcome = SETTLED_AS.get(rec["st"], "")
                item.mentor = rec.get("mentor", "")
                return
            self._fault("kill_after_escrow", item)
        else:
            raise UnknownStatus(f"send_debit answered {reply!r}")

    # -- 2: the recipient's side -------------------------------------------------
    def credit_call(self, item: GiftItem, today: Today) -> Call | None:
        if item.settled:
            return None
        s, rk, rec = self.s, keys.user(item.to), item.rec
        assert rec is not None  # step 1 escrowed it
        count: Any = rec["count"]
        if self.s.fault == "poison_credit" and item.gift_id.startswith("poison") and not item.void:
            count = "not-a-number"  # fault injection: the recipient's step fails every time
        return (
            [rk.profile, rk.balances, rk.system, rk.transfers, rk.blocks, rk.offers, rk.ledger,
             rk.events, rk.channel],
            [item.tid, item.gift_id, item.sender, rec["asset"], count, rec["room"], rec["day"],
             today.now_ms, s.offer_timeout_s * 1000, s.offers_per_user_max, s.amount_max,
             s.events_bound, "void" if item.void else "credit", rec.get("ch", ""),
             s.approvals_arg, rec.get("sg", ""), s.approval_timeout_s * 1000],
        )

    async def after_credit(self, item: GiftItem, reply: list[Any], today: Today) -> None:
        st = status(reply)
        if st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"recv_credit answered {reply!r}")
        item.outcome, item.detail = str(reply[1]), str(reply[2])
        item.held_by = str(reply[3]) if len(reply) > 3 else ""
        if item.outcome == "rejected" and st is Status.APPLIED:
            REJECTED.inc(reason=item.detail)
        if item.outcome == "offered":  # due for the timeout sweep (idempotent on a re-run)
            await self.redis.zadd(keys.OFFERS_DUE, {f"{item.to} {item.tid}": int(item.detail)})

    # -- 3: the sender learns the outcome ----------------------------------------
    def finalize_call(self, item: GiftItem, today: Today) -> Call | None:
        if item.settled:
            return None
        assert item.rec is not None
        # (an offer's detail is its expiry, due in the sweep's set: the sender's step is
        # told only who decides it)
        detail = item.held_by if item.outcome == "offered" else item.detail
        return self.sender.finalize_call(item.sender, item.tid, item.outcome, detail,
                                         item.rec["day"], today, item.route)

    async def after_finalize(self, item: GiftItem, reply: list[Any], today: Today) -> None:
        moved, item.mentor = await self.sender.after_finalize(item.sender, item.tid, item.outcome,
                                                              reply, item.route, stale_retries=False)
        item.done = not moved
        if moved and status(reply) is Status.APPLIED:
            self._fault("kill_after_finalize", item)

    # -- an operator gives up on a dead letter -----------------------------------
    async def void(self, item: GiftItem, now_ms: int) -> str:
        """Unless the recipient's side already decided, it refuses (`operator_voided`) and
        the sender is refunded; returns what happened."""
        stored = await self.redis.hget(keys.user(item.sender).transfers, item.tid)
        if stored is None:
            return "nothing_moved"
        item.rec = orjson.loads(stored)
        assert item.rec is not None
        if item.rec["st"] != "escrowed":  # settled one way or the other already: it did nothing
            return f"already_{item.rec['st']}"
        item.void, item.route = True, ""
        today = await self.prepare(now_ms)
        after_debit = [s.script for s in self.steps].index("send_debit") + 1
        for step in self.steps[after_debit:]:
            call = step.call(item, today)
            if call is None or item.done:
                continue
            await step.after(item, await self.scripts[step.script](keys=call[0], args=call[1]),
                             today)
        return "refunded" if item.outcome == "rejected" else item.outcome

    def _fault(self, name: str, item: GiftItem) -> None:
        if self.s.fault == name:
            log.warning("fault injection: SIGKILL at %s of %s", name, item.tid,
                        extra={"transfer_id": item.tid})
            os.kill(os.getpid(), signal.SIGKILL)
