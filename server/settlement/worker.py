"""The settlement worker: reads gift requests from the stream partitions with a
consumer group, applies them through `GiftService`, acknowledges, and times out
offers. Entries left pending by a dead worker are claimed after
`claim_idle_ms` and re-run from the start (every step is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.config import Settings
from server.gifting import rules
from server.gifting.service import Call, GiftService, SendRequest, Today
from server.metrics import CLAIMED, REJECTED, SETTLE_SECONDS, SETTLED
from server.settlement.dead_letters import DeadLetters
from server.settlement.entries import parse_entry
from server.store import keys

log = logging.getLogger("giftwire.worker")

Entry = tuple[str, str, dict[str, str]]  # (stream, id, fields)
RETRY_MAX_S = 2.0  # longest wait between attempts while Redis is down
FESTIVAL_CACHE_MS = 1000  # a calendar change reaches the workers within a second
# errors that say nothing about the transfer, only about the connection: retry the batch
# (and, on a cluster, redirections redis-py gave up on while a slot moves: MOVED/ASK/TRYAGAIN)
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError, AskError, TryAgainError,
             ClusterDownError)


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def ensure_groups(redis: Any, partitions: int) -> None:
    for p in range(partitions):
        try:
            await redis.xgroup_create(keys.settle_stream(p), keys.SETTLE_GROUP, id="0",
                                      mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


class Worker:
    def __init__(self, redis: Any, service: GiftService, settings: Settings,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.redis = redis
        self.service = service
        self.s = settings
        self.tz = rules.parse_timezone(settings.timezone)
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.name = consumer_name()
        self.streams = [keys.settle_stream(p) for p in range(settings.partitions)]
        self._stopping = asyncio.Event()
        self._next_sweep_ms = 0
        self._next_claim_ms = 0
        self._turn = 0  # the partition a cluster worker blocks on next
        self._festival: tuple[str, int, bool] = ("", 0, False)  # (day, checked at ms, answer)
        self.applied = 0
        self.dead = DeadLetters(redis, service, settings)

    def stop(self) -> None:
        """Finish the batch in hand, acknowledge it, then return from `run`."""
        self._stopping.set()

    async def today(self) -> Today:
        """The clock for a batch; the festival calendar is re-read at most once a second."""
        now = self.clock_ms()
        day = rules.day_key(rules.local_day(now, self.tz))
        cached_day, checked_ms, festival = self._festival
        if day != cached_day or now - checked_ms >= FESTIVAL_CACHE_MS:
            festival = bool(await self.redis.sismember(keys.FESTIVALS, day))
            self._festival = (day, now, festival)
        return Today(now, day, festival)

    async def run(self, burst: bool = False) -> None:
        """Serve until stopped; in burst mode return once nothing is left to do."""
        await ensure_groups(self.redis, self.s.partitions)
        log.info("worker %s reading %d partition(s)", self.name, len(self.streams))
        backoff_s = 0.0
        while not self._stopping.is_set():
            try:
                entries = await self._claim() + await self._read(block=not burst)
                if entries:
                    await self.apply(entries)
                swept = await self._sweep()
                backoff_s = 0.0
            except (RedisError, OSError) as exc:
                # unacknowledged entries stay pending and are re-run once Redis is back
                backoff_s = min(RETRY_MAX_S, max(0.05, backoff_s * 2))
                log.warning("redis unavailable (%s); retrying in %.2fs", exc, backoff_s)
                await asyncio.sleep(backoff_s)
                continue
            except Exception:
                # never die silently: what was not acknowledged is re-run (every step is
                # idempotent), by this worker or, after claim_idle_ms, by another
                backoff_s = min(RETRY_MAX_S, max(0.05, backoff_s * 2))
                log.exception("settlement loop failed; retrying in %.2fs", backoff_s)
                await asyncio.sleep(backoff_s)
                continue
            if burst and not entries and not swept:
                return

    async def _read(self, block: bool) -> list[Entry]:
        if self.s.redis_cluster and len(self.streams) > 1:
            return await self._read_each(block)
        reply = await self.redis.xreadgroup(
            keys.SETTLE_GROUP, self.name, dict.fromkeys(self.streams, ">"),
            count=self.s.worker_batch_max, block=self.s.worker_block_ms if block else None,
        )
        return [(stream, eid, fields) for stream, items in reply or [] for eid, fields in items]

    async def _read_each(self, block: bool) -> list[Entry]:
        """On a cluster the partitions live in different slots, so one XREADGROUP cannot name
        them all: read each without blocking, and when all are empty block briefly on one of
        them in turn (bounded: `worker_block_ms` over a round of partitions)."""
        out: list[Entry] = []
        for stream in self.streams:
            reply = await self.redis.xreadgroup(keys.SETTLE_GROUP, self.name, {stream: ">"},
                                                count=self.s.worker_batch_max)
            out.extend((stream, eid, fields) for _, items in reply or [] for eid, fields in items)
        if out or not block:
            return out
        self._turn = (self._turn + 1) % len(self.streams)
        stream = self.streams[self._turn]
        reply = await self.redis.xreadgroup(
            keys.SETTLE_GROUP, self.name, {stream: ">"}, count=self.s.worker_batch_max,
            block=max(1, self.s.worker_block_ms // len(self.streams)))
        return [(stream, eid, fields) for _, items in reply or [] for eid, fields in items]

    async def _claim(self) -> list[Entry]:
        """Take over entries another worker left pending; looked for a few times per idle period."""
        now = self.clock_ms()
        if now < self._next_claim_ms:
            return []
        self._next_claim_ms = now + max(1, self.s.claim_idle_ms // 4)
        out: list[Entry] = []
        for stream in self.streams:
            _, items, _ = await self.redis.xautoclaim(
                stream, keys.SETTLE_GROUP, self.name, self.s.claim_idle_ms,
                start_id="0-0", count=self.s.worker_batch_max,
            )
            claimed = [(stream, eid, fields) for eid, fields in items if fields]
            out.extend(await self.dead.over_delivered(stream, claimed))
        if out:
            CLAIMED.inc(len(out))
            log.warning("took over %d entries left pending by another worker", len(out))
        return out

    async def _sweep(self) -> int:
        now = self.clock_ms()
        if now < self._next_sweep_ms:
            return 0
        self._next_sweep_ms = now + self.s.sweep_interval_ms
        return await self.service.sweep(await self.today())

    async def apply(self, entries: list[Entry]) -> None:
        """Apply a batch in rounds holding at most one entry per acting user (so each user's
        requests keep their order); the sends of a round go through the three steps as three
        pipelined round trips. An entry whose step fails stays unacknowledged (it is re-run
        after `claim_idle_ms`) until `settle_attempts_max`, then it is dead-lettered."""
        started = time.perf_counter()
        today = await self.today()
        failed: dict[str, tuple[str, bool]] = {}  # entry id → (error, final: no retry helps)
        for round_ in rounds(entries):
            sends: list[tuple[str, SendRequest]] = []
            actions = []
            for _, eid, fields in round_:
                try:
                    parsed = parse_entry(fields)
                except (ValueError, KeyError) as exc:
                    failed[eid] = (f"malformed entry: {exc!r}", True)
                    continue
                if isinstance(parsed, SendRequest):
                    sends.append((eid, parsed))
                else:
                    recipient, tid, action, route = parsed
                    actions.append(self._guarded(eid, failed, self.service.resolve_offer(
                        recipient, tid, action, today, route)))
            await asyncio.gather(self._sends(sends, today, failed), *actions)
        done = [e for e in entries if e[1] not in failed]
        await self._ack(done)
        if failed:
            await self.dead.record([e for e in entries if e[1] in failed], failed)
        self.applied += len(done)
        now_ms = self.clock_ms()
        for _, eid, _ in done:  # a stream id starts with the ms it was appended at
            SETTLE_SECONDS.observe(max(0, now_ms - int(eid.partition("-")[0])) / 1000)
        log.debug("applied %d entries in %.2f ms", len(done), (time.perf_counter() - started) * 1000)

    async def _sends(self, sends: list[tuple[str, SendRequest]], today: Today,
                     failed: dict[str, tuple[str, bool]]) -> None:
        errors = await self.pipelined_sends([req for _, req in sends], today)
        for i, error in errors.items():
            failed[sends[i][0]] = (error, False)

    async def _guarded(self, eid: str, failed: dict[str, tuple[str, bool]],
                       step: Awaitable[Any]) -> None:
        """Run one entry's steps; a broken step fails that entry, not the batch."""
        try:
            await step
        except TRANSIENT:
            raise
        except Exception as exc:  # a script error, an unknown outcome: a broken invariant
            log.error("entry %s failed: %r", eid, exc)
            failed[eid] = (repr(exc), False)

    async def _ack(self, entries: list[Entry]) -> None:
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        for stream, eid, _ in entries:
            pipe.xack(stream, keys.SETTLE_GROUP, eid)
            pipe.xdel(stream, eid)
        await pipe.execute()

    async def pipelined_sends(self, reqs: list[SendRequest], today: Today) -> dict[int, str]:
        """Step 1 for all, then step 2 for those that went on, then step 3. Returns the
        requests (by index) whose step failed, with the error."""
        svc, sc = self.service, self.service.scripts
        failed: dict[int, str] = {}

        def ok(i: int, step: str, res: Any) -> bool:
            if isinstance(res, Exception):
                log.error("%s %s failed: %s", step, reqs[i].tid, res,
                          extra={"transfer_id": reqs[i].tid})
                failed[i] = f"{step}: {res}"
                return False
            return True

        debits = await self._pipeline(sc.send_debit, [svc.debit_call(r, today) for r in reqs])
        going: list[tuple[int, dict[str, Any]]] = []
        for i, res in enumerate(debits):
            if not ok(i, "send_debit", res):
                continue
            status, payload = res
            if status == "rejected":
                REJECTED.inc(reason=orjson.loads(payload)["code"])
            rec = await svc.after_debit(reqs[i], status, payload)
            if rec is not None:
                going.append((i, rec))
        credits = await self._pipeline(sc.recv_credit, [self._credit_call(reqs[i], rec, today)
                                                        for i, rec in going])
        finals: list[tuple[int, str, Call]] = []
        for (i, rec), res in zip(going, credits, strict=True):
            if not ok(i, "recv_credit", res):
                continue
            outcome, detail = res
            if outcome == "rejected":
                REJECTED.inc(reason=detail)
            req = reqs[i]
            await svc.after_credit(rec["to"], req.tid, outcome, detail)
            finals.append((i, outcome, svc.finalize_call(req.sender, req.tid, outcome, detail,
                                                         rec["day"], today, req.route)))
        results = await self._pipeline(sc.send_finalize, [call for _, _, call in finals])
        for (i, outcome, _), res in zip(finals, results, strict=True):
            if not ok(i, "send_finalize", res):
                continue
            status, event_json, mentor = res
            if status == "applied":
                SETTLED.inc(outcome=outcome)
            await svc.after_finalize(reqs[i].sender, reqs[i].tid, outcome, status, event_json,
                                     mentor, today, reqs[i].route)
        return failed

    def _credit_call(self, req: SendRequest, rec: dict[str, Any], today: Today) -> Call:
        k, a = self.service.credit_call(req.sender, req.tid, rec, today)
        if self.s.fault == "poison_credit" and req.gift_id.startswith("poison"):
            a[3] = "not-a-number"  # fault injection: the recipient's step fails every time
        return k, a

    async def _pipeline(self, script: Any, calls: list[Call]) -> list[Any]:
        if not calls:
            return []
        if self.s.redis_cluster:
            # redis-py refuses scripts in a cluster pipeline: concurrent calls instead, each
            # routed to its slot's node (and each loads its script on NOSCRIPT)
            return raise_transient(list(await asyncio.gather(
                *(script(keys=k, args=a) for k, a in calls), return_exceptions=True)))
        pipe = self.redis.pipeline(transaction=False)
        for k, a in calls:
            await script(keys=k, args=a, client=pipe)  # queues; redis-py awaits a pipeline
        results = list(await pipe.execute(raise_on_error=False))
        # a cluster pipeline does not load scripts first: a node that lacks one (new, or
        # restarted) answers NOSCRIPT, and the plain call loads it and runs it once
        for i, res in enumerate(results):
            if isinstance(res, NoScriptError):
                k, a = calls[i]
                try:
                    results[i] = await script(keys=k, args=a)
                except RedisError as exc:
                    results[i] = exc
        return raise_transient(results)


def raise_transient(results: list[Any]) -> list[Any]:
    """A connection lost mid-batch says nothing about the transfers: raise, so the batch stays
    unacknowledged and is re-run (every step is idempotent) instead of stranding cards in
    escrow. A script's own error is returned, logged by the caller, and skipped."""
    for res in results:
        if isinstance(res, TRANSIENT):
            raise res
    return results


def rounds(entries: list[Entry]) -> list[list[Entry]]:
    """Split a batch so no round holds two entries of the same acting user, keeping order."""
    out: list[list[Entry]] = []
    depth: dict[str, int] = {}
    for entry in entries:
        actor = entry[2].get("u", "")
        i = depth.get(actor, 0)
        depth[actor] = i + 1
        if i == len(out):
            out.append([])
        out[i].append(entry)
    return out
