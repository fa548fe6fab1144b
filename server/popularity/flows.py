"""Card uses through settlement: single-owner steps, each idempotent, so a worker that
dies anywhere leaves nothing half done (SPEC "Scale and durability").

    popularity.use:     pop_use (user: rules, price from the oldest lots) → content_claim
                        (the hash's slot: first booster owns it) → boost_set (the content's
                        slot: its window) → pop_use_settle (user: scheduled / active, or
                        refunded as the lots it came from)
    popularity.cancel:  pop_cancel mark (user) → boost_set remove (content) → content_claim
                        release (the hash's slot: given back when none of the owner's uses
                        is left) → pop_cancel refund (user)
    the schedule:       a periodic job starts and ends uses on time (pop_use_tick); the due
                        times live in Redis, never only in a timer
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from server.config import Settings
from server.gateway.endpoint import error_frame
from server.popularity import rules
from server.settlement.entries import Envelope
from server.settlement.flows import DayFlow, Now, Step
from server.settlement.replies import Replies
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status
from server.store.pipeline import Call, run_calls
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.popularity")
USE, CANCEL = "popularity.use", "popularity.cancel"
TICK_BATCH = 256


def user_keys(user: str) -> list[str]:
    """The first 11 KEYS of every popularity script (see lua/_popularity.lua)."""
    uk = keys.user(user)
    return [*uk.account, uk.lots, uk.lot_points, uk.popularity, uk.card_uses]


async def note_lots(redis: Any, user: str, now_ms: int) -> None:
    """After a step that added lots or lifted a freeze (and after its retry: a crash may have
    come between): the expiry sweep looks at `user` from now on (server/popularity/sweep.py).
    `LT`: a sooner time already there stays, and a sweep reading the user now keeps it."""
    await redis.zadd(keys.LOTS_DUE, {user: now_ms}, lt=True)


def claim_call(user: str, use: str, content_hash: str, action: str) -> Call:
    """content_claim on the hash's slot: `claim` (a use's step 2) or `release` (a cancel)."""
    return ([keys.content_owner(content_hash), keys.content_owner_uses(content_hash)],
            [user, use, action])


def unboost_call(user: str, use: str, content: str) -> Call:
    """boost_set on the content's slot: the use's window taken away (a cancel, a void)."""
    return ([keys.content_boosts(content)], [f"{user}:{use}", "remove", 0, 0, 0])


def use_payload(d: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The entry of a card use: its parameters with their defaults (an absent start is now)
    and `fp`, the fingerprint of the request as sent, which decides what a retry is."""
    return {"use": d["use"], "card": d["card"], "cover": d.get("cover", "basic"),
            "content": d["content"], "content_hash": d["content_hash"], "category": d["category"],
            "start_at_ms": d.get("start_at_ms", now_ms), "live_room": d.get("live_room", ""),
            "fp": rules.use_fingerprint(d)}


@dataclass
class UseItem:
    user: str
    use: str
    card: str
    cover: str
    content: str
    content_hash: str
    category: str
    starts: int
    route: str
    live_room: str = ""  # advanced cards: boosted together with the content
    fp: str = ""  # the request as sent (rules.use_fingerprint); '' in an older gateway's entry
    done: bool = False
    ends: int = 0
    outcome: str = "ok"
    code: str = ""

    @property
    def request_key(self) -> str:
        """The use as its client asked for it (a resend is the same use: its start, when
        none was asked, is the time each was sent)."""
        return f"{self.use}|{self.fp}"


