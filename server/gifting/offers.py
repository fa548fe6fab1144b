"""Confirmation-required gifts: the offer flows (entry kinds `accept` and `decline`) and
the timeout sweep (a periodic job), all one flow shape:

    offer_resolve (recipient) → send_finalize (sender) → grant (mentor)

The first action to find the offer wins; later ones are answered from the stored
outcome (the same action: its stored event; another: a rejection saying how the
offer ended), so accept racing decline or timeout has exactly one result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from protocol.messages import rejection
from server.config import Settings
from server.gifting import rules
from server.gifting.steps import GiftingFlow, Today
from server.settlement.entries import Envelope
from server.settlement.flows import Step, run_steps
from server.settlement.replies import Replies
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status
from server.store.pipeline import Call
from server.store.scripts import Scripts

ACCEPT = "accept"  # the entry kind of an accept (rooms and groups add a step to it)
ACTIONS = (ACCEPT, "decline")  # from clients; "timeout" comes from the sweep
RESOLVED = frozenset({Status.APPLIED, Status.EXISTS, Status.LOST})


@dataclass
class OfferItem:
    recipient: str
    tid: str
    action: str
    route: str
    done: bool = False
    outcome: str = ""  # accepted | voided
    rec: dict[str, Any] | None = None  # the recipient's record of the offer
    mentor: str = ""
    gift: dict[str, Any] | None = None  # the sender's record, once the offer was accepted

    @property
    def sender(self) -> str:
        return rules.split_transfer_id(self.tid)[0]

    @property
    def gift_id(self) -> str:
        return rules.split_transfer_id(self.tid)[1]

    # what a room or a group reads to show an accepted gift (as of a gift's own item)
    @property
    def to(self) -> str:
        return self.recipient

    @property
    def room(self) -> str:
        return str((self.gift or {}).get("room", ""))

    @property
    def group(self) -> str:
        return str((self.gift or {}).get("group", ""))

    @property
    def delivered(self) -> dict[str, Any] | None:
        return self.gift


def payload(d: dict[str, Any]) -> dict[str, Any]:
    """The entry fields of a `gift.accept` / `gift.decline` frame."""
    return {"transfer_id": d["offer_id"]}


class OfferFlow(GiftingFlow):
    def __init__(self, action: str, redis: Any, scripts: Scripts, settings: Settings,
                 replies: Replies) -> None:
        super().__init__(redis, scripts, settings, replies)
        self.kind = self.action = action
        self.steps: tuple[Step, ...] = (
            Step("offer_resolve", self.resolve_call, self.after_resolve),
            Step("send_finalize", self.finalize_call, self.after_finalize),
            Step("grant", self.reward_call, self.after_reward),
        )

    def decode(self, env: Envelope, f: dict[str, str]) -> OfferItem:
        return OfferItem(env.user, f["transfer_id"], self.action, env.route)

    def resolve_call(self, item: OfferItem, today: Today) -> Call:
        rk = keys.user(item.recipient)
        return ([rk.profile, rk.balances, rk.system, rk.transfers, rk.offers, rk.ledger,
                 rk.events, rk.channel],
                [item.tid, item.action, today.now_ms, self.s.amount_max, self.s.events_bound,
                 item.route])

    async def after_resolve(self, item: OfferItem, reply: list[Any], today: Today) -> None:
        st, outcome, record, code = status(reply), str(reply[1]), str(reply[2]), str(reply[3])
        if st is Status.NOT_DUE:
            item.done = True
        elif st is Status.NOT_FOUND or st is Status.REJECTED:  # nothing changed
            item.done = True
            if item.action == "timeout":  # a due entry without its offer: never sweep it again
                await self._not_due_any_more(item)
            await self.replies.send(item.recipient, item.route,
                                    rejection(item.tid, item.gift_id, code or "offer_not_found"))
        elif st in RESOLVED:
            item.rec, item.outcome = orjson.loads(record), outcome
            if st is Status.EXISTS:  # the same action again: its stored answer
                await self.replies.send(item.recipient, item.route, item.rec["ev"])
            elif code:  # lost to another action, or an accept after the deadline
                await self.replies.send(item.recipient, item.route,
                                        rejection(item.tid, item.gift_id, code))
            # the sender's step runs on every path: it is idempotent, and a crash may have
            # come between the two steps
        else:
            raise UnknownStatus(f"offer_resolve answered {reply!r}")

    def finalize_call(self, item: OfferItem, today: Today) -> Call:
        assert item.rec is not None
        # nobody on the sender's side waits for a reply: no route
        return self.sender.finalize_call(item.sender, item.tid, item.outcome,
                                         item.rec.get("reason", ""), item.rec["day"], today, "")

    async def after_finalize(self, item: OfferItem, reply: list[Any], today: Today) -> None:
        _, item.mentor = await self.sender.after_finalize(item.sender, item.tid, item.outcome,
                                                          reply, "", stale_retries=True)
        await self._not_due_any_more(item)
        if item.outcome == "accepted":  # the cards are the recipient's: a room or group the
            # gift was sent in shows it now (an accept is rare: one read, off the gift path)
            stored = await self.redis.hget(keys.user(item.sender).transfers, item.tid)
            item.gift = orjson.loads(stored) if stored else None

    async def void(self, item: OfferItem, now_ms: int) -> str:
        """A dead-lettered accept or decline is dropped: the offer stays open and times out."""
        return "dropped"

    async def _not_due_any_more(self, item: OfferItem) -> None:
        await self.redis.zrem(keys.OFFERS_DUE, f"{item.recipient} {item.tid}")


class Sweep:
    """The periodic job: time out due offers, at most `sweep_batch_max` per run."""

    def __init__(self, flow: OfferFlow) -> None:
        assert flow.action == "timeout"
        self.flow = flow

    async def run(self, now_ms: int) -> int:
        f = self.flow
        due = await f.redis.zrangebyscore(keys.OFFERS_DUE, "-inf", now_ms, start=0,
                                          num=f.s.sweep_batch_max)
        items: list[Any] = []
        for member in due:
            recipient, _, tid = member.partition(" ")
            items.append(OfferItem(recipient, tid, "timeout", ""))
        await run_steps(f, items, await f.prepare(now_ms), f.redis, f.scripts, f.s.redis_cluster)
        return len(due)
