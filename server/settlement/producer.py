"""The gateway's side of the settlement stream: XADDs made in one event-loop tick
go to Redis as one pipeline (at most `batch_max` per round trip), so a burst of
gift.send frames costs one round trip, not one each."""

from __future__ import annotations

import asyncio
from typing import Any

from server.store.pipeline import execute, pipeline

Pending = tuple[str, dict[str, Any], "asyncio.Future[None]"]


class StreamProducer:
    def __init__(self, redis: Any, batch_max: int) -> None:
        self.redis = redis
        self.batch_max = batch_max
        self._pending: list[Pending] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # round trips made, for metrics and tests

    async def add(self, stream: str, fields: dict[str, Any]) -> None:
        """Append an entry; returns once Redis has it (raises what the XADD raised)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((stream, fields, fut))
        if len(self._pending) >= self.batch_max:
            self._flush_now()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush_now)  # after the frames already read this tick
        await fut

    def _flush_now(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: list[Pending]) -> None:
        pipe = pipeline(self.redis)
        for stream, fields, _ in batch:
            pipe.xadd(stream, fields)
        self.batches += 1
        try:
            # one refused XADD fails its own request only, not the others of the batch
            results = await execute(pipe, raise_on_error=False)
        except BaseException as exc:  # the connection: which ones landed is unknown
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(None)
