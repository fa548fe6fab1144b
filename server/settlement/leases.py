"""Partition leases: each settlement partition is read by one worker at a time, so one
user's requests (all in that user's partition) settle in the order they were sent however
many workers run, and the partitions are shared out evenly among the live workers.

A worker beats every third of `partition_lease_ms` (`lua/worker_beat.lua`), renews the
leases it holds and takes free partitions up to its share, ceil(partitions / live workers)
(`lua/partition_lease.lua`). It gives a partition beyond its share back only between
batches, after acknowledging what it applied, so the next owner starts where it stopped.
A worker that dies keeps its leases until they lapse; the next owner re-runs the dead
worker's pending entries before it reads new ones (every step is idempotent), so order
holds across a takeover too. A worker that stops releases its leases at once. A worker
that could not renew a lease for two thirds of it stops reading that partition (it may
have lapsed and passed to another) until a renewal succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import Any

from server.config import Settings
from server.lifetime import stop_if_cancelled
from server.store import keys
from server.store.outcomes import Status, status
from server.store.pipeline import TRANSIENT, run_calls
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.worker")

BEATS_PER_LEASE = 3  # a lease survives two lost renewals
TRUSTED_PART = 2 / 3  # of a lease since the last renewal: after that, stop reading


class Leases:
    def __init__(self, redis: Any, scripts: Scripts, settings: Settings, name: str) -> None:
        self.redis = redis
        self.scripts = scripts
        self.s = settings
        self.name = name
        self.partitions = settings.partitions
        self.lease_ms = settings.partition_lease_ms
        self.owned: set[int] = set()  # partitions whose lease this worker holds
        self.leaving: set[int] = set()  # held until the batch in hand is acknowledged
        # held, but pending entries come first: a previous owner's (a takeover) or this
        # worker's own after a failed batch; `cursor` is where their claiming goes on
        self.taken: set[int] = set()
        self.cursor: dict[int, str] = {}
        self.renewed: dict[int, float] = {}  # partition → monotonic s of its last renewal
        self.live = 1  # workers counted at the last beat
        self._lock = asyncio.Lock()  # the keeper's beat and the loop's releases, one at a time
        # where this worker starts looking for a free partition: workers starting together
        # do not all race for partition 0
        self._first = zlib.crc32(name.encode()) % self.partitions

    def readable(self) -> list[int]:
        """The partitions to read new entries from now: held, not leaving, no pending entries
        to re-run first, and renewed recently enough to be sure they are still held."""
        fresh = time.monotonic() - self.lease_ms / 1000 * TRUSTED_PART
        return sorted(p for p in self.owned - self.leaving - self.taken
                      if self.renewed.get(p, 0.0) >= fresh)

    def claimable(self) -> list[int]:
        """Held, not leaving and recently renewed: where pending entries may be claimed."""
        fresh = time.monotonic() - self.lease_ms / 1000 * TRUSTED_PART
        return sorted(p for p in self.owned - self.leaving if self.renewed.get(p, 0.0) >= fresh)

    def lapsing(self) -> bool:
        """Partitions held, none renewed recently: Redis has not answered the keeper (away,
        or hung), so nothing can be settled here until it does."""
        return bool(self.owned) and not self.claimable()

    def rerun_pending(self) -> None:
        """After a batch failed half-way: every held partition re-runs its pending entries
        (this worker's own among them) before reading new ones, so no user's newer request
        overtakes one left pending."""
        self.taken |= self.owned
        self.cursor.clear()

    def share(self) -> int:
        return -(-self.partitions // max(1, self.live))

    async def tend(self) -> None:
        """Beat; renew the leases held (one lost to another worker is dropped); take free
        partitions up to this worker's share; mark those beyond it as leaving."""
        async with self._lock:
            await self._tend()

    async def _tend(self) -> None:
        beat = await self.scripts["worker_beat"](
            keys=[keys.SETTLE_WORKERS], args=[self.name, self.lease_ms, "beat"])
        self.live = max(1, int(beat[1]))
        share = self.share()
        rotation = [(self._first + i) % self.partitions for i in range(self.partitions)]
        held = [p for p in rotation if p in self.owned]
        wanted = [p for p in rotation if p not in self.owned] if len(held) < share else []
        asked = held + wanted
        now = time.monotonic()
        replies = await self._call(asked, "hold")
        got: list[int] = []
        for p, reply in zip(asked, replies, strict=True):
            if isinstance(reply, Exception):  # (a node away, on a cluster) kept as it was
                continue
            st = status(reply)
            if p in self.owned:
                if st is Status.CONFLICT:  # it lapsed (this worker stalled): another has it
                    log.warning("partition %d: lease lost to %s", p, reply[1])
                    self._forget(p)
                else:
                    self.renewed[p] = now
            elif st is not Status.CONFLICT:
                # applied: taken now; exists: this worker's already (a reply lost on the
                # way, a release that did not land): either way it is held, so it is read
                got.append(p)
        keep = max(0, share - len(self.owned))
        extra = got[keep:]  # taken together beyond the share (a pipeline cannot stop half-way)
        for p in got[:keep]:
            log.info("partition %d: lease taken by %s", p, self.name)
            self.owned.add(p)
            self.taken.add(p)  # whatever is pending there is re-run before anything new
            self.cursor.pop(p, None)
            self.renewed[p] = now
        if extra:
            await self._call(extra, "release")
        if len(self.owned) > share:
            mine = [p for p in rotation if p in self.owned]
            self.leaving = set(mine[share:])
        else:
            self.leaving.clear()

    async def release(self, partitions: set[int]) -> None:
        """Give these back (their batches are acknowledged): another worker may take them."""
        if not partitions:
            return
        async with self._lock:
            await self._call(sorted(partitions), "release")
            for p in sorted(partitions):
                if p in self.owned:  # (`leave` releases every partition, held or not)
                    log.info("partition %d: lease released by %s", p, self.name)
                self._forget(p)

    async def leave(self) -> None:
        """On stop: release every lease (any this worker may hold without knowing it, too:
        the script releases only its own) and leave the live workers."""
        await self.release(set(range(self.partitions)))
        await self.scripts["worker_beat"](
            keys=[keys.SETTLE_WORKERS], args=[self.name, self.lease_ms, "leave"])

    async def keep(self, done: asyncio.Event) -> None:
        """Tend the leases every third of a lease until `done`, whatever the batches do."""
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), self.lease_ms / 1000 / BEATS_PER_LEASE)
                return
            except TimeoutError:
                pass
            stop_if_cancelled()
            try:
                await self.tend()
            except Exception as exc:  # Redis away: leases may lapse; tried again next beat
                log.warning("partition leases not tended (%r)", exc)

    def _forget(self, p: int) -> None:
        self.owned.discard(p)
        self.leaving.discard(p)
        self.taken.discard(p)
        self.cursor.pop(p, None)
        self.renewed.pop(p, None)

    async def _call(self, partitions: list[int], mode: str) -> list[Any]:
        """Each partition's reply, or the exception a call met (a script's own error is
        raised: a broken invariant)."""
        calls = [([keys.settle_owner(p)], [self.name, self.lease_ms, mode]) for p in partitions]
        replies = await run_calls(self.redis, self.s.redis_cluster,
                                  self.scripts["partition_lease"], calls, transient="return")
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, TRANSIENT):
                raise reply
        return replies

