"""rewards: task rewards (`POST /admin/v1/notes/rewards`, one card each) from N concurrent
HTTP clients (keep-alive connections, one request in flight each, spread over `--procs`
processes), at each N of a sweep (`--clients`, default 1, 8, 32, 64), for a fixed time each.
Every reward's draw takes its card from the one stock slot `{notes}`, so this is that
slot's rate through the admin API.

Set-up through the public interfaces: U registered users (bulk), the stock of every kind
refilled (`POST /admin/v1/notes/stock`). Checked at the end: every answered reward drew
exactly its card (the stock's `drawn` went up by the rewards answered, and the users hold
that many cards), and the ledger audit."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import orjson

from loadtest.boost import Http, http_level
from loadtest.stats import summary
from loadtest.target import Target, admin, seed

STOCK_EACH = 10**9  # far more than a run draws: the stock never runs out mid-run
SAMPLES_MAX = 100_000


async def rewards_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    conns = [await Http.open(cfg["http"], cfg["key"]) for _ in range(cfg["clients"])]
    users: list[str] = cfg["users"]
    await ctl.sync()
    t0 = time.perf_counter()
    deadline = t0 + cfg["seconds"]
    lat: list[float] = []
    statuses: Counter[int] = Counter()

    async def client(j: int, c: Http) -> None:
        k = 0
        while time.perf_counter() < deadline:
            body = orjson.dumps({"id": f"{cfg['tag']}-{j}-{k}", "user": users[(j + k) % len(users)]})
            k += 1
            t = time.perf_counter()
            status, _ = await c.post("/admin/v1/notes/rewards", body)
            lat.append((time.perf_counter() - t) * 1000)
            statuses[status] += 1

    await asyncio.gather(*(client(j + cfg["offset"], c) for j, c in enumerate(conns)))
    seconds = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return {"lat": lat, "seconds": seconds, "statuses": {str(k): v for k, v in statuses.items()}}


async def drawn(target: Target) -> int:
    return sum(k["drawn"] for k in (await admin(target, "GET", "/notes", None))["kinds"])


async def run_rewards(target: Target, run_id: str, procs: int, levels: list[int], seconds: float,
                      users_n: int) -> dict[str, Any]:
    p = f"lt{run_id}"
    users = [f"{p}nu{i}" for i in range(users_n)]
    await seed(target, [], users, [], cards=0)
    kinds = (await admin(target, "GET", "/notes", None))["kinds"]
    for i, k in enumerate(kinds):
        await admin(target, "POST", "/notes/stock", {"id": f"{p}f{i}", "asset": k["asset"],
                                                     "amount": STOCK_EACH})
    before = await drawn(target)
    runs: list[dict[str, Any]] = []
    for n in levels:
        outs, lat, statuses, run_s = await http_level(
            "loadtest.notes:rewards_shard", target, procs, n, seconds, users=users, tag=f"{p}c{n}")
        ok = statuses.get("200", 0)
        runs.append({"clients": n, "procs": len(outs), "rewards_per_s": round(ok / run_s, 1),
                     "rewards": ok, "latency_ms": summary(lat), "statuses": dict(statuses),
                     "errors": len(lat) - ok, "seconds": round(run_s, 3), "samples_ms": lat})
    answered = sum(r["rewards"] for r in runs)
    held = 0
    for u in users:
        held += sum((await admin(target, "GET", f"/users/{u}/balances", None))["balances"].values())
    drew = await drawn(target) - before
    best = max(runs, key=lambda r: r["rewards_per_s"])
    samples = best["samples_ms"]
    for r in runs:
        del r["samples_ms"]
    step = max(1, len(samples) // SAMPLES_MAX)
    return {
        "throughput_per_s": best["rewards_per_s"], "latency_ms": best["latency_ms"],
        "best_clients": best["clients"], "levels": runs,
        "cards": {"answered": answered, "drawn": drew, "held": held},
        "exactly_once": all(not r["errors"] for r in runs) and answered == drew == held,
        "samples_ms": samples[::step],
        "params": {"users": users_n, "clients": levels, "seconds_each": seconds, "procs": procs,
                   "route": "POST /admin/v1/notes/rewards (1 card each)",
                   "connections": "keep-alive, one request in flight each"},
    }
