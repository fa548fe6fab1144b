"""Running many calls of one script in one round trip: a pipeline on one server; on a
cluster, concurrent single-slot calls (redis-py refuses scripts in cluster pipelines),
each routed to its slot's node."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import AskError, ClusterDownError, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.store.scripts import Script, is_missing

Call = tuple[list[str], list[Any]]  # KEYS and ARGV of one script call

# A pipelined round trip is bounded as a whole, by this much (plus what a blocking read
# asks for): the hot rounds run on a client whose connections bound no single reply
# (`connect(..., reply_timeouts=False)`), since redis-py's per-reply timeout (an
# `asyncio.timeout` entered for each reply of a pipeline, and a `wait_for` task for each
# write) was a fifth of the settlement worker's CPU. 5 s is redis-py's own per-reply default.
ROUND_S = 5.0


async def execute(pipe: Any, raise_on_error: bool = True, block_ms: int = 0) -> list[Any]:
    """Send a pipeline and read its replies, within `ROUND_S` (+ `block_ms`) altogether: a
    Redis that does not answer is a TimeoutError (transient; redis-py drops the connection
    it was reading)."""
    async with asyncio.timeout(ROUND_S + block_ms / 1000):
        return list(await pipe.execute(raise_on_error=raise_on_error))

# Errors that say nothing about the transfer, only about the connection (and, on a cluster,
# redirections redis-py gave up on while a slot moves): the batch is re-run, never failed.
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError, AskError, TryAgainError,
             ClusterDownError)


async def run_calls(redis: Any, cluster: bool, script: Script, calls: list[Call],
                    transient: str = "raise") -> list[Any]:
    """The replies in call order; a script's own error comes back as the exception (the
    caller fails that one call); a transient error is raised for the whole batch, or, with
    `transient="return"`, returned in place of the calls it hit (on a cluster a node away
    fails only its own calls; on one server a lost connection is raised all the same)."""
    if not calls:
        return []
    if cluster:
        results = list(await asyncio.gather(*(script(keys=k, args=a) for k, a in calls),
                                            return_exceptions=True))
        return results if transient == "return" else raise_transient(results)
    pipe = redis.pipeline(transaction=False)
    for k, a in calls:
        await script(keys=k, args=a, client=pipe)  # queues; redis-py awaits a pipeline
    results = await execute(pipe, raise_on_error=False)
    # a pipeline does not load libraries first: a server that lacks one (new, or emptied)
    # answers "function not found", and the plain call loads it and runs it once
    for i, res in enumerate(results):
        if is_missing(res):
            k, a = calls[i]
            try:
                results[i] = await script(keys=k, args=a)
            except RedisError as exc:
                results[i] = exc
    return results if transient == "return" else raise_transient(results)


def raise_transient(results: list[Any]) -> list[Any]:
    """A connection lost mid-batch says nothing about the transfers: raise, so the batch stays
    unacknowledged and is re-run (every step is idempotent) instead of stranding cards in
    escrow. A script's own error is returned, for the caller to fail that entry."""
    for res in results:
        if isinstance(res, TRANSIENT):
            raise res
    return results
