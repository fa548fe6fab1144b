"""Red envelopes (红包) through settlement: single-owner steps, each idempotent, the cards
always in escrow between them (SPEC "Scale and durability").

    envelope.send:  env_debit (sender) → env_open (group) → env_settle (sender)
    envelope.grab:  env_grab_check (grabber: not banned or frozen) → env_grab (group: decides
                    the share, once) → env_credit (grabber)
    refund sweep:   env_expire (group: takes what is left, once) → env_credit (sender)

Record ids on a user's slot: `$es:<group>:<envelope id>` (the sender's envelope),
`$eg:<group>:<sender>:<envelope id>` (a grab), `$er:<group>:<sender>:<envelope id>` (a
refund). In the group an envelope is named `<sender>:<envelope id>`.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
from dataclasses import dataclass
from typing import Any

import orjson

from server.config import Settings
from server.gateway.endpoint import error_frame
from server.groups.metrics import GRABS
from server.settlement.entries import Envelope
from server.settlement.flows import DayFlow, Now, Step
from server.settlement.replies import Replies
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status
from server.store.pipeline import Call, run_calls
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.groups")
SEND, GRAB = "envelope.send", "envelope.grab"
SWEEP_BATCH = 256  # expired envelopes refunded per sweep round


def send_payload(d: dict[str, Any]) -> dict[str, Any]:
    return {"group": d["group"], "envelope": d["envelope"], "asset": d["asset"],
            "total": d["total"], "shares": d["shares"]}


def grab_payload(d: dict[str, Any]) -> dict[str, Any]:
    return {"group": d["group"], "envelope": d["envelope"]}


def send_record(group: str, envelope_id: str) -> str:
    return f"$es:{group}:{envelope_id}"


def grab_record(group: str, envelope: str) -> str:
    return f"$eg:{group}:{envelope}"


def refund_record(group: str, envelope: str) -> str:
    return f"$er:{group}:{envelope}"


@dataclass
class SendItem:
    sender: str
    group: str
    envelope_id: str
    asset: str
    total: int
    shares: int
    route: str
    done: bool = False
    outcome: str = ""  # 'open' | 'refuse'
    detail: str = ""

    @property
    def rid(self) -> str:
        return send_record(self.group, self.envelope_id)

    @property
    def name(self) -> str:
        return f"{self.sender}:{self.envelope_id}"


class SendFlow(DayFlow):
    kind = SEND

    def __init__(self, scripts: Scripts, settings: Settings, replies: Replies) -> None:
        super().__init__(scripts, settings, replies)
        self.steps: tuple[Step, ...] = (
            Step("env_debit", self.debit_call, self.after_debit),
            Step("env_open", self.open_call, self.after_open),
            Step("env_settle", self.settle_call, self.after_settle),
        )

    def decode(self, env: Envelope, f: dict[str, str]) -> SendItem:
        return SendItem(env.user, f["group"], f["envelope"], f["asset"], int(f["total"]),
                        int(f["shares"]), env.route)

    def debit_call(self, item: SendItem, now: Now) -> Call:
        uk = keys.user(item.sender)
        return ([uk.profile, uk.balances, uk.system, uk.transfers, uk.ledger],
                [item.rid, item.group, item.asset, item.total, item.shares, now.now_ms])

    async def after_debit(self, item: SendItem, reply: list[Any], _now: Now) -> None:
        st = status(reply)
        if st is Status.REJECTED or st is Status.CONFLICT:
            code = "envelope_id_conflict" if st is Status.CONFLICT else str(reply[1])
            await self.replies.send(item.sender, item.route, error_frame(code))
            item.done = True
        elif st is Status.EXISTS and orjson.loads(reply[1])["st"] == "refused":
            # refused and refunded before: never open it now (its cards are not in escrow)
            await self.replies.send(item.sender, item.route,
                                    error_frame(orjson.loads(reply[1])["code"]))
            item.done = True
        elif st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"env_debit answered {reply!r}")

    def open_call(self, item: SendItem, now: Now) -> Call:
        g = keys.group(item.group)
        return ([g.profile, g.members, g.envelope(item.name), g.envelopes, g.day(now.day), g.channel,
                 g.day_envelopes(now.day)],
                [item.name, item.sender, item.asset, item.total, item.shares, now.now_ms,
                 now.now_ms + self.s.envelope_ttl_s * 1000, self.s.publish_mode,
                 self.s.group_day_ttl_s, self.s.envelopes_open_max, secrets.token_hex(16)])

    async def after_open(self, item: SendItem, reply: list[Any], _now: Now) -> None:
        st = status(reply)
        if st is Status.REJECTED:
            item.outcome, item.detail = "refuse", str(reply[1])
        elif st is Status.APPLIED or st is Status.EXISTS:
            item.outcome, item.detail = "open", str(reply[1])
        else:
            raise UnknownStatus(f"env_open answered {reply!r}")

    def settle_call(self, item: SendItem, now: Now) -> Call:
        return (keys.user(item.sender).account,
                [item.rid, item.name, item.outcome, item.detail, now.now_ms, self.s.events_bound,
                 item.route])

    async def after_settle(self, item: SendItem, reply: list[Any], _now: Now) -> None:
        st = status(reply)
        if st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"env_settle answered {reply!r}")
        if reply[1] == "open":
            # the refund sweep finds it when it is due (again on a re-run: a crash may have
            # come between the settle and this)
            await self.scripts.redis.zadd(keys.ENVELOPES_DUE,
                                          {f"{item.group} {item.name}": int(item.detail)})
            if st is Status.EXISTS:  # settled before: the stored event answers this request
                await self.replies.send(item.sender, item.route, str(reply[2]))
        else:
            await self.replies.send(item.sender, item.route, error_frame(str(reply[2])))

    async def void(self, item: SendItem, now_ms: int) -> str:
        """An operator gives up: unless the group opened it, the sender gets the cards back.
        One the group opened stays open (its cards are the grabbers' now) and is settled so."""
        now = await self.prepare(now_ms)
        item.route = ""
        redis = self.scripts.redis
        if await redis.hget(keys.user(item.sender).transfers, item.rid) is None:
            return "nothing_moved"
        decided = await self.scripts["env_void"](keys=[keys.group(item.group).envelope(item.name)],
                                                 args=[])
        if status(decided) is Status.EXISTS:
            item.outcome, item.detail = "open", str(decided[1])
        else:  # never opened, and now never will be
            item.outcome, item.detail = "refuse", "settlement_failed"
        call = self.settle_call(item, now)
        reply = await self.scripts["env_settle"](keys=call[0], args=call[1])
        if reply[1] == "open":
            await redis.zadd(keys.ENVELOPES_DUE, {f"{item.group} {item.name}": int(item.detail)})
            return "opened"
        return "refunded"


@dataclass
class GrabItem:
    user: str
    group: str
    envelope: str
    route: str
    done: bool = False
    share: int = 0
    asset: str = ""


class GrabFlow(DayFlow):
    kind = GRAB

    def __init__(self, scripts: Scripts, settings: Settings, replies: Replies) -> None:
        super().__init__(scripts, settings, replies)
        self.steps: tuple[Step, ...] = (
            Step("env_grab_check", self.check_call, self.after_check),
            Step("env_grab", self.grab_call, self.after_grab),
            Step("env_credit", self.credit_call, self.after_credit),
        )

    def decode(self, env: Envelope, f: dict[str, str]) -> GrabItem:
        return GrabItem(env.user, f["group"], f["envelope"], env.route)

    def check_call(self, item: GrabItem, now: Now) -> Call:
        # The grabber's own state, on the grabber's slot (the group's slot, where the share is
        # decided, cannot read it). Per request: a re-run of this request passes as it did (its
        # share may be decided and owed), while a later request is checked afresh (an earlier
        # one may have passed and then been refused by the group, deciding nothing).
        uk = keys.user(item.user)
        return ([uk.profile, uk.grab_check(item.group, item.envelope, item.route), uk.transfers],
                [now.now_ms, self.s.envelope_ttl_s * 1000, grab_record(item.group, item.envelope)])

    async def after_check(self, item: GrabItem, reply: list[Any], _now: Now) -> None:
        st = status(reply)
        if st is Status.REJECTED:  # nothing decided yet: the refusal is the reply
            GRABS.inc(outcome=str(reply[1]))
            await self.replies.send(item.user, item.route, error_frame(str(reply[1])))
            item.done = True
        elif st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"env_grab_check answered {reply!r}")

    def grab_call(self, item: GrabItem, now: Now) -> Call:
        g = keys.group(item.group)
        return ([g.profile, g.members, g.envelope(item.envelope), g.grabs(item.envelope),
                 g.envelopes, g.day(now.day), g.channel],
                [item.envelope, item.user, now.now_ms, self.s.publish_mode, self.s.group_day_ttl_s])

    async def after_grab(self, item: GrabItem, reply: list[Any], _now: Now) -> None:
        st = status(reply)
        if st is Status.REJECTED:
            GRABS.inc(outcome=str(reply[1]))
            await self.replies.send(item.user, item.route, error_frame(str(reply[1])))
            item.done = True
        elif st is Status.APPLIED or st is Status.EXISTS:
            item.share, item.asset = int(reply[1]), str(reply[2])
            if st is Status.APPLIED and self.s.fault == "kill_after_grab":
                log.warning("fault injection: SIGKILL after deciding %s's share of %s",
                            item.user, item.envelope)
                os.kill(os.getpid(), signal.SIGKILL)
        else:
            raise UnknownStatus(f"env_grab answered {reply!r}")

    def credit_call(self, item: GrabItem, now: Now) -> Call:
        return (keys.user(item.user).account,
                [grab_record(item.group, item.envelope), "grab", item.group, item.envelope,
                 item.asset, item.share, now.now_ms, self.s.events_bound, item.route,
                 self.s.amount_max])

    async def after_credit(self, item: GrabItem, reply: list[Any], _now: Now) -> None:
        st = status(reply)
        if st is Status.EXISTS:  # a retried grab: the stored event answers it
            await self.replies.send(item.user, item.route, str(reply[1]))
        elif st is Status.APPLIED:
            GRABS.inc(outcome="credited")
        elif st is Status.REJECTED:  # past the balance bound: the share waits in escrow
            GRABS.inc(outcome=str(reply[1]))
            await self.replies.send(item.user, item.route, error_frame(str(reply[1])))
        else:
            raise UnknownStatus(f"env_credit answered {reply!r}")

    async def void(self, item: GrabItem, now_ms: int) -> str:
        """A grab whose share was decided is credited (the share is the member's), unless it
        would take the member past the balance bound (`balance_full`: it waits in escrow for
        a grab again); one that was not decided moved nothing."""
        now = await self.prepare(now_ms)
        share = await self.scripts.redis.hget(keys.group(item.group).grabs(item.envelope), item.user)
        if share is None:
            return "nothing_moved"
        env = await self.scripts.redis.hget(keys.group(item.group).envelope(item.envelope), "asset")
        item.share, item.asset, item.route = int(share), str(env), ""
        call = self.credit_call(item, now)
        reply = await self.scripts["env_credit"](keys=call[0], args=call[1])
        if status(reply) is Status.REJECTED:  # past the bound: it waits for a grab again
            return str(reply[1])
        return "credited"


