"""Durability modes: strict runs only on an fsync-always AOF, and no gift confirmed to a client
is lost when Valkey is SIGKILLed and restarted on the same data dir."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable

import redis

from protocol.client import Client
from server.bench import GiftwireProcess
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, run_audit, short_tmpdir


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


def test_a_new_data_dir_and_the_stored_files_are_the_owners_alone() -> None:
    """A data dir `serve` creates is 0700, and no file in it (the AOF, secrets) is readable by others."""
    # The append-only file holds every balance, profile and group message.
    data = short_tmpdir() / "fresh"
    srv = GiftwireProcess("serve", data, {"REDIS_URL": ""}).start()
    try:
        client = redis.Redis(unix_socket_path=str(data / "valkey.sock"), decode_responses=True)
        client.set("probe", "1")
        client.bgrewriteaof()
        client.close()
        assert data.stat().st_mode & 0o777 == 0o700
        files = [f for f in data.rglob("*") if f.is_file() and not f.name.endswith(".log")]
        assert any(f.suffix == ".aof" for f in files) and (data / "secrets.json") in files
        assert {f.name: f.stat().st_mode & 0o077 for f in files} == {f.name: 0 for f in files}
    finally:
        assert srv.stop() == 0


async def test_confirmed_gifts_survive_a_redis_kill_under_load(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """Valkey SIGKILLed under load and restarted: every gift confirmed to a client is in the balances."""
    # Killed while gifts are in flight; the ledger is whole afterwards.
    fsync_always = fresh_valkey(appendfsync="always")
    env = {"GIFTWIRE_DURABILITY": "strict", "GIFTWIRE_GIFTS_PER_DAY": "100",
           "GIFTWIRE_PAIR_GIFTS_PER_DAY": "100"}
    srv = start("serve", fsync_always.url, None, env)
    async with Admin(srv) as admin:
        pairs = [await admin.pair(100) for _ in range(6)]
        clients = [await Client.connect(srv.ws, srv.token(s)) for s, _ in pairs]
        confirmed = [0] * len(pairs)
        retries = [0]
        deadline = time.monotonic() + 60

        async def gifts(i: int) -> None:
            for k in range(25):
                while time.monotonic() < deadline:
                    try:
                        reply = await clients[i].send_gift(pairs[i][1], "note.do", 1,
                                                           gift_id=f"d{k}", timeout_s=3)
                    except (ConnectionError, TimeoutError):
                        retries[0] += 1
                        clients[i] = await clients[i].reconnect(attempts=30)
                        continue
                    if reply["type"] == "error":  # `unavailable` while Valkey is down
                        retries[0] += 1
                        await asyncio.sleep(0.1)
                        continue
                    confirmed[i] += reply["type"] == "gift.confirmed"
                    break
                await asyncio.sleep(0.01)

        async def crash() -> None:
            await asyncio.sleep(0.1)
            fsync_always.kill()  # no SHUTDOWN, no flush: only what fsync already wrote
            await asyncio.sleep(0.3)
            fsync_always.start()

        await asyncio.gather(crash(), *(gifts(i) for i in range(len(pairs))))
        assert retries[0] > 0, "Valkey died after the load, not under it"
        assert confirmed == [25] * len(pairs)
        for (s, r), n in zip(pairs, confirmed, strict=True):
            assert await admin.balances(s) == {"note.do": 100 - n}
            assert await admin.balances(r) == {"note.do": n}
        code, out = await run_audit(fsync_always.url)
        assert code == 0 and "(0 in flight)" in out, out
        for c in clients:
            await c.close()
