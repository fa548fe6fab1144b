"""hiredis command packing (server/store/packing.py): the same bytes as redis-py's own
packing for every argument shape, redis-py's errors for what it refuses, the class each
URL scheme gets, and a client from `connect` running scripts and pipelines on Valkey."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import DataError

from server.app import connect
from server.store import scripts
from server.store.embedded import EmbeddedValkey
from server.store.packing import (
    HiredisConnection,
    HiredisSSLConnection,
    HiredisUnixConnection,
    cluster_from_url,
    packing_class,
    pool_from_url,
)
from tests.support import uid

PAIRS: list[tuple[type[AbstractConnection], type[AbstractConnection]]] = [
    (Connection, HiredisConnection),
    (SSLConnection, HiredisSSLConnection),
    (UnixDomainSocketConnection, HiredisUnixConnection),
]
SCRIPT_BODY = scripts.source("server.gifting", "send_debit")

ARGS: list[tuple[Any, ...]] = [
    ("PING",),
    ("SET", "k", "v"),
    ("GET", b"k"),
    ("SET", "k", ""),
    ("SET", "", b""),
    ("SET", "ключ", "значение ✓ 🎁 é"),
    ("SET", "k", "a\r\nb\x00c"),
    ("INCRBY", "k", 0),
    ("INCRBY", "k", -1),
    ("INCRBY", "k", -(2**63)),
    ("SET", "k", 2**64 + 1),
    ("SET", "k", 10**400),
    ("SET", "k", -(10**100)),
    ("SET", "k", 0.1), ("SET", "k", -2.5), ("SET", "k", 1.0), ("SET", "k", 1e16), ("SET", "k", 1e-300),
    ("SET", "k", 1e308), ("SET", "k", -0.0), ("SET", "k", float("inf")), ("SET", "k", float("-inf")),
    ("SET", "k", float("nan")),
    ("SET", "k", b"\x00\xff\xfe" * 3000),  # beyond redis-py's 6,000-byte chunking cutoff
    ("SET", "k", "x" * 20_000),
    ("SET", "k", memoryview(b"viewed")),
    ("SET", "k", bytearray(b"mutable")),  # hiredis refuses it: redis-py's own packing
    ("SCRIPT", "LOAD", SCRIPT_BODY),
    ("EVAL", SCRIPT_BODY, 2, "{u1}:a", "{u1}:b", "note.do", 1, 1795376853123, 3.5, "", b"raw"),
    ("EVALSHA", "a" * 40, 4, "{u:s1}:bal", "{u:s1}:day", "{u:s1}:pair", "{u:s1}:log",
     *(["note.do", 1, 1795376853123, "g-1795376853-42", "u0000042", 10**9, "", 86_400_000, 2.5] * 3)),
    ("CONFIG GET", "maxmemory"),  # a command name with a space: two arguments, as redis-py sends
    (b"CONFIG GET", "maxmemory"),
    ("CLIENT  SETINFO\tLIB-NAME", "x"),  # any whitespace, as redis-py's str.split()
    (b"CLIENT SETINFO\tLIB-NAME", "x"),
    ("É", "ü"),  # a non-ASCII name: UTF-8 like redis-py
    ("",),
    (" ", "x"),
]


def wire(conn: AbstractConnection, args: tuple[Any, ...]) -> bytes:
    return b"".join(bytes(chunk) for chunk in conn.pack_command(*args))


def pair(stock: type[AbstractConnection], ours: type[AbstractConnection],
         **kwargs: Any) -> tuple[AbstractConnection, AbstractConnection]:
    extra: dict[str, Any] = {"path": "/tmp/x.sock"} if stock is UnixDomainSocketConnection else {}
    return stock(**extra, **kwargs), ours(**extra, **kwargs)


@pytest.mark.parametrize(("stock", "ours"), PAIRS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("args", ARGS, ids=range(len(ARGS)))
def test_same_bytes_as_redis_py(stock: type[AbstractConnection], ours: type[AbstractConnection],
                                args: tuple[Any, ...]) -> None:
    """hiredis packs each of these commands into the very bytes redis-py would send."""
    a, b = pair(stock, ours, decode_responses=True)
    assert wire(b, args) == wire(a, args)


def test_hiredis_packs_the_common_shapes() -> None:
    """The fast path is taken (one bytes object), not the fallback, for str/bytes/int/float."""
    conn = HiredisConnection()
    for args in ARGS:
        if not any(isinstance(x, bytearray | memoryview) for x in args) and args[0].strip():
            out = conn.pack_command(*args)
            assert len(out) == 1 and isinstance(out[0], bytes), args


def test_pipelines_pack_the_same() -> None:
    """A pipeline's commands pack into the same bytes as redis-py's."""
    a, b = pair(Connection, HiredisConnection)
    assert b"".join(b.pack_commands(ARGS)) == b"".join(a.pack_commands(ARGS))


@pytest.mark.parametrize("bad", [True, False, None, object(), [1], {"a": 1}, "\udc80"],
                         ids=["true", "false", "none", "object", "list", "dict", "surrogate"])
def test_refused_arguments_raise_redis_pys_error(bad: Any) -> None:
    """An argument redis-py refuses is refused with redis-py's own error and message."""
    a, b = pair(Connection, HiredisConnection)
    with pytest.raises(Exception) as stock_error:
        a.pack_command("SET", "k", bad)
    with pytest.raises(Exception) as our_error:
        b.pack_command("SET", "k", bad)
    assert type(our_error.value) is type(stock_error.value)
    assert str(our_error.value) == str(stock_error.value)
    if isinstance(bad, bool):
        assert isinstance(our_error.value, DataError)


