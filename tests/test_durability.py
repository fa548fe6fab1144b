"""Durability modes: strict runs only on an fsync-always AOF, and no gift confirmed to a client
is lost when Valkey is SIGKILLed and restarted on the same data dir."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import redis

from loadtest.procs import GiftwireProcess
from protocol.client import Client
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, run_audit, short_tmpdir


@pytest.fixture
def fsync_always() -> Iterator[EmbeddedValkey]:
    vk = EmbeddedValkey(short_tmpdir(), appendfsync="always")
    vk.start()
    yield vk
    vk.stop()


def test_strict_refuses_a_lax_redis(valkey: EmbeddedValkey) -> None:
    """Strict mode against a Redis that fsyncs only every second exits with the reason."""
    out = subprocess.run([sys.executable, "-m", "server.cli", "worker", "--durability", "strict",
                          "--data-dir", str(short_tmpdir())], capture_output=True, text=True,
                         env={"REDIS_URL": valkey.url, "PATH": ""}, timeout=30)
    assert out.returncode != 0 and "appendfsync always" in out.stderr


def test_strict_embedded_server_fsyncs_always() -> None:
    """`giftwire serve --durability strict` runs its embedded Valkey with appendfsync always."""
    data = short_tmpdir()
    srv = GiftwireProcess("serve", data, {"REDIS_URL": ""}, "--durability", "strict").start()
    try:
        client = redis.Redis(unix_socket_path=str(data / "valkey.sock"), decode_responses=True)
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        client.close()
    finally:
        assert srv.stop() == 0


async def test_confirmed_gifts_survive_a_redis_kill(
        fsync_always: EmbeddedValkey, start: Callable[..., Proc]) -> None:
    """Every gift confirmed before Valkey is SIGKILLed is there after it restarts."""
    srv = start("serve", fsync_always.url, None, {"GIFTWIRE_DURABILITY": "strict"})
    admin = Admin(srv)
    try:
        pairs = [await admin.pair(10, sender={"vip": True}) for _ in range(6)]
        clients = [await Client.connect(srv.ws, srv.token(s)) for s, _ in pairs]
        confirmed: list[dict[str, object]] = []

        async def gifts(i: int) -> None:
            for _ in range(3):
                reply = await clients[i].send_gift(pairs[i][1], "note.do", 1)
                if reply["type"] == "gift.confirmed":
                    confirmed.append(reply)

        await asyncio.gather(*(gifts(i) for i in range(6)))
        fsync_always.kill()  # no SHUTDOWN, no flush: only what fsync already wrote
        fsync_always.start()
        assert len(confirmed) == 18
        for s, r in pairs:
            assert await admin.balances(s) == {"note.do": 7}
            assert await admin.balances(r) == {"note.do": 3}
        code, out = await run_audit(fsync_always.url)
        assert code == 0, out
        for c in clients:
            await c.close()
    finally:
        await admin.close()
