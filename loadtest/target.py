"""The giftwire under test: one the harness starts on the embedded Valkey, or one
given by `--url`. Seeding goes through the bulk admin API, like a platform does."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from server.bench import EmbeddedValkey, GiftwireProcess, make_token

# The harness's own target lifts the per-user daily limits so that one sender can
# carry a sustained load; an external target must be configured the same way
# (or it answers most sends with daily_limit, which the report counts).
LOAD_PROFILE = {
    "GIFTWIRE_GIFTS_PER_DAY": "1000000000",
    "GIFTWIRE_PAIR_GIFTS_PER_DAY": "1000000000",
    "GIFTWIRE_PENDING_REQUESTS_MAX": "1024",
    "GIFTWIRE_REQUESTS_PER_S": "100000",
    "GIFTWIRE_REQUEST_BURST": "100000",
    # every load generator connects from 127.0.0.1, CONNECT_CONCURRENCY_DEFAULT (200) at a time
    # each: one address's share of the handshakes must hold them all
    "GIFTWIRE_HANDSHAKES_PER_ADDRESS_MAX": "1024",
    # a load generator is automation by any human measure: the risk engine stays off unless a
    # scenario is about it (its cost is measured by running with it on and off)
    "GIFTWIRE_RISK_ENABLED": os.environ.get("GIFTWIRE_RISK_ENABLED", "0"),
    "GIFTWIRE_LOG_LEVEL": os.environ.get("GIFTWIRE_LOG_LEVEL", "warning"),
    # the worker in a process of its own: it shares no CPU or GC pause with the gateway's loop
    "GIFTWIRE_WORKER_PROCESSES": os.environ.get("GIFTWIRE_WORKER_PROCESSES", "1"),
}
BULK_CHUNK = 5000
DAY_MS = 86_400_000


@dataclass
class Target:
    http: str
    admin_key: str
    token_secret: str
    redis_url: str
    pid: int | None = None
    owned: list[Any] = field(default_factory=list)
    data_dir: Path | None = None  # the harness's own target: removed when it stops
    env: dict[str, str] = field(default_factory=dict)  # the own target's settings (more gateways)
    more_http: list[str] = field(default_factory=list)  # further gateways of the same deployment

    @property
    def ws(self) -> str:
        return ws_of(self.http)

    def token(self, user: str, ttl_s: int = 6 * 3600) -> str:
        return make_token(self.token_secret, user, int(time.time()) + ttl_s)

    def stop(self) -> None:
        for part in reversed(self.owned):
            part.stop()
        if self.data_dir is not None and not os.environ.get("GIFTWIRE_KEEP_DATA"):
            shutil.rmtree(self.data_dir, ignore_errors=True)  # a run's data is hundreds of MB


def start_own(env: dict[str, str] | None = None) -> Target:
    """giftwire serve (gateway + worker) on a private embedded Valkey."""
    data = Path(tempfile.mkdtemp(prefix="gwlt-"))
    vk = EmbeddedValkey(data / "valkey")
    vk.start()
    proc = GiftwireProcess("serve", data, {"REDIS_URL": vk.url, **LOAD_PROFILE, **(env or {})})
    try:
        proc.start()
    except Exception:
        vk.stop()
        raise
    sec = proc.secrets
    return Target(proc.http, sec["admin_key"], sec["token_secret"], vk.url, proc.pid, [vk, proc],
                  data, {"REDIS_URL": vk.url, **LOAD_PROFILE, **(env or {})})


def add_gateway(target: Target) -> str:
    """Start one more gateway (`giftwire gateway`, no worker) of the harness's own target, on
    its Valkey, data directory and settings; stopped with the target. Returns its WebSocket URL."""
    if target.data_dir is None:
        raise RuntimeError("only the harness's own target can be given another gateway")
    proc = GiftwireProcess("gateway", target.data_dir, target.env)
    proc.start()
    target.owned.append(proc)
    target.more_http.append(proc.http)
    return ws_of(proc.http)


def ws_of(http: str) -> str:
    return f"ws://{urlparse(http).netloc}/ws"


def _post(url: str, key: str, body: Any, method: str = "POST") -> Any:
    req = urllib.request.Request(url, data=orjson.dumps(body), method=method, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return orjson.loads(resp.read())


async def seed(target: Target, senders: list[str], recipients: list[str],
               edges: list[tuple[str, str]], cards: int) -> None:
    """Users, follow edges (follower, followee) and grants, in bulk requests."""
    old = int(time.time() * 1000) - 30 * DAY_MS
    users = [{"id": u, "real_name_verified": True, "registered_at_ms": old} for u in senders]
    users += [{"id": u, "registered_at_ms": old} for u in recipients]
    follows = [{"follower": s, "followee": r, "since_ms": old} for s, r in edges]
    grants = [{"id": f"lt-{s}", "user": s, "asset": "note.do", "amount": cards} for s in senders if cards]
    url = f"{target.http}/admin/v1/bulk"
    for kind, items in (("users", users), ("follows", follows), ("grants", grants)):
        for i in range(0, len(items), BULK_CHUNK):
            out = await asyncio.to_thread(_post, url, target.admin_key, {kind: items[i:i + BULK_CHUNK]})
            if out["errors"]:
                raise RuntimeError(f"seeding {kind} failed: {out['errors'][:3]}")


async def admin(target: Target, method: str, path: str, body: Any) -> Any:
    """One admin API call (`path` under /admin/v1)."""
    return await asyncio.to_thread(_post, f"{target.http}/admin/v1{path}", target.admin_key, body,
                                   method)


def raise_nofile(want: int) -> int:
    """Raise the soft open-files limit towards `want` (bounded by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(max(soft, want), hard)
    if new != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
