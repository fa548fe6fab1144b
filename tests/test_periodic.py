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
    """While an apart job sleeps 1.5 s per run, a 50 ms job in the loop keeps its pace; the
    stop waits for the apart run in hand (not cancelled half-way) and starts no other."""
    vk = fresh_valkey()
    redis = connect(vk.url)
    s = Settings(redis_url=vk.url, worker_block_ms=20)
    runs: dict[str, int] = {"slow": 0, "slow_done": 0, "quick": 0}

    async def slow(now_ms: int) -> int:
        runs["slow"] += 1
        await asyncio.sleep(1.5)
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
        await asyncio.sleep(1.0)
        assert runs["slow"] == 1  # still in its first run
        assert runs["quick"] >= 8  # ~20 at 50 ms; inline behind the slow job it would be 1
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)
        await redis.aclose()
    assert runs["slow"] == runs["slow_done"] == 1
