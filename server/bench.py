"""The seam external harnesses use to run and measure giftwire: the load test
(`loadtest/`) and the test suite import server code only through here (and the
protocol package). Everything named here is kept stable for them:

- `GiftwireProcess`: a `giftwire` command as a child process, stopped by its PID;
- `Bench`: the settlement path without a gateway, the same scripts, client and
  flows as the worker (the load test's ceilings (a) and (b) use it);
- what a harness needs around those: `connect`, `full_audit`, `make_token`,
  `EmbeddedValkey`, `uvicorn_config` (with `handshake_limits`), the settlement stream names.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from server.app import connect, connect_parts, make_worker
from server.audits import full_audit
from server.cli import PARENT_ENV, uvicorn_config
from server.config import Settings
from server.gateway.auth import make_token
from server.gateway.http_limits import HandshakeLimits
from server.gifting import flow as gift_flow
from server.gifting.flow import GiftFlow, GiftItem
from server.ledger.grants import grant
from server.settlement import entries
from server.settlement.flows import run_steps
from server.settlement.worker import ensure_groups
from server.store import keys
from server.store.embedded import EmbeddedValkey

__all__ = ["Bench", "EmbeddedValkey", "GiftwireProcess", "connect", "full_audit",
           "handshake_limits", "make_token", "settle_streams", "uvicorn_config"]

DAY_MS = 86_400_000


def handshake_limits(**settings: Any) -> HandshakeLimits:
    """The gateway's handshake bounds with these settings changed (the echo ceiling takes the
    load test's target's, so both hold the load generators' handshakes alike)."""
    return HandshakeLimits.of(Settings().replace(**settings))
SEED_BALANCE = 10**11  # cards each bench sender holds: never the limit of a run


def settle_streams(partitions: int) -> list[str]:
    return [keys.settle_stream(p) for p in range(partitions)]


class Bench:
    """Gifts straight into settlement on one Redis: `seed` users, then `gift_round` (the
    four steps for a batch, as the worker pipelines them) or `prefill` + `burst`."""

    def __init__(self, redis_url: str, settings: Settings) -> None:
        self.parts = connect_parts(settings.replace(redis_url=redis_url))
        self.redis = self.parts.redis
        self.flow = self.parts.flows.get(gift_flow.KIND)
        assert isinstance(self.flow, GiftFlow)

    async def close(self) -> None:
        await self.parts.aclose()

    async def seed(self, senders: list[str], recipients: list[str]) -> None:
        """Verified users who followed long ago, each sender rich (written straight into Redis)."""
        old = self.parts.clock.now_ms() - 30 * DAY_MS
        pipe = self.redis.pipeline(transaction=False)
        for u in senders + recipients:
            pipe.hset(keys.user(u).profile, mapping={"registered_at_ms": old, "real_name": 1})
        for i, s in enumerate(senders):
            pipe.hset(keys.user(s).follows, recipients[i % len(recipients)], old)
        await pipe.execute()
        for s in senders:
            await grant(self.parts.scripts, self.parts.settings, s, f"$grant:bench-{s}", "note.do",
                        SEED_BALANCE, "mint", "grant", old)

    async def gift_round(self, senders: list[str], recipients: list[str], tag: str) -> int:
        """One gift of one card from each sender to its recipient; returns how many."""
        items = [GiftItem(s, tag, recipients[i % len(recipients)], "note.do", 1, "", "")
                 for i, s in enumerate(senders)]
        today = await self.flow.prepare(self.parts.clock.now_ms())
        p = self.parts
        failed = await run_steps(self.flow, list(items), today, p.rounds, p.scripts,
                                 p.settings.redis_cluster)
        assert not failed, failed
        return len(items)

    async def prefill(self, senders: list[str], recipients: list[str], gifts: int,
                      batch: int = 1000) -> None:
        """`gifts` gift entries on partition 0, as gateways would append them."""
        await ensure_groups(self.redis, 1)
        stream = keys.settle_stream(0)
        for start in range(0, gifts, batch):
            pipe = self.redis.pipeline(transaction=False)
            for k in range(start, min(gifts, start + batch)):
                i = k % len(senders)
                env = entries.Envelope(gift_flow.KIND, senders[i])
                pipe.xadd(stream, entries.encode(env, gift_flow.payload(
                    {"gift_id": f"b{k}", "to": recipients[i], "asset": "note.do", "count": 1})))
            await pipe.execute()

    async def burst(self) -> int:
        """Run a worker until the stream is empty; returns the entries it applied."""
        worker = make_worker(self.parts)
        await worker.run(burst=True)
        return worker.applied


LISTENING = re.compile(r"listening on http://([0-9.]+):(\d+)")
WORKER_READY = re.compile(r"worker \S+ started")


class GiftwireProcess:
    """One `giftwire` command (serve, gateway, worker) as a child process."""

    def __init__(self, command: str, data_dir: Path, env: dict[str, str], *args: str) -> None:
        self.command = command
        self.data_dir = data_dir
        self.env = {**os.environ, **env}
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.log_path = data_dir / f"{command}-{uuid.uuid4().hex[:6]}.log"
        self.terminated = False  # SIGTERM sent to the current process

    def start(self, timeout_s: float = 30.0) -> GiftwireProcess:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # private, as serve makes it
        self.terminated = False
        argv = [sys.executable, "-m", "server.cli", self.command, "--data-dir", str(self.data_dir)]
        env = dict(self.env)
        if threading.current_thread() is threading.main_thread():
            # it stops (SIGTERM) when this process dies, even by SIGKILL; only from the main
            # thread: the kernel watches the thread that started it (server/lifetime.py)
            env[PARENT_ENV] = str(os.getpid())
        if self.command in ("serve", "gateway"):
            argv += ["--port", "0"]
        with self.log_path.open("w") as log:  # the child keeps its own descriptor
            # a process group of its own: a terminal's Ctrl-C reaches the harness (or the
            # test run), which stops it by its PID; it stops with its parent regardless
            self.proc = subprocess.Popen(argv + list(self.args), env=env,
                                         stdout=subprocess.PIPE, stderr=log, text=True,
                                         process_group=0)
        deadline = time.monotonic() + timeout_s
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.command} exited early:\n{self.log_path.read_text()}")
            if self.command in ("serve", "gateway"):  # (serve may start workers first)
                m = LISTENING.search(line)
                if m:
                    self.port = int(m.group(2))
                    return self
            elif WORKER_READY.search(line):
                return self
        self.stop()
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

    def terminate(self) -> None:
        """SIGTERM without waiting (once): several processes then stop side by side."""
        if self.proc is not None and self.proc.poll() is None and not self.terminated:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.terminated = True

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait; SIGKILL if it hangs. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

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
