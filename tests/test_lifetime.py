"""Periodic tasks stop when cancelled, even when a library swallows the cancellation."""

from __future__ import annotations

import asyncio

from server.lifetime import stop_if_cancelled


async def test_a_loop_stops_on_a_cancellation_a_library_swallowed() -> None:
    """A loop whose awaited call swallows the CancelledError still ends at its next turn."""
    # As redis-py's pipeline was seen to; the loop ran on and held up a shutdown.
    turns = 0

    async def swallowing_call() -> None:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass  # the library's bug: the cancellation is lost here

    async def periodic() -> None:
        nonlocal turns
        while True:
            turns += 1
            await swallowing_call()
            stop_if_cancelled()

    task = asyncio.create_task(periodic())
    await asyncio.sleep(0.01)  # inside swallowing_call
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done and task.cancelled()
    assert turns == 1  # it stopped at the end of the turn the cancellation landed in
