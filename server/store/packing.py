"""redis-py asyncio connections that pack commands with hiredis.

Why: redis-py's asyncio client packs every command in pure Python
(`AbstractConnection.pack_command`); only the sync client packs with
`hiredis.pack_command`. A gift's script calls carry ~30 arguments each, and packing
them was ~25% of `giftwire serve`'s CPU. Measured on this project's 2-core machine,
stock against this class, interleaved runs of the same commands:
- one 32-argument EVALSHA: 26 µs packed by redis-py, 3.9 µs here;
- the settlement worker alone (ceiling (b)): 1.36× the gifts/s (median of 6 pairs,
  1.27–1.49×), its CPU per gift 212 → 136 µs;
- `giftwire serve` at the load test's max rate: CPU per gift 347 → 264 µs (0.74×),
  gifts/s 1.20× (median of 8 pairs).

The bytes on the wire are the same as redis-py's for every argument (tests/test_packing.py
compares them): the command name is split on whitespace exactly as redis-py splits it,
and whatever hiredis refuses (bool, None, bytearray, int subclasses such as IntEnum, str
that does not encode) is packed by redis-py's own code, which then encodes it or raises
its usual error. hiredis writes str as strict UTF-8, so a client configured with another
encoding or error handler packs everything with redis-py's code.

`pool_from_url` and `cluster_from_url` build clients whose connections are these classes,
for whichever connection class the URL scheme selects (redis://, rediss://, unix://).
"""

from __future__ import annotations

import codecs
from typing import Any

import hiredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    BlockingConnectionPool,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.typing import EncodableT


def _hiredis_encodes_like(connection: AbstractConnection) -> bool:
    """True when redis-py's encoder would turn a str into the bytes hiredis writes."""
    enc = connection.encoder
    return codecs.lookup(enc.encoding).name == "utf-8" and enc.encoding_errors == "strict"


def _pack(stock: Any, args: tuple[EncodableT, ...]) -> list[bytes]:
    """One command as one bytes object, or redis-py's own packing (`stock`) when hiredis
    cannot give the same bytes."""
    first = args[0]
    command: tuple[Any, ...] = args
    if isinstance(first, str):
        if not first.isalpha():  # as redis-py: 'CONFIG GET' goes out as two arguments
            command = (*first.encode().split(), *args[1:])
    elif isinstance(first, bytes):
        if b" " in first:
            command = (*first.split(), *args[1:])
    else:
        return list(stock(*args))
    try:
        packed: bytes = hiredis.pack_command(command)
    except Exception:  # a type hiredis refuses: redis-py encodes it, or raises its own error
        return list(stock(*args))
    return [packed]


class _HiredisPacking(AbstractConnection):
    """`pack_command` with hiredis; pipelines too (redis-py's `pack_commands` calls it)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hiredis = _hiredis_encodes_like(self)

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        if not self._hiredis:
            return super().pack_command(*args)
        return _pack(super().pack_command, args)


class HiredisConnection(_HiredisPacking, Connection):
    """TCP (`redis://`); the cluster client's connection too."""


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    """TLS (`rediss://`)."""


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """Unix socket (`unix://`): the embedded Valkey's."""


PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: HiredisConnection,
    SSLConnection: HiredisSSLConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
}


def packing_class(stock: type[AbstractConnection]) -> type[AbstractConnection]:
    """The hiredis-packing class for one of redis-py's connection classes."""
    if stock in PACKING.values():
        return stock
    try:
        return PACKING[stock]
    except KeyError:
        raise ValueError(f"no hiredis-packing connection for {stock.__name__}") from None


def pool_from_url(url: str, **kwargs: Any) -> BlockingConnectionPool:
    """`BlockingConnectionPool.from_url(url, **kwargs)` (options in the URL win, as there)
    with the hiredis-packing class for the URL's scheme."""
    kwargs.update(parse_url(url))
    kwargs["connection_class"] = packing_class(kwargs.get("connection_class", Connection))
    return BlockingConnectionPool(**kwargs)


def cluster_from_url(url: str, **kwargs: Any) -> RedisCluster:
    """`RedisCluster.from_url(url, **kwargs)` whose node connections pack with hiredis.
    The cluster client takes no connection class: it picks Connection or SSLConnection
    into the connection options it shares with its nodes manager, which creates every
    node it discovers from them; the startup nodes exist already (without connections)."""
    client = RedisCluster.from_url(url, **kwargs)
    options: dict[str, Any] = client.connection_kwargs
    assert client.nodes_manager.connection_kwargs is options, "redis-py changed its cluster wiring"
    cls = packing_class(options["connection_class"])
    assert issubclass(cls, Connection)  # a cluster node speaks TCP or TLS
    options["connection_class"] = cls
    for node in client.nodes_manager.startup_nodes.values():
        assert not node._connections, "a startup node connected before its class was set"
        node.connection_class = cls
    return client