def test_other_encodings_use_redis_pys_packing() -> None:
    """hiredis writes strict UTF-8; a latin-1 (or lenient) client packs like redis-py."""
    for options in ({"encoding": "latin-1"}, {"encoding_errors": "replace"}):
        a, b = pair(Connection, HiredisConnection, **options)
        for args in [("SET", "k", "café"), ("SET", "k", "\udc80 ok" if "encoding_errors" in options
                                                   else "ÿ")]:
            assert wire(b, args) == wire(a, args)


ARG = st.one_of(st.text(), st.binary(), st.integers(), st.floats(allow_nan=True),
                st.integers(min_value=-(2**70), max_value=2**70).map(float))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(min_size=1, max_size=12), st.lists(ARG, max_size=12))
def test_same_bytes_for_any_arguments(name: str, args: list[Any]) -> None:
    """Any text, bytes, int or float arguments pack the same (or fail the same) as redis-py."""
    a, b = pair(Connection, HiredisConnection)
    try:
        expected: bytes | type[BaseException] = wire(a, (name, *args))
    except Exception as e:  # lone surrogates
        expected = type(e)
    try:
        got: bytes | type[BaseException] = wire(b, (name, *args))
    except Exception as e:
        got = type(e)
    assert got == expected


def test_each_url_scheme_gets_its_packing_class() -> None:
    """unix://, redis:// and rediss:// URLs each get the hiredis class of their transport."""
    assert pool_from_url("unix:///tmp/v.sock").connection_class is HiredisUnixConnection
    assert pool_from_url("redis://127.0.0.1:6379/0").connection_class is HiredisConnection
    assert pool_from_url("rediss://127.0.0.1:6379").connection_class is HiredisSSLConnection
    pool = pool_from_url("unix:///tmp/v.sock?db=3", max_connections=5, decode_responses=True)
    assert pool.connection_kwargs["path"] == "/tmp/v.sock" and pool.connection_kwargs["db"] == 3
    assert pool.max_connections == 5
    assert packing_class(HiredisConnection) is HiredisConnection
    with pytest.raises(ValueError):
        packing_class(AbstractConnection)


async def test_cluster_client_nodes_pack_with_hiredis() -> None:
    """The cluster client's startup node and every node it discovers later get the packing class."""
    # It takes no connection class; later nodes get it from the shared connection options.
    for url, cls in (("redis://127.0.0.1:7000", HiredisConnection),
                     ("rediss://127.0.0.1:7000", HiredisSSLConnection)):
        rc = cluster_from_url(url, decode_responses=True, max_connections=4)
        try:
            assert rc.connection_kwargs["connection_class"] is cls
            assert rc.nodes_manager.connection_kwargs["connection_class"] is cls
            nodes = list(rc.nodes_manager.startup_nodes.values())
            assert nodes and all(n.connection_class is cls for n in nodes)
            assert isinstance(nodes[0].acquire_connection(), cls)
        finally:
            await rc.aclose()


async def test_connect_runs_scripts_and_pipelines(valkey: EmbeddedValkey) -> None:
    """`server.app.connect` runs EVALSHA (NOSCRIPT reload included), EVAL and a mixed-type pipeline."""
    # On the session Valkey (unix socket); EVALSHA through redis-py's Script.
    redis = connect(valkey.url)
    try:
        assert redis.connection_pool.connection_class is HiredisUnixConnection
        k = uid("pack")
        script = redis.register_script(  # a body Valkey has not seen: the first call loads it
            f"-- {k}\nredis.call('SET', KEYS[1], ARGV[1]); return {{ARGV[1], ARGV[2], ARGV[3], #ARGV}}")
        assert await script(keys=[k], args=["ü✓ 🎁", -(2**62), 2.5]) == ["ü✓ 🎁", str(-(2**62)), "2.5", 3]
        assert await script(keys=[k], args=["", 0, b"\x00raw"]) == ["", "0", "\x00raw", 3]
        assert await redis.get(k) == ""
        assert await redis.eval("return ARGV[1] .. KEYS[1]", 1, "k", "v") == "vk"

        pipe = redis.pipeline(transaction=False)
        pipe.set(f"{k}:s", "välue")
        pipe.incrby(f"{k}:n", -7)
        pipe.set(f"{k}:f", 1.5)
        pipe.hset(f"{k}:h", mapping={"a": 1, "b": "two", "c": b"3"})
        await script(keys=[k], args=["p", 1, 2], client=pipe)
        pipe.hgetall(f"{k}:h")
        pipe.get(f"{k}:f")
        assert await pipe.execute() == [True, -7, True, 3, ["p", "1", "2", 3],
                                        {"a": "1", "b": "two", "c": "3"}, "1.5"]
        async with redis.pipeline(transaction=True) as tx:
            tx.incr(f"{k}:n").incr(f"{k}:n")
            assert await tx.execute() == [-6, -5]

        conn = await redis.connection_pool.get_connection()
        try:
            assert type(conn) is HiredisUnixConnection
        finally:
            await redis.connection_pool.release(conn)
        await redis.delete(k, f"{k}:s", f"{k}:n", f"{k}:f", f"{k}:h")
    finally:
        await redis.aclose(close_connection_pool=True)  # the pool is the caller's: not closed by default

