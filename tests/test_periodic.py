"""Periodic jobs in a real worker on a real Valkey: a job marked `apart` runs on its own
task, so a slow one (the risk engine judging a big batch) never holds up the settlement
loop or the jobs that run in it; a stop lets its run in hand finish."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from server.app import connect
from server.clock import Clock
from server.config import Settings
from server.settlement.flows import Flows, Periodic
from server.settlement.worker import Worker
from server.store.embedded import EmbeddedValkey
from server.store.scripts import Scripts


async def test_a_slow_apart_job_does_not_hold_up_the_loop(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """While an apart job's run is held, a 50 ms job in the loop keeps running; the stop waits for it."""
    # The apart run is held until the test lets it go. The stop waits for the apart run in hand (not cancelled
    # half-way) and starts no other.
    vk = fresh_valkey()
    redis = connect(vk.url)
    s = Settings(redis_url=vk.url, worker_block_ms=20)
    runs: dict[str, int] = {"slow": 0, "slow_done": 0, "quick": 0, "quick_before": 0}
    release = asyncio.Event()

    async def slow(now_ms: int) -> int:
        runs["slow"] += 1
        runs["quick_before"] = runs["quick"]
        await release.wait()
        runs["slow_done"] += 1
        return 0

    async def quick(now_ms: int) -> int:
        runs["quick"] += 1
        return 0

    periodic = Periodic()
    periodic.add("slow", slow, every_ms=50, apart=True)
    periodic.add("quick", quick, every_ms=50)
    scripts = Scripts(redis)
    scripts.load("server.settlement")  # the worker's own (leases, dead letters)
    worker = Worker(redis, scripts, Flows(), periodic, s, Clock(redis, False))
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(500):  # bounded: 10 s; inline behind the held job, quick would stop
            if runs["slow"] and runs["quick"] >= runs["quick_before"] + 5:
                break
            await asyncio.sleep(0.02)
        assert (runs["slow"], runs["slow_done"]) == (1, 0)  # still in its first run
        assert runs["quick"] >= runs["quick_before"] + 5  # the loop kept going meanwhile
        worker.stop()
        await asyncio.sleep(0.2)
        assert not task.done()  # the stop waits for the run in hand
    finally:
        release.set()
        worker.stop()
        await asyncio.wait_for(task, 5)
        await redis.aclose()
    assert runs["slow"] == runs["slow_done"] == 1
