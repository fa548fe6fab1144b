"""Poison entries: settlement entries that keep failing are set aside, not retried forever.

An entry whose step fails stays unacknowledged and is re-run after `claim_idle_ms`;
its failures are counted beside the stream. An entry that failed
`settle_attempts_max` times, or was handed out that many times without being
acknowledged (its worker died each time), or cannot be parsed at all, moves to the
partition's dead-letter stream with its error, atomically (`lua/dead_letter.lua`).
The request's connection, if it still waits, is told `settlement_failed`.

An operator lists them (`giftwire audit`, the admin API), and retries one (it goes
back to its stream: every step is idempotent) or voids it (a gift still in escrow is
refunded to the sender through the normal recipient and sender steps).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from protocol.errors import ERRORS
from protocol.messages import encode
from server.config import Settings
from server.gifting import rules
from server.gifting.service import GiftService, SendRequest, Today
from server.metrics import DEAD_LETTERED
from server.settlement.entries import entry_route, parse_entry
from server.store import keys

log = logging.getLogger("giftwire.worker")

Entry = tuple[str, str, dict[str, str]]  # (stream, id, fields)


class DeadLetterError(Exception):
    """An operator's request names no dead letter, or one that cannot be voided."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class DeadLetters:
    def __init__(self, redis: Any, service: GiftService, settings: Settings) -> None:
        self.redis = redis
        self.service = service
        self.s = settings
        self.partition = {keys.settle_stream(p): p for p in range(settings.partitions)}

    # -- the worker's side ------------------------------------------------------
    async def record(self, entries: list[Entry], failed: dict[str, tuple[str, bool]]) -> None:
        """Count a failed attempt of each entry; bury those out of attempts."""
        for entry in entries:
            stream, eid, _ = entry
            error, final = failed[eid]
            fails = keys.settle_failures(self.partition[stream])
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(fails, eid, 1)
            pipe.hset(fails, f"{eid}:error", error[:1000])
            attempts = int((await pipe.execute())[0])
            if final or attempts >= self.s.settle_attempts_max:
                await self.bury(entry, error, attempts)
            else:
                log.warning("entry %s failed (attempt %d of %d), retried after %d ms: %s", eid,
                            attempts, self.s.settle_attempts_max, self.s.claim_idle_ms, error)

    async def over_delivered(self, stream: str, items: list[Entry]) -> list[Entry]:
        """Of entries just claimed, bury those handed out more than `settle_attempts_max`
        times (each worker that took them died or lost Redis); return the rest."""
        if not items:
            return items
        pipe = self.redis.pipeline(transaction=False)
        for _, eid, _ in items:
            pipe.xpending_range(stream, keys.SETTLE_GROUP, min=eid, max=eid, count=1)
        times = {p["message_id"]: int(p["times_delivered"])
                 for found in await pipe.execute() for p in found}
        keep: list[Entry] = []
        for entry in items:
            n = times.get(entry[1], 0)
            if n > self.s.settle_attempts_max:
                fails = keys.settle_failures(self.partition[stream])
                last = await self.redis.hget(fails, f"{entry[1]}:error")
                await self.bury(entry, last or f"delivered {n} times, never acknowledged", n)
            else:
                keep.append(entry)
        return keep

    async def bury(self, entry: Entry, error: str, attempts: int) -> None:
        stream, eid, fields = entry
        p = self.partition[stream]
        dead_id = await self.service.scripts.dead_letter(
            keys=[stream, keys.dead_letters(p), keys.settle_failures(p)],
            args=[keys.SETTLE_GROUP, eid, error[:1000], attempts, int(time.time() * 1000),
                  orjson.dumps(fields).decode(), self.s.dead_letters_max])
        if not dead_id:
            return  # another worker finished it or buried it first
        DEAD_LETTERED.inc(partition=str(p))
        log.error("entry %s dead-lettered as %s after %d attempt(s): %s", eid, dead_id, attempts,
                  error, extra={"transfer_id": _transfer_id(fields)})
        try:
            route = entry_route(fields)
        except ValueError:
            return
        e = ERRORS["settlement_failed"]
        await self.service.reply(fields.get("u", ""), route, encode(
            "error", code=e.code, message=e.message, temporary=e.temporary).decode())

    # -- the operator's side ----------------------------------------------------
    async def list(self, limit: int) -> list[dict[str, Any]]:
        """The oldest dead letters of every partition, at most `limit` in all."""
        out: list[dict[str, Any]] = []
        for p in range(self.s.partitions):
            if len(out) >= limit:
                break
            for dead_id, f in await self.redis.xrange(keys.dead_letters(p), count=limit - len(out)):
                out.append({"partition": p, "id": dead_id, "entry": f["entry"],
                            "error": f["error"], "attempts": int(f["attempts"]),
                            "at_ms": int(f["at"]), "fields": orjson.loads(f["fields"])})
        return out

    async def count(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for p in range(self.s.partitions):
            pipe.xlen(keys.dead_letters(p))
        return sum(await pipe.execute())

    async def _take(self, partition: int, dead_id: str) -> dict[str, str]:
        if not 0 <= partition < self.s.partitions:
            raise DeadLetterError("not_found", f"no partition {partition}")
        found = await self.redis.xrange(keys.dead_letters(partition), min=dead_id, max=dead_id)
        if not found:
            raise DeadLetterError("not_found", f"no dead letter {dead_id} in partition {partition}")
        fields: dict[str, str] = orjson.loads(found[0][1]["fields"])
        return fields

    async def retry(self, partition: int, dead_id: str) -> dict[str, Any]:
        """Put the entry back on its stream (its steps are idempotent); its request's
        connection no longer waits, so nobody is answered twice."""
        fields = await self._take(partition, dead_id)
        entry_id = await self.redis.xadd(keys.settle_stream(partition), fields)
        await self.redis.xdel(keys.dead_letters(partition), dead_id)
        return {"retried": dead_id, "entry": entry_id}

    async def void(self, partition: int, dead_id: str, now_ms: int) -> dict[str, Any]:
        """Give up on the entry. A gift still in escrow ends as `operator_voided` on the
        recipient's side unless that side already decided, and the sender's step refunds or
        posts accordingly; an offer action is simply dropped (the offer stays open and times
        out as usual)."""
        fields = await self._take(partition, dead_id)
        try:
            parsed = parse_entry(fields)
        except (ValueError, KeyError):
            parsed = None
        outcome = "dropped"
        if isinstance(parsed, SendRequest):
            outcome = await self._void_send(parsed, now_ms)
        await self.redis.xdel(keys.dead_letters(partition), dead_id)
        return {"voided": dead_id, "outcome": outcome}

    async def _void_send(self, req: SendRequest, now_ms: int) -> str:
        stored = await self.redis.hget(keys.user(req.sender).transfers, req.tid)
        if stored is None:
            return "nothing_moved"
        rec: dict[str, Any] = orjson.loads(stored)
        if rec["st"] != "escrowed":
            return str(rec["st"])  # already settled one way or the other
        svc = self.service
        tz = rules.parse_timezone(self.s.timezone)
        today = Today(now_ms, rules.day_key(rules.local_day(now_ms, tz)), False)
        k, a = svc.credit_call(req.sender, req.tid, rec, today, void=True)
        outcome, detail = await svc.scripts.recv_credit(keys=k, args=a)
        await svc.after_credit(rec["to"], req.tid, outcome, detail)
        k, a = svc.finalize_call(req.sender, req.tid, outcome, detail, rec["day"], today)
        status, event_json, mentor = await svc.scripts.send_finalize(keys=k, args=a)
        await svc.after_finalize(req.sender, req.tid, outcome, status, event_json, mentor, today, "")
        return "refunded" if outcome == "rejected" else str(outcome)


def _transfer_id(fields: dict[str, str]) -> str:
    if "t" in fields:
        return fields["t"]
    return f"{fields.get('u', '')}:{fields.get('g', '')}"