class UseFlow(DayFlow):
    kind = USE

    def __init__(self, scripts: Scripts, settings: Settings, replies: Replies) -> None:
        super().__init__(scripts, settings, replies)
        self.steps: tuple[Step, ...] = (
            Step("pop_use", self.use_call, self.after_use),
            Step("content_claim", self.claim_call, self.after_claim),
            Step("boost_set", self.boost_call, self.after_boost),
            Step("boost_set", self.room_boost_call, self.after_boost),
            Step("pop_use_settle", self.settle_call, self.after_settle),
        )

    def decode(self, env: Envelope, f: dict[str, str]) -> UseItem:
        return UseItem(env.user, f["use"], f["card"], f["cover"], f["content"], f["content_hash"],
                       f["category"], int(f["start_at_ms"]), env.route, f.get("live_room", ""),
                       f.get("fp", ""))

    def use_call(self, item: UseItem, now: Now) -> Call:
        s = self.s
        item.ends = item.starts + s.boost_duration_s * 1000
        return (user_keys(item.user),
                [item.use, item.card, item.cover, item.content, item.content_hash, item.category,
                 rules.prices(s)[item.card], item.starts, item.ends, now.day, now.now_ms,
                 s.card_uses_per_day, s.fan_reach_followers, rules.mature_before_ms(now.now_ms, s),
                 s.mature_followers, s.events_bound,
                 item.live_room if item.cover == "advanced" else "", item.fp])

    async def after_use(self, item: UseItem, reply: list[Any], _now: Now) -> None:
        st = status(reply)
        if st is Status.REJECTED or st is Status.CONFLICT:
            await self._refuse(item, "use_id_conflict" if st is Status.CONFLICT else str(reply[1]))
        elif st is Status.APPLIED or st is Status.EXISTS:
            rec = orjson.loads(reply[1])
            item.starts, item.ends = int(rec["starts"]), int(rec["ends"])
            if rec["st"] == "refused":  # refused and refunded before: the same answer again
                await self._refuse(item, rec["code"])
            elif rec["st"] != "paid":  # settled before (maybe cancelled since): its windows
                item.outcome = "settled"  # are never added again; the settle step replays
        else:
            raise UnknownStatus(f"pop_use answered {reply!r}")

    async def _refuse(self, item: UseItem, code: str) -> None:
        """The use's request is answered `error` `code` (naming a configured bound), and done."""
        await self.replies.send(item.user, item.route,
                                error_frame(code, detail=rules.refusal_detail(code, self.s)))
        item.done = True

    def claim_call(self, item: UseItem, _now: Now) -> Call | None:
        if item.outcome != "ok":  # settled before (maybe cancelled since: never claim again)
            return None
        return claim_call(item.user, item.use, item.content_hash, "claim")

    async def after_claim(self, item: UseItem, reply: list[Any], _now: Now) -> None:
        st = status(reply)
        if st is Status.REJECTED:
            item.outcome, item.code = "refuse", str(reply[1])
        elif st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"content_claim answered {reply!r}")

    def boost_call(self, item: UseItem, now: Now) -> Call | None:
        if item.outcome != "ok":
            return None
        return self._window(item, item.content, now)

    def room_boost_call(self, item: UseItem, now: Now) -> Call | None:
        """An advanced card covers the live room too (the content's and the room's own slot)."""
        if item.outcome != "ok" or item.cover != "advanced" or not item.live_room:
            return None
        return self._window(item, item.live_room, now)

    def _window(self, item: UseItem, content: str, now: Now) -> Call:
        kept = max(0, item.ends - now.now_ms) // 1000 + 86400  # past its end, from now
        return ([keys.content_boosts(content)],
                [f"{item.user}:{item.use}", "add", item.starts, item.ends, kept])

    async def after_boost(self, item: UseItem, reply: list[Any], _now: Now) -> None:
        if status(reply) not in (Status.APPLIED, Status.EXISTS):
            raise UnknownStatus(f"boost_set answered {reply!r}")

    def settle_call(self, item: UseItem, now: Now) -> Call:
        at: Any = now.now_ms
        if self.s.fault == "poison_use_settle" and item.use.startswith("poison") \
                and item.outcome == "ok":
            at = "not-a-number"  # fault injection: the last step fails every time (a void refuses)
        return (user_keys(item.user),
                [item.use, "refuse" if item.outcome == "refuse" else "ok", item.code, at,
                 self.s.points_lot_ttl_s * 1000, self.s.events_bound, item.route])

    async def after_settle(self, item: UseItem, reply: list[Any], now: Now) -> None:
        st = status(reply)
        if st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"pop_use_settle answered {reply!r}")
        state = str(reply[1])
        if state == "refused":  # the price came back as a fresh lot
            await note_lots(self.scripts.redis, item.user, now.now_ms)
            await self.replies.send(item.user, item.route, error_frame(str(reply[2])))
            return
        if state in ("scheduled", "active"):  # on a re-run too: a crash may have come before
            await self.scripts.redis.zadd(keys.USES_DUE, {f"{item.user} {item.use}": int(reply[3])})
        if st is Status.EXISTS and reply[2]:
            await self.replies.send(item.user, item.route, str(reply[2]))

    async def void(self, item: UseItem, now_ms: int) -> str:
        """An operator gives up: a use paid but not settled is refunded (as the lots it
        came from) after its windows are taken away and its hash given back, so nothing is
        charged and nothing boosted; one settled before stays as it is."""
        now = await self.prepare(now_ms)
        stored = await self.scripts.redis.hget(keys.user(item.user).card_uses, item.use)
        if stored is None:
            return "nothing_moved"
        if orjson.loads(stored)["st"] != "paid":
            # settled, or refunded by a void that crashed before noting its lots: noting
            # them again is harmless
            await note_lots(self.scripts.redis, item.user, now.now_ms)
            return "settled"
        # first what the steps after pop_use may have done (each idempotent), then the refund:
        # a crash in between leaves the use `paid`, so the void can be run again
        undo: list[tuple[str, Call]] = [
            ("boost_set", unboost_call(item.user, item.use, item.content)),
            ("content_claim", claim_call(item.user, item.use, item.content_hash, "release"))]
        if item.live_room:
            undo.append(("boost_set", unboost_call(item.user, item.use, item.live_room)))
        for script, (ks, args) in undo:
            if status(await self.scripts[script](keys=ks, args=args)) not in (Status.APPLIED,
                                                                               Status.EXISTS):
                raise UnknownStatus(f"{script} did not undo {item.user}:{item.use}")
        item.route, item.outcome, item.code = "", "refuse", "settlement_failed"
        call = self.settle_call(item, now)
        await self.scripts["pop_use_settle"](keys=call[0], args=call[1])
        await note_lots(self.scripts.redis, item.user, now.now_ms)
        return "refunded"


