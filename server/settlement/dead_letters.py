"""Poison entries: settlement entries that keep failing are set aside, not retried forever.

An entry whose step fails stays unacknowledged and is re-run after `claim_idle_ms`;
its failures are counted beside the stream. An entry that failed
`settle_attempts_max` times, or was handed out `settle_deliveries_max` times without
being acknowledged (its worker died each time), or cannot be parsed at all, moves to the
partition's dead-letter stream with its error, atomically (`lua/dead_letter.lua`).
The request's connection, if it still waits, is told `settlement_failed`.

An operator lists them (`giftwire audit`, the admin API), and retries one (it goes
back to its stream: every step is idempotent) or voids it (a gift still in escrow is
refunded to the sender through the normal recipient and sender steps).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from protocol.errors import ERRORS
from protocol.messages import encode
from server.clock import Clock
from server.config import Settings
from server.metrics import DEAD_LETTERED
from server.settlement import entries as codec
from server.settlement.flows import Flows
from server.settlement.replies import Replies
from server.store import keys
from server.store.outcomes import Status, status
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.worker")

Entry = tuple[str, str, dict[str, str]]  # (stream, id, fields)
ERROR_MAX_CHARS = 1000  # of an error kept with a dead letter
CLAIM_MS = 60_000  # an operator's retry or void holds its dead letter at most this long
ROUTING = ("conn", "request")  # an entry's fields that name where its reply goes, not what it asks
REQUEST_DIGEST_CHARS = 20  # of a request's key: 80 bits, no two requests of a user alike


class DeadLetterError(Exception):
    """An operator's request names no dead letter."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class DeadLetters:
    def __init__(self, redis: Any, scripts: Scripts, replies: Replies, flows: Flows,
                 settings: Settings, clock: Clock) -> None:
        self.redis = redis
        self.scripts = scripts
        self.replies = replies
        self.flows = flows
        self.s = settings
        self.clock = clock
        self.partition = {keys.settle_stream(p): p for p in range(settings.partitions)}

    # -- the worker's side ------------------------------------------------------
    async def blocked_users(self, entries: list[Entry]) -> dict[str, str]:
        """user → the id of their entry that failed and waits for a retry, for the users of
        `entries` (one round trip; the failures hash sits in each partition's slot)."""
        by_stream: dict[str, list[str]] = {}
        for stream, _, fields in entries:
            by_stream.setdefault(stream, []).append(fields.get("user", ""))
        pipe = self.redis.pipeline(transaction=False)
        for stream, users in by_stream.items():
            pipe.hmget(keys.settle_failures(self.partition[stream]), [f"user:{u}" for u in users])
        out: dict[str, tuple[str, str]] = {}  # user → (stream, marked entry)
        for (stream, users), found in zip(by_stream.items(), await pipe.execute(), strict=True):
            out.update((u, (stream, eid)) for u, eid in zip(users, found, strict=True) if eid)
        if not out:
            return {}
        # a mark whose entry is no longer pending (applied by another worker after this one
        # gave up on a slow batch, or buried) would hold its user back for ever: drop it
        batch = {eid for _, eid, _ in entries}
        outside = [(u, s, e) for u, (s, e) in out.items() if e not in batch]
        if outside:
            pipe = self.redis.pipeline(transaction=False)
            for _, stream, eid in outside:
                pipe.xpending_range(stream, keys.SETTLE_GROUP, min=eid, max=eid, count=1)
            for (user, stream, _), pending in zip(outside, await pipe.execute(), strict=True):
                if not pending:
                    del out[user]
                    await self.redis.hdel(keys.settle_failures(self.partition[stream]), f"user:{user}")
        return {u: eid for u, (_, eid) in out.items()}

    async def dead_requests(self, entries: list[Entry]) -> dict[tuple[str, str], str]:
        """(stream, id) → dead letter, for entries that send again a request whose entry is a
        dead letter still waiting for an operator (one round trip; a mark whose dead letter
        was trimmed since is dropped)."""
        asked = [(stream, eid, key) for stream, eid, fields in entries
                 if (key := self.request_key(fields))]
        if not asked:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for stream, _, key in asked:
            pipe.hget(keys.settle_dead_marks(self.partition[stream]), key)
        out: dict[tuple[str, str], str] = {}
        for (stream, eid, key), dead_id in zip(asked, await pipe.execute(), strict=True):
            if not dead_id:
                continue
            p = self.partition[stream]
            if await self.redis.xrange(keys.dead_letters(p), min=dead_id, max=dead_id):
                out[stream, eid] = dead_id
            else:  # gone by another way than retry, void or trim: run it again
                await self.redis.hdel(keys.settle_dead_marks(p), key)
        return out

    async def answer_dead(self, entries: list[Entry], dead: dict[tuple[str, str], str]) -> None:
        """Each request sent again while its first entry is a dead letter: `settlement_failed`
        again (the error says an operator decides), nothing run."""
        e = ERRORS["settlement_failed"]
        frame = encode("error", code=e.code, message=e.message, temporary=e.temporary).decode()
        for stream, eid, fields in entries:
            if (stream, eid) in dead:
                log.warning("entry %s sends again the request of dead letter %s: answered "
                            "settlement_failed", eid, dead[stream, eid], extra=self._named(fields))
                try:
                    env = codec.decode(fields)
                except (KeyError, ValueError):
                    continue
                await self.replies.send(env.user, env.route, frame)

    def request_key(self, fields: dict[str, str]) -> str:
        """`<kind>:<user>:<digest>`: what makes an entry the same request as another, of any
        kind: its fields but the connection and request number, which a resend changes, or
        what its item names as its identity (`request_key`: a card use's start, when none
        was asked, is the time it was sent)."""
        try:
            env = codec.decode(fields)
            own = getattr(self.flows.get(env.kind).decode(env, fields), "request_key", None)
        except Exception:  # unreadable: its fields are all it is
            own = None
        payload: Any = own if isinstance(own, str) else sorted(
            (k, v) for k, v in fields.items() if k not in ROUTING)
        digest = hashlib.sha1(orjson.dumps(payload)).hexdigest()[:REQUEST_DIGEST_CHARS]
        return f"{fields.get('kind', '')}:{fields.get('user', '')}:{digest}"

    async def record(self, entries: list[Entry],
                     failed: dict[tuple[str, str], tuple[str, bool]]) -> None:
        """Count a failed attempt of each entry (`failed` by stream and id); bury those out of
        attempts."""
        for entry in entries:
            stream, eid, fields = entry
            error, final = failed[stream, eid]
            fails = keys.settle_failures(self.partition[stream])
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(fails, eid, 1)
            pipe.hset(fails, f"{eid}:error", error[:ERROR_MAX_CHARS])
            # the user's newer entries wait for this one (the oldest failed one holds the place;
            # a mark that outlives its entry is dropped by `blocked_users`)
            pipe.hsetnx(fails, f"user:{fields.get('user', '')}", eid)
            attempts = int((await pipe.execute())[0])
            if final or attempts >= self.s.settle_attempts_max:
                await self.bury(entry, error, attempts)
            else:
                log.warning("entry %s failed (attempt %d of %d), retried after %d ms: %s", eid,
                            attempts, self.s.settle_attempts_max, self.s.claim_idle_ms, error,
                            extra={"transfer_id": self.transfer_id(fields)})

    def _named(self, fields: dict[str, str]) -> dict[str, str]:
        """The log line's `transfer_id`, when the entry's item has one (every kind's way)."""
        tid = self.transfer_id(fields)
        return {"transfer_id": tid} if tid else {}

    def transfer_id(self, fields: dict[str, str]) -> str:
        """The transfer id of an entry's item ('' if it has none or does not parse): a gift's
        or an offer's item knows it (the entry itself carries only the gift id)."""
        try:
            env = codec.decode(fields)
            return str(getattr(self.flows.get(env.kind).decode(env, fields), "tid", ""))
        except Exception:  # a field that does not parse: likely why it failed
            return ""

    async def over_delivered(self, stream: str, items: list[Entry]) -> list[Entry]:
        """Of entries just claimed, bury those handed out more than `settle_deliveries_max`
        times (each worker that took them died on it); return the rest."""
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
            if n > self.s.settle_deliveries_max:
                fails = keys.settle_failures(self.partition[stream])
                last = await self.redis.hget(fails, f"{entry[1]}:error")
                await self.bury(entry, last or f"delivered {n} times, never acknowledged", n)
            else:
                keep.append(entry)
        return keep

    async def bury(self, entry: Entry, error: str, attempts: int) -> None:
        stream, eid, fields = entry
        p = self.partition[stream]
        reply = await self.scripts["dead_letter"](
            keys=[stream, keys.dead_letters(p), keys.settle_failures(p), keys.settle_dead_marks(p)],
            args=[keys.SETTLE_GROUP, eid, orjson.dumps(fields).decode(), error[:ERROR_MAX_CHARS],
                  attempts, self.clock.now_ms(), self.s.dead_letters_max, fields.get("user", ""),
                  self.request_key(fields)])
        if status(reply) is not Status.APPLIED:
            return  # another worker finished it or buried it first
        DEAD_LETTERED.inc(partition=str(p))
        log.error("entry %s dead-lettered as %s after %d attempt(s): %s", eid, reply[1], attempts,
                  error, extra={"transfer_id": self.transfer_id(fields)})
        try:
            env = codec.decode(fields)
        except (KeyError, ValueError):
            return  # unreadable: nobody to tell
        e = ERRORS["settlement_failed"]
        await self.replies.send(env.user, env.route, encode(
            "error", code=e.code, message=e.message, temporary=e.temporary).decode())

    # -- the operator's side ----------------------------------------------------
    async def list(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The oldest dead letters of every partition (at most `limit` in all) and how many
        there are; each partition's page and count are read together (one slot, MULTI), so
        the two agree."""
        out: list[dict[str, Any]] = []
        total = 0
        for p in range(self.s.partitions):
            pipe = self.redis.pipeline(transaction=True)
            pipe.xlen(keys.dead_letters(p))
            pipe.xrange(keys.dead_letters(p), count=max(1, limit - len(out)))
            length, page = await pipe.execute()
            total += int(length)
            for dead_id, f in page[:max(0, limit - len(out))]:
                out.append({"partition": p, "id": dead_id, "entry": f["entry"],
                            "error": f["error"], "attempts": int(f["attempts"]),
                            "at_ms": int(f["at"]), "fields": orjson.loads(f["fields"])})
        return out, total

    async def _take(self, partition: int, dead_id: str) -> dict[str, str]:
        if not 0 <= partition < self.s.partitions:
            raise DeadLetterError("not_found", f"no partition {partition}")
        found = await self.redis.xrange(keys.dead_letters(partition), min=dead_id, max=dead_id)
        if not found:
            raise DeadLetterError("not_found", f"no dead letter {dead_id} in partition {partition}")
        fields: dict[str, str] = orjson.loads(found[0][1]["fields"])
        return fields

    async def _unmark(self, partition: int, fields: dict[str, str]) -> None:
        """The request may run again: a retry runs it, and after a void its steps answer
        from what the void recorded."""
        await self.redis.hdel(keys.settle_dead_marks(partition), self.request_key(fields))

    @contextlib.asynccontextmanager
    async def _claimed(self, partition: int, dead_id: str) -> AsyncIterator[dict[str, str]]:
        """One operator's action at a time on a dead letter: a retry and a void (or two of
        either) racing each other would both act. The claim lapses by itself after
        CLAIM_MS (the dead letter is gone by then: another action finds nothing); one that
        failed is let go at once, so it can be tried again."""
        await self._take(partition, dead_id)  # (not there: 404 before any claim)
        claim = keys.dead_letter_claim(partition, dead_id)
        if not await self.redis.set(claim, "1", nx=True, px=CLAIM_MS):
            raise DeadLetterError("dead_letter_busy", f"another retry or void of dead letter "
                                                      f"{dead_id} is running; look again shortly")
        try:
            yield await self._take(partition, dead_id)  # (done by the one before: 404)
        except BaseException:
            await self.redis.delete(claim)
            raise

    async def retry(self, partition: int, dead_id: str) -> dict[str, Any]:
        """Put the entry back on its stream (its steps are idempotent); its request's
        connection no longer waits, so nobody is answered twice."""
        async with self._claimed(partition, dead_id) as fields:
            return await self._retry(partition, dead_id, fields)

    async def _retry(self, partition: int, dead_id: str, fields: dict[str, str]) -> dict[str, Any]:
        await self._unmark(partition, fields)
        entry_id = await self.redis.xadd(keys.settle_stream(partition), fields)
        await self.redis.xdel(keys.dead_letters(partition), dead_id)
        # an operator's hand on money in flight: on the record, with what it names
        log.warning("dead letter %s of partition %d retried by an operator as entry %s",
                    dead_id, partition, entry_id, extra=self._named(fields))
        return {"retried": dead_id, "entry": entry_id}

    async def void(self, partition: int, dead_id: str) -> dict[str, Any]:
        """Give up on the entry: its flow undoes what can be undone (a gift still in escrow is
        refunded through its normal steps) and says what it did."""
        async with self._claimed(partition, dead_id) as fields:
            return await self._void(partition, dead_id, fields)

    async def _void(self, partition: int, dead_id: str, fields: dict[str, str]) -> dict[str, Any]:
        try:
            env = codec.decode(fields)
            flow = self.flows.get(env.kind)
            item = flow.decode(env, fields)
        except (KeyError, ValueError):
            outcome = "dropped"  # unreadable: nothing it names can have moved
        else:
            outcome = await flow.void(item, self.clock.now_ms())
        await self._unmark(partition, fields)
        await self.redis.xdel(keys.dead_letters(partition), dead_id)
        log.warning("dead letter %s of partition %d voided by an operator: %s", dead_id,
                    partition, outcome, extra=self._named(fields))
        return {"voided": dead_id, "outcome": outcome}
