"""Pipelined round trips: many commands in one write, their replies read in order.

On one server a `Round` (below) carries them; on a cluster, redis-py's cluster pipeline, and
script calls run concurrently as single-slot calls (redis-py refuses scripts in cluster
pipelines), each routed to its slot's node (`run_calls`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.store.scripts import Script, is_missing

Call = tuple[list[str], list[Any]]  # KEYS and ARGV of one script call
StreamReply = list[tuple[str, list[tuple[str, dict[str, str]]]]]  # XREAD's, as redis-py shapes it

# A pipelined round trip is bounded as a whole, by this much (plus what a blocking read
# asks for): the hot rounds run on a client whose connections bound no single reply
# (`connect(..., reply_timeouts=False)`), since redis-py's per-reply timeout (an
# `asyncio.timeout` entered for each reply of a pipeline, and a `wait_for` task for each
# write) was a fifth of the settlement worker's CPU. 5 s is redis-py's own per-reply default.
ROUND_S = 5.0


class Round:
    """The commands of one round trip on one server, with the part of redis-py's `Pipeline`
    interface the hot paths use. Why not `Pipeline`: its layers per command (a response
    callback lookup, `parse_response`, option dicts) cost ~4.5 µs of client CPU a command
    here (6.7 µs against 2.2 µs for an HGET in a round of 256); a gift is ~6 pipelined
    commands. Replies are as the connection reads them (decoded, an error reply in its
    command's place), except XREADGROUP's, shaped as redis-py shapes them."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.commands: list[tuple[Any, ...]] = []
        self.shapes: dict[int, Callable[[Any], Any]] = {}  # command index → reply reshaper

    def __len__(self) -> int:
        return len(self.commands)

    def command(self, *args: Any) -> Round:
        self.commands.append(args)
        return self

    def fcall(self, *args: Any) -> Round:
        return self.command("FCALL", *args)

    def xadd(self, stream: str, fields: dict[str, Any]) -> Round:
        return self.command("XADD", stream, "*", *(x for kv in fields.items() for x in kv))

    def xack(self, stream: str, group: str, *ids: str) -> Round:
        return self.command("XACK", stream, group, *ids)

    def xdel(self, stream: str, *ids: str) -> Round:
        return self.command("XDEL", stream, *ids)

    def hdel(self, key: str, *fields: str) -> Round:
        return self.command("HDEL", key, *fields)

    def exists(self, *names: str) -> Round:
        return self.command("EXISTS", *names)

    def publish(self, channel: str, message: str) -> Round:
        return self.command("PUBLISH", channel, message)

    def xreadgroup(self, group: str, consumer: str, streams: dict[str, str], count: int,
                   block: int | None = None) -> Round:
        blocking = () if block is None else ("BLOCK", block)
        self.shapes[len(self.commands)] = stream_reply
        return self.command("XREADGROUP", "GROUP", group, consumer, "COUNT", count, *blocking,
                            "STREAMS", *streams, *streams.values())

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send every command in one write, read every reply; a connection error (or a
        cancellation) drops the connection, since replies may be left unread on it."""
        if not self.commands:
            return []
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        out: list[Any] = []
        try:
            await conn.send_packed_command(conn.pack_commands(self.commands))
            for _ in self.commands:
                try:
                    out.append(await conn.read_response())
                except ResponseError as exc:  # read whole: the next reply follows it
                    out.append(exc)
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)
        for i, shape in self.shapes.items():
            if not isinstance(out[i], Exception):
                out[i] = shape(out[i])
        if raise_on_error:
            for reply in out:
                if isinstance(reply, Exception):
                    raise reply
        return out


def stream_reply(raw: Any) -> StreamReply:
    """XREAD[GROUP]'s reply as redis-py gives it: [(stream, [(id, fields), ...]), ...], from
    RESP2's nested arrays or RESP3's map; a nil reply (nothing new) is []."""
    if not raw:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(stream, [(eid, _fields(flat)) for eid, flat in items]) for stream, items in pairs]


def _fields(flat: Any) -> dict[str, str]:
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}


def pipeline(client: Any) -> Any:
    """A `Round` on one server; redis-py's cluster pipeline on a cluster (no scripts there)."""
    if isinstance(client, RedisCluster):
        return client.pipeline(transaction=False)
    return Round(client)


async def execute(pipe: Any, raise_on_error: bool = True, block_ms: int = 0) -> list[Any]:
    """Send a round (a `Round` or a pipeline) and read its replies, within `ROUND_S`
    (+ `block_ms`) altogether: a Redis that does not answer is a TimeoutError (transient;
    the connection it was reading is dropped)."""
    async with asyncio.timeout(ROUND_S + block_ms / 1000):
        return list(await pipe.execute(raise_on_error=raise_on_error))

# Errors that say nothing about the transfer, only about the connection (and, on a cluster,
# redirections redis-py gave up on while a slot moves): the batch is re-run, never failed.
# ClusterError is also redis-py's "TTL exhausted": the MOVED/ASK/TRYAGAIN redirections of
# one command ran out while a slot's keys were still moving (ClusterDownError is one too)
CLUSTER_MOVING = (AskError, TryAgainError, ClusterError, SlotNotCoveredError)
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError, *CLUSTER_MOVING)
# Storage out of reach for a request or a background loop: any Redis error, redis-py's cluster
# errors (which are no RedisError) and a round's own bound (the built-in TimeoutError)
STORAGE_AWAY = (RedisError, RedisClusterException, TimeoutError)


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
    pipe = Round(redis)
    for k, a in calls:
        await script(keys=k, args=a, client=pipe)  # queues
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
