"""Run a `giftwire` command as a child process and stop it by its PID.

Shared by the load-test harness (when it starts its own target) and the test suite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

from server.gateway.auth import make_token

READY = re.compile(r"listening on http://([0-9.]+):(\d+)|worker \S+ started")


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

    def start(self, timeout_s: float = 30.0) -> GiftwireProcess:
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
