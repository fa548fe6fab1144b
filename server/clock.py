"""The one source of time for rules: gateways, workers and (through ARGV) scripts.

It is the system clock, plus an offset that only a deployment started with
`GIFTWIRE_TEST_CLOCK=1` may move forward (`POST /admin/v1/clock`), for every
process sharing the Redis at once: days, 48-hour expiries, 24-hour refunds and
10-minute timeouts are tested without sleeping. The offset lives in Redis; each
process re-reads it every `CLOCK_POLL_MS`, and an advance returns only after
that, so every process has moved when the caller goes on. Time only moves
forward. Timeouts of the transport (handshakes, pings, rate limits) stay on the
monotonic clock: they are not rules. Token expiry is a rule: after moving the clock past
a token's lifetime, mint tokens whose lifetime covers the advance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from server.lifetime import stop_if_cancelled
from server.store import keys

log = logging.getLogger("giftwire")
CLOCK_POLL_MS = 50  # how stale another process's view of a moved clock can be
ADVANCE_MAX_MS = 400 * 86_400_000  # one call moves at most this far (a year and some)


class ClockLocked(Exception):
    """The clock was asked to move, but this deployment did not enable a test clock."""


class Clock:
    def __init__(self, redis: Any = None, movable: bool = False) -> None:
        self.redis = redis
        self.movable = movable and redis is not None
        self.offset_ms = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    async def sync(self) -> None:
        """Read the shared offset now (the start of a process)."""
        if self.movable:
            self.offset_ms = int(await self.redis.get(keys.CLOCK_OFFSET) or 0)

    async def follow(self) -> None:
        """Keep the offset current; runs as a task in a movable-clock deployment only."""
        while self.movable:
            try:
                await self.sync()
            except Exception:  # Redis is away: keep the last offset
                log.warning("test clock: offset not readable; keeping %d ms", self.offset_ms)
            stop_if_cancelled()
            await asyncio.sleep(CLOCK_POLL_MS / 1000)

    async def advance(self, ms: int) -> int:
        """Move every process's clock forward by `ms`; returns the new time (ms)."""
        if not self.movable:
            raise ClockLocked("the clock can only be moved with GIFTWIRE_TEST_CLOCK=1")
        if not 0 < ms <= ADVANCE_MAX_MS:
            raise ValueError(f"advance_ms must be in [1, {ADVANCE_MAX_MS}]")
        self.offset_ms = int(await self.redis.incrby(keys.CLOCK_OFFSET, ms))
        await asyncio.sleep(2 * CLOCK_POLL_MS / 1000)  # every follower has read it
        return self.now_ms()