def refund_due(scripts: Scripts, s: Settings) -> Any:
    """The periodic sweep: expired envelopes give what is left back to their senders."""

    async def run(now_ms: int) -> int:
        redis = scripts.redis
        due = await redis.zrangebyscore(keys.ENVELOPES_DUE, "-inf", now_ms, start=0, num=SWEEP_BATCH)
        if not due:
            return 0
        calls: list[Call] = []
        for entry in due:
            group, _, envelope = entry.partition(" ")
            g = keys.group(group)
            calls.append(([g.profile, g.envelope(envelope), g.envelopes, g.channel],
                          [envelope, now_ms, s.publish_mode]))
        replies = await run_calls(redis, s.redis_cluster, scripts["env_expire"], calls)
        credits: list[Call] = []
        finished: list[str] = []
        for entry, reply in zip(due, replies, strict=True):
            if isinstance(reply, Exception):
                log.error("refund of %s failed: %r", entry, reply)
                continue
            st = status(reply)
            if st is Status.NOT_DUE:
                continue  # the clock moved back under us; next round
            finished.append(entry)
            if (st is Status.APPLIED or st is Status.EXISTS) and int(reply[1]) > 0:
                group, _, envelope = entry.partition(" ")
                credits.append((keys.user(str(reply[2])).account,
                                [refund_record(group, envelope), "refund", group, envelope,
                                 str(reply[3]), int(reply[1]), now_ms, s.events_bound, ""]))
        results = await run_calls(redis, s.redis_cluster, scripts["env_credit"], credits)
        if any(isinstance(r, Exception) for r in results):
            log.error("an envelope refund credit failed; the sweep retries it")
            return 0  # nothing removed from the due set: both steps re-run idempotently
        if finished:
            await redis.zrem(keys.ENVELOPES_DUE, *finished)
        return len(finished)

    return run


