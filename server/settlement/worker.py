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
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError, ResponseError

from server.config import Settings
from server.gifting import rules
from server.gifting.service import GiftService, SendRequest, Today
from server.store import keys

log = logging.getLogger("giftwire.worker")

Entry = tuple[str, str, dict[str, str]]  # (stream, id, fields)
RETRY_MAX_S = 2.0  # longest wait between attempts while Redis is down


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
        self.applied = 0

    def stop(self) -> None:
        """Finish the batch in hand, acknowledge it, then return from `run`."""
        self._stopping.set()

    async def today(self) -> Today:
        now = self.clock_ms()
        day = rules.day_key(rules.local_day(now, self.tz))
        festival = bool(await self.redis.sismember(keys.FESTIVALS, day))
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
            if burst and not entries and not swept:
                return

    async def _read(self, block: bool) -> list[Entry]:
        reply = await self.redis.xreadgroup(
            keys.SETTLE_GROUP, self.name, dict.fromkeys(self.streams, ">"),
            count=self.s.worker_batch_max, block=self.s.worker_block_ms if block else None,
        )
        return [(stream, eid, fields) for stream, items in reply or [] for eid, fields in items]

    async def _claim(self) -> list[Entry]:
        out: list[Entry] = []
        for stream in self.streams:
            _, items, _ = await self.redis.xautoclaim(
                stream, keys.SETTLE_GROUP, self.name, self.s.claim_idle_ms,
                start_id="0-0", count=self.s.worker_batch_max,
            )
            out.extend((stream, eid, fields) for eid, fields in items if fields)
        return out

    async def _sweep(self) -> int:
        now = self.clock_ms()
        if now < self._next_sweep_ms:
            return 0
        self._next_sweep_ms = now + self.s.sweep_interval_ms
        return await self.service.sweep(await self.today())

    async def apply(self, entries: list[Entry]) -> None:
        """Apply a batch: one actor's entries in order, different actors concurrently."""
        today = await self.today()
        by_actor: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_actor[entry[2].get("u", "")].append(entry)
        await asyncio.gather(*(self._apply_in_order(group, today) for group in by_actor.values()))
        pipe = self.redis.pipeline(transaction=False)
        for stream, eid, _ in entries:
            pipe.xack(stream, keys.SETTLE_GROUP, eid)
            pipe.xdel(stream, eid)
        await pipe.execute()
        self.applied += len(entries)

    async def _apply_in_order(self, group: list[Entry], today: Today) -> None:
        for _, eid, fields in group:
            try:
                await self._apply_one(fields, today)
            except (ValueError, KeyError) as exc:
                # a malformed entry is dropped (and logged), never retried forever
                log.error("dropping malformed entry %s: %r (%s)", eid, fields, exc)

    async def _apply_one(self, f: dict[str, str], today: Today) -> None:
        kind = f["k"]
        if kind == "send":
            req = SendRequest(sender=f["u"], gift_id=f["g"], to=f["to"], asset=f["a"],
                              count=int(f["n"]), room=f.get("rm", ""), conn=f.get("c", ""))
            await self.service.send(req, today)
        elif kind in ("accept", "decline"):
            await self.service.resolve_offer(f["u"], f["t"], kind, today, f.get("c", ""))
        else:
            raise ValueError(f"unknown entry kind {kind!r}")
