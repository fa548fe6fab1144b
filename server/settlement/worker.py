"""The settlement worker: read, claim, per-user rounds, acknowledge, back off. It
knows no domain: each entry's kind names a flow (`server.settlement.flows`), and
periodic jobs (offer timeouts, later expiries and refunds) come from their registry.

Entries left pending by a dead worker are claimed after `claim_idle_ms` and re-run
from the start (every step is idempotent). An entry that keeps failing is set aside
(`server.settlement.dead_letters`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any

from redis.exceptions import RedisError, ResponseError

from server.clock import Clock
from server.config import Settings
from server.metrics import CLAIMED, SETTLE_SECONDS, STALLED
from server.settlement import entries as codec
from server.settlement.dead_letters import DeadLetters
from server.settlement.flows import Flows, Item, Job, Periodic, run_steps
from server.settlement.leases import Leases
from server.settlement.replies import Replies
from server.store import keys
from server.store.pipeline import Round, execute, pipeline
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.worker")

Entry = tuple[str, str, dict[str, str]]  # (stream, id, fields)
# (stream, entry id) → (error, final: no retry helps); an entry is named by both: two
# partitions' streams give out the same ids (`<ms>-<n>`, from one clock)
EntryKey = tuple[str, str]
Failed = dict[EntryKey, tuple[str, bool]]
RETRY_MAX_S = 2.0  # longest wait between attempts while Redis is down
APART_STOP_S = 10.0  # a stopping worker waits this long for a job apart to finish its run


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


class LeasesLapsing(Exception):
    """What a stall is said to be while Redis does not answer the lease keeper."""


def _reason(exc: BaseException) -> str:
    """An exception in words, never empty (a bare TimeoutError says nothing by itself)."""
    return str(exc) or type(exc).__name__


class _Stall:
    """How long settlement has failed without a batch applied in between: a blip (a slot
    move's redirections, a failover) is a warning; past `alert_s` it is an error, said again
    every `alert_s`, and the stalled gauge shows how long."""

    def __init__(self, alert_s: float) -> None:
        self.alert_s = alert_s
        self.since: float | None = None
        self.said: float | None = None  # when it was last said as an error

    def failed(self, exc: BaseException, in_hand: bool = True) -> bool:
        """Count one failed attempt (`in_hand`: of entries being settled, else of Redis not
        answering with nothing in hand); True when it was said as an error here."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        stalled = now - self.since
        STALLED.set(round(stalled, 3))
        if stalled < self.alert_s or (self.said is not None and now - self.said < self.alert_s):
            return False
        self.said = now
        if in_hand:
            log.error("settlement stalled for %.0f s: the entries in hand keep failing (%s); "
                      "nothing after them in their partitions settles until they do", stalled,
                      _reason(exc))
        else:
            log.error("settlement stalled for %.0f s: Redis does not answer (%s); nothing "
                      "settles until it does", stalled, _reason(exc))
        return True

    def ended(self) -> None:
        if self.since is not None:
            if self.said is not None:
                log.warning("settlement resumed after %.0f s", time.monotonic() - self.since)
            self.since, self.said = None, None
            STALLED.set(0)


class Worker:
    def __init__(self, redis: Any, scripts: Scripts, flows: Flows, periodic: Periodic,
                 settings: Settings, clock: Clock, rounds: Any = None) -> None:
        self.redis = redis
        # the batch's own round trips (read, steps, replies, acks), each bounded as a whole
        self.rounds = redis if rounds is None else rounds
        self.scripts = scripts
        self.flows = flows
        self.periodic = periodic
        self.s = settings
        self.clock = clock
        self.name = consumer_name()
        self.streams = [keys.settle_stream(p) for p in range(settings.partitions)]
        self.partition = {stream: p for p, stream in enumerate(self.streams)}
        self._claimed: set[EntryKey] = set()  # taken over this run, not yet acknowledged
        # applied batches (with the failure marks read for them), acknowledged with the next read
        self._acks: list[tuple[list[Entry], dict[str, str]]] = []
        self.dead = DeadLetters(redis, scripts, Replies(redis, settings.redis_cluster), flows,
                                settings, clock)
        self._stopping = asyncio.Event()
        self._next_run_ms = {job.name: 0 for job in periodic.jobs}
        self._next_claim_ms = 0
        self._turn = 0  # the partition a cluster worker blocks on next
        self.leases = Leases(redis, scripts, settings, self.name)
        self.applied = 0

    def stop(self) -> None:
        """Finish the batch in hand, acknowledge it, then return from `run`."""
        self._stopping.set()

    async def run(self, burst: bool = False) -> None:
        """Serve until stopped; in burst mode return once nothing is left to do (in the
        partitions this worker could hold)."""
        await ensure_groups(self.redis, self.s.partitions)
        await self.leases.tend()
        log.info("worker %s holds partition(s) %s of %d (%d worker(s) live)", self.name,
                 sorted(self.leases.owned), len(self.streams), self.leases.live)
        if burst and not self.leases.owned:
            log.warning("worker %s: every partition is held by a live worker; nothing to do",
                        self.name)
        done = asyncio.Event()
        keeper = asyncio.create_task(self.leases.keep(done))
        apart = [] if burst or not self.s.apart_jobs else self._start_apart()
        try:
            await self._loop(burst)
        finally:
            done.set()
            await asyncio.gather(keeper, return_exceptions=True)
            try:
                await self._flush_acks()  # the last batch's, if the loop ended before a read
                # then at once, not after the jobs apart: the next owner need not wait for
                # the leases to lapse
                await self.leases.leave()
            except Exception as exc:  # (Redis away: re-run by the next owner, once they lapse)
                log.warning("last acknowledgements or partition leases not sent (%r): the "
                            "leases lapse in %d ms", exc, self.leases.lease_ms)
            await self._stop_apart(apart)

    async def _loop(self, burst: bool) -> None:
        backoff_s = 0.0
        stall = _Stall(self.s.settle_stall_alert_s)
        while not self._stopping.is_set():
            settling = True  # entries may be in hand (a periodic job's failure is not that)
            try:
                if self.leases.leaving:  # beyond this worker's share: hand them on
                    await self._flush_acks()
                    await self.leases.release(set(self.leases.leaving))
                claimed, caught_up = await self._takeover()
                claimed += await self._claim()
                # what was claimed is applied now, not after a read's wait
                read, marked = await self._read(block=not burst and not claimed)
                # (a take-over and a claim may both hand out one entry: applied once)
                entries = list({(e[0], e[1]): e for e in claimed + read}.values())
                if entries:
                    await self.apply(entries, marked=marked or bool(claimed))
                self.leases.taken -= caught_up  # their pending entries are applied: read on
                settling = False
                if self.leases.lapsing():  # Redis away: nothing in hand, nothing settles
                    stall.failed(LeasesLapsing("the partition leases are not being renewed"),
                                 in_hand=False)
                else:
                    stall.ended()
                handled = await self._periodic(burst)
                backoff_s = 0.0
            except (RedisError, OSError) as exc:
                # unacknowledged entries stay pending and are re-run once Redis is back,
                # before anything newer (so each user's order holds)
                if settling:
                    self.leases.rerun_pending()
                backoff_s = min(RETRY_MAX_S, max(0.05, backoff_s * 2))
                # (a periodic job's failure counts too while the leases lapse: Redis is away)
                if not ((settling or self.leases.lapsing()) and stall.failed(exc, settling)):
                    log.warning("redis unavailable (%s); retrying in %.2fs", _reason(exc),
                                backoff_s)
                await asyncio.sleep(backoff_s)
                continue
            except Exception as exc:
                # never die silently: what was not acknowledged is re-run (every step is
                # idempotent) before anything newer, by this worker or the next owner
                if settling:
                    self.leases.rerun_pending()
                    stall.failed(exc)
                backoff_s = min(RETRY_MAX_S, max(0.05, backoff_s * 2))
                log.exception("settlement loop failed; retrying in %.2fs", backoff_s)
                await asyncio.sleep(backoff_s)
                continue
            if burst and not entries and not handled and not caught_up and not self.leases.taken:
                return

    async def run_jobs(self) -> None:
        """`giftwire jobs`: only the jobs marked apart, until stopped."""
        tasks = self._start_apart()
        try:
            await self._stopping.wait()
        finally:
            await self._stop_apart(tasks)

    def _start_apart(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._apart(job)) for job in self.periodic.jobs if job.apart]

    async def _stop_apart(self, tasks: list[asyncio.Task[None]]) -> None:
        """A job in the middle of a run finishes it (the risk engine acknowledges the batch
        in hand); one that does not within `APART_STOP_S` is cancelled."""
        if not tasks:
            return
        self._stopping.set()  # (the loop may have ended by an exception)
        _, late = await asyncio.wait(tasks, timeout=APART_STOP_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _apart(self, job: Job) -> None:
        """A job on its own task: every `every_ms`, whatever settlement is doing."""
        backoff_s = 0.0
        while not self._stopping.is_set():
            try:
                await job.run(self.clock.now_ms())
                backoff_s = 0.0
            except Exception:  # the job's own failure; settlement goes on
                backoff_s = min(RETRY_MAX_S, max(0.05, backoff_s * 2))
                log.exception("periodic job %s failed; again in %.2fs", job.name, backoff_s)
            try:  # the pause, cut short by a stop (never the run itself)
                await asyncio.wait_for(self._stopping.wait(), max(backoff_s, job.every_ms / 1000))
            except TimeoutError:
                pass

    async def _periodic(self, burst: bool) -> int:
        """Run the jobs that are due (in the loop: all but those apart, unless in burst
        mode); how many items they handled."""
        handled = 0
        for job in self.periodic.jobs:
            if job.apart and (not burst or not self.s.apart_jobs):
                continue
            now = self.clock.now_ms()
            if now >= self._next_run_ms[job.name]:
                self._next_run_ms[job.name] = now + job.every_ms
                handled += await job.run(now)
        return handled

    async def _read(self, block: bool) -> tuple[list[Entry], bool]:
        """New entries, and whether a partition may hold a failed entry's mark (if not, no
        user of theirs waits for a retry). On one server the previous batch's acknowledgements
        and the marks' check ride in the read's round trip: the commands queued after a
        blocking XREADGROUP run once it returns, so the check sees what it read."""
        parts = self.leases.readable()
        if not parts:  # all held by other workers (or being taken over): wait a little
            await self._flush_acks()
            if block:
                await asyncio.sleep(self.s.worker_block_ms / 1000)
            return [], False
        streams = [self.streams[p] for p in parts]
        if self.s.redis_cluster:  # a pipeline spans slots there: each in its own call
            await self._flush_acks()
            if len(streams) > 1:
                return await self._read_each(streams, block), True
            reply = await self.redis.xreadgroup(
                keys.SETTLE_GROUP, self.name, dict.fromkeys(streams, ">"),
                count=self.s.worker_batch_max, block=self.s.worker_block_ms if block else None)
            return [(stream, eid, fields) for stream, items in reply or []
                    for eid, fields in items], True
        pipe = Round(self.rounds)
        acks = self._queue_acks(pipe)
        pipe.xreadgroup(keys.SETTLE_GROUP, self.name, dict.fromkeys(streams, ">"),
                        count=self.s.worker_batch_max,
                        block=self.s.worker_block_ms if block else None)
        for p in parts:  # a failed entry waits, or a dead letter's resend may come
            pipe.exists(keys.settle_failures(p), keys.settle_dead_marks(p))
        out = await execute(pipe, block_ms=self.s.worker_block_ms if block else 0)
        self._acked()
        reply, marks = out[acks], out[acks + 1:]
        return ([(stream, eid, fields) for stream, items in reply or [] for eid, fields in items],
                any(marks))

    async def _read_each(self, streams: list[str], block: bool) -> list[Entry]:
        """On a cluster the partitions live in different slots, so one XREADGROUP cannot name
        them all: read each without blocking, and when all are empty block briefly on one of
        them in turn (bounded: `worker_block_ms` over a round of partitions)."""
        out: list[Entry] = []
        for stream in streams:
            reply = await self.redis.xreadgroup(keys.SETTLE_GROUP, self.name, {stream: ">"},
                                                count=self.s.worker_batch_max)
            out.extend((stream, eid, fields) for _, items in reply or [] for eid, fields in items)
        if out or not block:
            return out
        self._turn = (self._turn + 1) % len(streams)
        stream = streams[self._turn]
        reply = await self.redis.xreadgroup(
            keys.SETTLE_GROUP, self.name, {stream: ">"}, count=self.s.worker_batch_max,
            block=max(1, self.s.worker_block_ms // len(streams)))
        return [(stream, eid, fields) for _, items in reply or [] for eid, fields in items]

    async def _claim(self) -> list[Entry]:
        """Take over entries another worker left pending; looked for a few times per idle period."""
        now = self.clock.now_ms()
        if now < self._next_claim_ms:
            return []
        self._next_claim_ms = now + max(1, self.s.claim_idle_ms // 4)
        out: list[Entry] = []
        for p in self.leases.claimable():
            out.extend((await self._autoclaim(self.streams[p], self.s.claim_idle_ms, "0-0"))[1])
        if out:
            CLAIMED.inc(len(out))
            log.warning("took over %d entries pending for %d ms (a dead worker's, or failed ones "
                        "to run again)", len(out), self.s.claim_idle_ms)
        return out

    async def _autoclaim(self, stream: str, idle_ms: int, start: str) -> tuple[str, list[Entry]]:
        """One XAUTOCLAIM of up to a batch of `stream`'s pending entries idle `idle_ms`, from
        `start`: the cursor to go on from ("0-0": done) and the entries kept (an entry handed
        out too often is dead-lettered instead)."""
        cursor, items, _ = await self.redis.xautoclaim(
            stream, keys.SETTLE_GROUP, self.name, idle_ms, start_id=start,
            count=self.s.worker_batch_max)
        claimed = [(stream, eid, fields) for eid, fields in items if fields]
        kept = await self.dead.over_delivered(stream, claimed)
        self._claimed.update((stream, eid) for _, eid, _ in kept)
        return str(cursor), kept

    async def _takeover(self) -> tuple[list[Entry], set[int]]:
        """The pending entries of partitions just taken (a dead or stalled owner's, of any
        age) or whose batch failed half-way, up to a batch a call; and the partitions whose
        pending entries have all been handed out. A partition is read for new entries only
        once those are applied, so its users' order holds."""
        out: list[Entry] = []
        caught_up: set[int] = set()
        leases = self.leases
        for p in sorted(leases.taken & set(leases.claimable())):
            cursor, kept = await self._autoclaim(self.streams[p], 0, leases.cursor.get(p, "0-0"))
            out.extend(kept)
            if cursor == "0-0":
                leases.cursor.pop(p, None)
                if kept:
                    caught_up.add(p)  # read on once these are applied
                else:
                    leases.taken.discard(p)  # nothing was pending: read on at once
            else:
                leases.cursor[p] = cursor
        if out:
            CLAIMED.inc(len(out))
            log.warning("took over %d entries left pending; re-run before anything newer", len(out))
        return out, caught_up

    async def apply(self, entries: list[Entry], marked: bool = True) -> None:
        """Apply a batch in rounds holding at most one entry per acting user (so each user's
        requests keep their order); in a round each flow runs its steps across its entries,
        one pipelined round trip per step. An entry whose step fails stays unacknowledged
        (re-run after `claim_idle_ms`) until `settle_attempts_max`, then it is dead-lettered.
        `marked` False: no failed entry's mark exists (checked as the batch was read). The
        batch is acknowledged with the next read (or when the worker stops)."""
        started = time.perf_counter()
        now = self.clock.now_ms()
        failed: Failed = {}
        deferred: set[EntryKey] = set()  # later entries of a user whose entry failed: pending
        # users with an entry that failed and waits for its retry (in an earlier batch, perhaps
        # on another worker): their newer entries wait too, so each user's order holds
        blocked = await self.dead.blocked_users(entries) if marked else {}
        marks = dict(blocked)  # as read: a mark is cleared on ack only if it names that entry
        # a request sent again while its first entry waits for an operator: answered, not run
        dead = await self.dead.dead_requests(entries) if marked else {}
        if dead:
            await self.dead.answer_dead(entries, dead)
        stuck: set[str] = set()  # users whose entry failed in this batch
        prepared: dict[str, Any] = {}  # flow kind → what its calls share in this batch
        for round_ in rounds(entries):
            by_kind: dict[str, list[tuple[EntryKey, Item]]] = {}
            for stream, eid, fields in round_:
                user = fields.get("user", "")
                if (stream, eid) in dead:
                    continue  # answered above; acknowledged with the batch
                if user in stuck or blocked.get(user, eid) != eid:
                    # keep the user's order: this waits for the failed one, and comes back with
                    # it (XAUTOCLAIM hands out in id order)
                    deferred.add((stream, eid))
                    continue
                try:
                    env = codec.decode(fields)
                    item = self.flows.get(env.kind).decode(env, fields)
                except (KeyError, ValueError) as exc:
                    failed[stream, eid] = (f"malformed entry: {exc!r}", True)
                    continue
                by_kind.setdefault(env.kind, []).append(((stream, eid), item))
            await asyncio.gather(*(self._run_flow(kind, pairs, now, prepared, failed)
                                   for kind, pairs in by_kind.items()))
            stuck.update(f.get("user", "") for st, eid, f in round_ if (st, eid) in failed)
            for st, eid, fields in round_:  # the held-up entry went through: the rest may follow
                key = (st, eid)
                if key not in failed and key not in deferred and blocked.get(fields.get("user", "")) == eid:
                    del blocked[fields["user"]]
        done = [e for e in entries if (e[0], e[1]) not in failed and (e[0], e[1]) not in deferred]
        if done:
            self._acks.append((done, marks))
        if failed:
            await self.dead.record([e for e in entries if (e[0], e[1]) in failed], failed)
        self._claimed.difference_update(failed, deferred)  # claimed again if they come back
        # acknowledged = applied; the failed and the deferred stay pending
        assert len(done) + len(failed) + len(deferred) == len(entries)
        self.applied += len(done)
        # real time, not the platform's clock: a stream id starts with the (real) ms it was
        # appended at, and a moved test clock would make every settlement take hours
        now_ms = time.time() * 1000
        for _, eid, _ in done:
            SETTLE_SECONDS.observe(max(0, now_ms - int(eid.partition("-")[0])) / 1000)
        log.debug("applied %d entries in %.2f ms", len(done), (time.perf_counter() - started) * 1000)

    async def _run_flow(self, kind: str, pairs: list[tuple[EntryKey, Item]], now: int,
                        prepared: dict[str, Any], failed: Failed) -> None:
        flow = self.flows.get(kind)
        if kind not in prepared:
            prepared[kind] = await flow.prepare(now)
        errors = await run_steps(flow, [item for _, item in pairs], prepared[kind], self.rounds,
                                 self.scripts, self.s.redis_cluster)
        for i, error in errors.items():
            failed[pairs[i][0]] = (error, False)

    def _queue_acks(self, pipe: Any) -> int:
        """Queue the acknowledgements of the batches applied since the last read; how many
        commands that queued."""
        queued = 0
        for entries, marks in self._acks:
            for stream, eid, fields in entries:
                pipe.xack(stream, keys.SETTLE_GROUP, eid)
                pipe.xdel(stream, eid)
                queued += 2
                if (stream, eid) in self._claimed:  # it may have failed before: forget its count
                    pipe.hdel(keys.settle_failures(self.partition[stream]), eid, f"{eid}:error")
                    queued += 1
                user = fields.get("user", "")
                if marks.get(user) == eid:  # its user's later entries may go on
                    pipe.hdel(keys.settle_failures(self.partition[stream]), f"user:{user}")
                    queued += 1
        return queued

    async def _flush_acks(self) -> None:
        if not self._acks:
            return
        pipe = pipeline(self.rounds)
        self._queue_acks(pipe)
        await execute(pipe)
        self._acked()

    def _acked(self) -> None:
        """The queued acknowledgements reached Redis (until then they are sent again with
        each attempt: acknowledging twice changes nothing)."""
        for entries, _ in self._acks:
            self._claimed.difference_update((stream, eid) for stream, eid, _ in entries)
        self._acks.clear()


def rounds(entries: list[Entry]) -> list[list[Entry]]:
    """Split a batch so no round holds two entries of the same acting user, keeping order."""
    out: list[list[Entry]] = []
    depth: dict[str, int] = {}
    for entry in entries:
        actor = entry[2].get("user", "")
        i = depth.get(actor, 0)
        depth[actor] = i + 1
        if i == len(out):
            out.append([])
        out[i].append(entry)
    return out
