"""Pipelined rounds (server/store/pipeline.py): a `Round` on a real Valkey answers like
redis-py's pipeline (replies in order, an error reply in its place, XREADGROUP shaped the
same over RESP2 and RESP3), a lost connection fails the round and the next one works, and
the rounds client (no per-reply timeout) is bounded a round at a time."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from server.app import connect
from server.store import pipeline
from server.store.embedded import EmbeddedValkey
from server.store.pipeline import Round, execute
from tests.support import uid


async def test_a_round_answers_like_a_pipeline(valkey: EmbeddedValkey) -> None:
    """A Round answers commands as redis-py's pipeline does, a refused command's error in its place."""
    # The other commands land.
    rounds = connect(valkey.url, reply_timeouts=False)
    try:
        k = uid("round")
        out = await execute(
            Round(rounds).command("SET", f"{k}:s", "välue").hdel(f"{k}:h", "x")
            .command("HINCRBY", f"{k}:n", "f", "x").exists(f"{k}:s", f"{k}:none")
            .publish(f"{k}:ch", "hello").command("GET", f"{k}:s"), raise_on_error=False)
        assert out[0] == "OK" and out[1] == 0 and out[3] == 1 and out[4] == 0
        assert isinstance(out[2], ResponseError) and out[5] == "välue"
        with pytest.raises(ResponseError):
            await execute(Round(rounds).command("SET", f"{k}:t", "1")
                          .command("HINCRBY", f"{k}:n", "f", "x"))
        assert await rounds.get(f"{k}:t") == "1"  # raised after every reply was read
        assert await execute(Round(rounds)) == []
        await rounds.delete(f"{k}:s", f"{k}:t")
    finally:
        await rounds.aclose()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_xreadgroup_is_shaped_as_redis_py_shapes_it(valkey: EmbeddedValkey,
                                                          protocol: int) -> None:
    """XREADGROUP in a Round is shaped as redis-py shapes it, over RESP2 and RESP3; an empty read is []."""
    # The worker destructures the entries.
    client = Redis.from_url(valkey.url, decode_responses=True, protocol=protocol)
    try:
        s = uid("rs")
        await client.xgroup_create(s, "g", id="0", mkstream=True)
        ids = [await client.xadd(s, {"gift": str(i), "to": "bob"}) for i in range(3)]
        await client.xgroup_create(s, "g2", id="0")
        rnd = Round(client).xreadgroup("g", "c1", {s: ">"}, count=2).xack(s, "g", ids[0])
        got, acked = await execute(rnd)
        assert got == [(s, [(ids[0], {"gift": "0", "to": "bob"}),
                            (ids[1], {"gift": "1", "to": "bob"})])]
        assert acked == 1
        if protocol == 2:  # the shape the worker destructures: redis-py's RESP2 one
            theirs = await client.xreadgroup("g2", "c", {s: ">"}, count=2)
            assert [(st, [tuple(e) for e in items]) for st, items in theirs] == got
        empty = await execute(Round(client).xreadgroup("g", "c1", {s: ">"}, count=5, block=50)
                              .xreadgroup("g", "c1", {s: ">"}, count=5), block_ms=50)
        assert empty[0] == [(s, [(ids[2], {"gift": "2", "to": "bob"})])] and empty[1] == []
        await client.delete(s)
    finally:
        await client.aclose()


async def test_a_lost_connection_fails_the_round_and_the_next_one_works(
        valkey: EmbeddedValkey) -> None:
    """A connection killed under a round fails it with a transient error; the next round works."""
    # Killed from the server's side; nothing is left half-read.
    rounds = connect(valkey.url, reply_timeouts=False)
    admin = Redis.from_url(valkey.url, decode_responses=True)
    try:
        k = uid("lost")
        assert await execute(Round(rounds).command("CLIENT", "SETNAME", k)) == ["OK"]
        with pytest.raises(pipeline.TRANSIENT):
            # the server closes this very connection while the round waits on its reply
            await asyncio.gather(
                execute(Round(rounds).command("BLPOP", f"{k}:never", 2)),
                _kill_named(admin, k))
        assert await execute(Round(rounds).command("SET", k, "1").command("GET", k)) == ["OK", "1"]
        await rounds.delete(k)
    finally:
        await rounds.aclose()
        await admin.aclose()


async def _kill_named(admin: Redis, name: str) -> None:
    for _ in range(50):
        await asyncio.sleep(0.05)
        clients = await admin.client_list()
        if any(c.get("name") == name and c.get("cmd") == "blpop" for c in clients):
            await admin.client_kill_filter(_id=next(c["id"] for c in clients
                                                    if c.get("name") == name))
            return
    raise AssertionError("the round's connection never blocked")


async def test_rounds_client_pipelines_on_valkey(valkey: EmbeddedValkey) -> None:
    """The rounds client (no per-reply timeout) runs a bounded pipeline like the other."""
    rounds = connect(valkey.url, reply_timeouts=False)
    try:
        k = uid("rounds")
        pipe = rounds.pipeline(transaction=False)
        for i in range(300):
            pipe.hset(k, f"f{i}", i)
        pipe.hlen(k)
        pipe.hincrby(k, "f1", "x")  # refused: the others still land, the error is in its place
        out = await pipeline.execute(pipe, raise_on_error=False)
        assert out[:300] == [1] * 300 and out[300] == 300
        assert isinstance(out[301], ResponseError)
        conn = await rounds.connection_pool.get_connection()
        try:
            assert conn.socket_timeout is None  # no asyncio.timeout entered per reply
        finally:
            await rounds.connection_pool.release(conn)
        await rounds.delete(k)
    finally:
        await rounds.aclose()


async def test_a_silent_redis_times_a_round_out(
        monkeypatch: pytest.MonkeyPatch, fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """A round on a Valkey that stops answering (SIGSTOP) fails as a whole within its bound, not hanging."""
    # 0.3 s here, a transient error: the worker re-runs its batch. The connection was made before; a blocking
    # read's bound adds its block.
    vk = fresh_valkey()
    assert vk.process is not None
    monkeypatch.setattr(pipeline, "ROUND_S", 0.3)
    rounds = connect(vk.url, reply_timeouts=False)
    try:
        await rounds.ping()  # connected while it answers
        vk.process.send_signal(signal.SIGSTOP)
        pipe = rounds.pipeline(transaction=False)
        pipe.xadd("s", {"a": 1})
        started = time.monotonic()
        with pytest.raises(pipeline.TRANSIENT):
            await pipeline.execute(pipe)
        assert time.monotonic() - started < 3  # the bound, not redis-py's retries of a hang
        pipe = rounds.pipeline(transaction=False)  # (a failed pipeline is emptied)
        pipe.xadd("s", {"a": 1})
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await pipeline.execute(pipe, block_ms=200)
        assert 0.5 - 0.05 < time.monotonic() - started < 3  # ROUND_S + the block's 0.2 s
    finally:
        vk.process.send_signal(signal.SIGCONT)
        await rounds.aclose()