@dataclass
class CancelItem:
    user: str
    use: str
    route: str
    done: bool = False
    content: str = ""
    live_room: str = ""
    content_hash: str = ""  # '' for a use recorded before uses kept their hash


class CancelFlow(DayFlow):
    kind = CANCEL

    def __init__(self, scripts: Scripts, settings: Settings, replies: Replies) -> None:
        super().__init__(scripts, settings, replies)
        self.steps: tuple[Step, ...] = (
            Step("pop_cancel", self.mark_call, self.after_mark),
            Step("boost_set", self.remove_call, self.after_remove),
            Step("boost_set", self.remove_room_call, self.after_remove),
            Step("content_claim", self.release_call, self.after_release),
            Step("pop_cancel", self.refund_call, self.after_refund),
        )

    def decode(self, env: Envelope, f: dict[str, str]) -> CancelItem:
        return CancelItem(env.user, f["use"], env.route)

    def _call(self, item: CancelItem, step: str, now: Now) -> Call:
        return (user_keys(item.user),
                [item.use, step, now.now_ms, self.s.points_lot_ttl_s * 1000, self.s.events_bound,
                 item.route])

    def mark_call(self, item: CancelItem, now: Now) -> Call:
        return self._call(item, "mark", now)

    async def after_mark(self, item: CancelItem, reply: list[Any], now: Now) -> None:
        st = status(reply)
        if st is Status.REJECTED:
            await self.replies.send(item.user, item.route, error_frame(str(reply[1])))
            item.done = True
        elif st is Status.EXISTS and reply[2]:  # cancelled before: the stored answer
            # a re-run after a crash between the refund and its note: the refund's lot is
            # noted for the sweep here (noting twice is harmless)
            await note_lots(self.scripts.redis, item.user, now.now_ms)
            await self.replies.send(item.user, item.route, str(reply[2]))
            item.done = True
        elif st is Status.APPLIED or st is Status.EXISTS:
            item.content, item.live_room, item.content_hash = (str(reply[1]), str(reply[3]),
                                                               str(reply[4]))
        else:
            raise UnknownStatus(f"pop_cancel answered {reply!r}")

    def remove_call(self, item: CancelItem, _now: Now) -> Call:
        return unboost_call(item.user, item.use, item.content)

    def remove_room_call(self, item: CancelItem, _now: Now) -> Call | None:
        return unboost_call(item.user, item.use, item.live_room) if item.live_room else None

    async def after_remove(self, item: CancelItem, reply: list[Any], _now: Now) -> None:
        if status(reply) not in (Status.APPLIED, Status.EXISTS):
            raise UnknownStatus(f"boost_set answered {reply!r}")

    def release_call(self, item: CancelItem, _now: Now) -> Call | None:
        if not item.content_hash:
            return None
        return claim_call(item.user, item.use, item.content_hash, "release")

    async def after_release(self, item: CancelItem, reply: list[Any], _now: Now) -> None:
        if status(reply) not in (Status.APPLIED, Status.EXISTS):
            raise UnknownStatus(f"content_claim answered {reply!r}")

    def refund_call(self, item: CancelItem, now: Now) -> Call:
        return self._call(item, "refund", now)

    async def after_refund(self, item: CancelItem, reply: list[Any], now: Now) -> None:
        if status(reply) not in (Status.APPLIED, Status.EXISTS):
            raise UnknownStatus(f"pop_cancel answered {reply!r}")
        await self.scripts.redis.zrem(keys.USES_DUE, f"{item.user} {item.use}")
        await note_lots(self.scripts.redis, item.user, now.now_ms)  # the refund's lot

    async def void(self, item: CancelItem, now_ms: int) -> str:
        now = await self.prepare(now_ms)
        item.route = ""
        for step in self.steps:
            if item.done:
                break
            call = step.call(item, now)
            if call is not None:
                await step.after(item, await self.scripts[step.script](keys=call[0], args=call[1]),
                                 now)
        return "settled"


def schedule(scripts: Scripts, s: Settings) -> Any:
    """The periodic job: uses whose start or end came move on (each event once)."""

    async def run(now_ms: int) -> int:
        redis = scripts.redis
        due = await redis.zrangebyscore(keys.USES_DUE, "-inf", now_ms, start=0, num=TICK_BATCH)
        if not due:
            return 0
        calls: list[Call] = []
        for entry in due:
            user, _, use = entry.partition(" ")
            calls.append((user_keys(user), [use, now_ms, s.events_bound]))
        replies = await run_calls(redis, s.redis_cluster, scripts["pop_use_tick"], calls)
        later: dict[str, int] = {}
        done: list[str] = []
        for entry, reply in zip(due, replies, strict=True):
            if isinstance(reply, Exception):
                log.error("use %s did not move on: %r", entry, reply)
            elif reply[1] == "active" or status(reply) is Status.NOT_DUE:
                later[entry] = int(reply[2])
            else:
                done.append(entry)
        if later:
            await redis.zadd(keys.USES_DUE, later)
        if done:
            await redis.zrem(keys.USES_DUE, *done)
        return len(due)

    return run
