"""Test support: real giftwire processes on port 0 and an admin API client.

Every process a test starts is stopped by its own PID; nothing is mocked.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from server.gateway.auth import make_token

READY = re.compile(r"listening on http://([0-9.]+):(\d+)|worker \S+ started")
DAY_MS = 86_400_000


def uid(prefix: str = "u") -> str:
    """A user id no other test uses (all tests share one Redis)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def short_tmpdir() -> Path:
    """Unix socket paths must stay short."""
    return Path(tempfile.mkdtemp(prefix="gwt-"))


class Proc:
    """One `giftwire` command run as a child process, stopped by PID."""

    def __init__(self, command: str, data_dir: Path, env: dict[str, str], *args: str) -> None:
        self.command = command
        self.data_dir = data_dir
        self.env = {**os.environ, **env}
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.log_path = data_dir / f"{command}-{uuid.uuid4().hex[:6]}.log"

    def start(self, timeout_s: float = 30.0) -> Proc:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "server.cli", self.command, "--data-dir", str(self.data_dir)]
        if self.command in ("serve", "gateway"):
            argv += ["--port", "0"]
        with self.log_path.open("w") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(argv + list(self.args), env=self.env,
                                         stdout=subprocess.PIPE, stderr=log, text=True)
        deadline = time.monotonic() + timeout_s
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.command} exited early:\n{self.log_path.read_text()}")
            m = READY.search(line)
            if m:
                self.port = int(m.group(2)) if m.group(2) else 0
                return self
        raise RuntimeError(f"{self.command} did not start:\n{self.log_path.read_text()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait; SIGKILL if it hangs. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def output(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.read()

    @property
    def secrets(self) -> dict[str, str]:
        data: dict[str, str] = orjson.loads((self.data_dir / "secrets.json").read_bytes())
        return data

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def token(self, user: str, ttl_s: int = 3600) -> str:
        return make_token(self.secrets["token_secret"], user, int(time.time()) + ttl_s)


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


async def run_audit(redis_url: str) -> tuple[int, str]:
    """`giftwire audit` against a Redis, as an operator runs it."""
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "audit", env={**os.environ, "REDIS_URL": redis_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()