def poll_ticks(scripts: Scripts, s: Settings) -> Any:
    """The periodic poll tick: due polls close, held-back results go out once the throttle
    allows (until then they stay in the dirty set)."""

    async def run(now_ms: int) -> int:
        redis = scripts.redis
        due = await redis.zrangebyscore(keys.POLLS_DUE, "-inf", now_ms, start=0, num=SWEEP_BATCH)
        dirty = await redis.spop(keys.POLLS_DIRTY, SWEEP_BATCH) or []
        polls = sorted(set(due) | set(dirty))
        if not polls:
            return 0
        calls: list[Call] = []
        for entry in polls:
            group, _, poll = entry.partition(" ")
            g = keys.group(group)
            calls.append(([g.profile, g.poll(poll), g.polls, g.channel],
                          [poll, now_ms, s.publish_mode, s.poll_throttle_ms]))
        replies = await run_calls(redis, s.redis_cluster, scripts["poll_tick"], calls)
        ended = [e for e, r in zip(polls, replies, strict=True)
                 if not isinstance(r, Exception) and r[1] in ("closed", "gone")]
        if ended:
            await redis.zrem(keys.POLLS_DUE, *ended)
        held = [e for e, r in zip(polls, replies, strict=True)
                if not isinstance(r, Exception) and r[1] == "held"]
        if held:
            await redis.sadd(keys.POLLS_DIRTY, *held)
        return len(polls)

    return run
