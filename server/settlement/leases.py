"""Partition leases: each settlement partition is read by one worker at a time, so one
user's requests (all in that user's partition) settle in the order they were sent however
many workers run, and the partitions are shared out evenly among the live workers.

A worker beats every third of `partition_lease_ms` (`lua/worker_beat.lua`), renews the
leases it holds and takes free partitions up to its share, ceil(partitions / live workers)
(`lua/partition_lease.lua`). It gives a partition beyond its share back only between
batches, after acknowledging what it applied, so the next owner starts where it stopped.
A worker that dies keeps its leases until they lapse; the next owner re-runs the dead
worker's pending entries before it reads new ones (every step is idempotent), so order
holds across a takeover too. A worker that stops releases its leases at once.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any

from server.config import Settings
from server.lifetime import stop_if_cancelled
from server.store import keys
from server.store.outcomes import Status, status
from server.store.pipeline import run_calls
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.worker")

BEATS_PER_LEASE = 3  # a lease survives two lost renewals


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
        # newly taken: a previous owner's pending entries are re-run before new ones are read
        self.taken: set[int] = set()
        self.live = 1  # workers counted at the last beat
        # where this worker starts looking for a free partition: workers starting together
        # do not all race for partition 0
        self._first = zlib.crc32(name.encode()) % self.partitions

    def readable(self) -> list[int]:
        """The partitions to read new entries from now."""
        return sorted(self.owned - self.leaving - self.taken)

    def share(self) -> int:
        return -(-self.partitions // max(1, self.live))

    async def tend(self) -> None:
        """Beat; renew the leases held (one lost to another worker is dropped); take free
        partitions up to this worker's share; mark those beyond it as leaving."""
        beat = await self.scripts["worker_beat"](
            keys=[keys.SETTLE_WORKERS], args=[self.name, self.lease_ms, "beat"])
        self.live = max(1, int(beat[1]))
        share = self.share()
        held = sorted(self.owned)
        wanted: list[int] = []
        if len(self.owned) < share:
            rotation = [(self._first + i) % self.partitions for i in range(self.partitions)]
            wanted = [p for p in rotation if p not in self.owned]
        replies = await self._call([*held, *wanted], "hold")
        got: list[int] = []
        for p, reply in zip([*held, *wanted], replies, strict=True):
            st = status(reply)
            if p in self.owned and st is Status.CONFLICT:  # it lapsed (this worker stalled)
                log.warning("partition %d: lease lost to %s", p, reply[1])
                self.owned.discard(p)
                self.leaving.discard(p)
                self.taken.discard(p)
            elif p not in self.owned and st is Status.APPLIED:
                got.append(p)
        keep = max(0, share - len(self.owned))
        extra = got[keep:]  # taken together beyond the share (a pipeline cannot stop half-way)
        if extra:
            await self._call(extra, "release")
        for p in got[:keep]:
            log.info("partition %d: lease taken by %s", p, self.name)
            self.owned.add(p)
            self.taken.add(p)
        if len(self.owned) > share:
            rotation = [(self._first + i) % self.partitions for i in range(self.partitions)]
            mine = [p for p in rotation if p in self.owned]
            self.leaving.update(mine[share:])
        else:
            self.leaving.clear()

    async def release(self, partitions: set[int]) -> None:
        """Give these back (their batches are acknowledged): another worker may take them."""
        if not partitions:
            return
        await self._call(sorted(partitions), "release")
        for p in partitions:
            log.info("partition %d: lease released by %s", p, self.name)
        self.owned -= partitions
        self.leaving -= partitions
        self.taken -= partitions

    async def leave(self) -> None:
        """On stop: release every lease and leave the live workers."""
        await self.release(set(self.owned))
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

    async def _call(self, partitions: list[int], mode: str) -> list[Any]:
        calls = [([keys.settle_owner(p)], [self.name, self.lease_ms, mode]) for p in partitions]
        replies = await run_calls(self.redis, self.s.redis_cluster,
                                  self.scripts["partition_lease"], calls)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
