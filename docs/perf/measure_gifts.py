"""python docs/perf/measure_gifts.py gifts [giftwire-loadtest options] — runs the load test
unchanged (`loadtest.cli.main`, same table, JSON and plot) and adds to each phase of the
gifts scenario, between the load generators' start barrier and their results (seeding and
connecting excluded), per confirmed gift:

- the CPU of the `giftwire serve` process (the gateway) and of its worker process(es),
- the CPU of Valkey, and Valkey's time inside FCALL/EVALSHA (`INFO commandstats`),
- every command's calls and usec per gift (`commands_per_gift`: [calls, usec]; a command a
  script ran counts here as well as in its FCALL).

The figures land in the JSON as "measure" (and "at_rate"."measure"). Measurement only:
not imported by giftwire or by the harness; Linux only (/proc).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import redis as syncredis

from loadtest import cli, scenarios

TCK = os.sysconf("SC_CLK_TCK")
SCRIPT_CMDS = ("cmdstat_fcall", "cmdstat_fcall_ro", "cmdstat_evalsha", "cmdstat_eval")
STATE: dict[str, Any] = {}
PHASES: list[dict[str, float]] = []


def stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    f = stat(pid)
    return (int(f[11]) + int(f[12])) / TCK


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int(stat(int(d.name))[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def commandstats(url: str) -> dict[str, float]:
    r = syncredis.Redis.from_url(url)
    try:
        st = r.info("commandstats")
    finally:
        r.close()
    script = [v for k, v in st.items() if k in SCRIPT_CMDS]
    return {"script_calls": sum(v["calls"] for v in script),
            "script_usec": sum(v["usec"] for v in script),
            "all_usec": sum(v["usec"] for v in st.values()),
            **{f"cmd:{k[8:]}:{f}": v[f] for k, v in st.items() for f in ("calls", "usec")}}


def sample() -> dict[str, float]:
    t = STATE["target"]
    return {"wall_s": time.perf_counter(), "gateway_cpu_s": cpu_s(t.pid),
            "worker_cpu_s": sum(cpu_s(p) for p in STATE["workers"]),
            "valkey_cpu_s": cpu_s(STATE["valkey_pid"]), **commandstats(t.redis_url)}


class Measured(scenarios.Shards):
    async def sync(self) -> None:
        await super().sync()
        self._m0 = sample()

    async def results(self) -> list[dict[str, Any]]:
        outs: list[dict[str, Any]] = await super().results()
        m1 = sample()
        PHASES.append({k: m1[k] - self._m0.get(k, 0) for k in m1})
        return outs


ORIGINAL = scenarios.run_gifts


async def run_gifts(target: Any, *a: Any, **k: Any) -> dict[str, Any]:
    STATE["target"] = target
    STATE["valkey_pid"] = target.owned[0].process.pid
    STATE["workers"] = children(target.pid)
    r: dict[str, Any] = await ORIGINAL(target, *a, **k)
    d, n = PHASES[-1], max(r["confirmed"], 1)
    r["measure"] = {
        "worker_processes": len(STATE["workers"]), "wall_s": round(d["wall_s"], 3),
        "gateway_cpu_us_per_gift": round(d["gateway_cpu_s"] / n * 1e6, 1),
        "worker_cpu_us_per_gift": round(d["worker_cpu_s"] / n * 1e6, 1),
        "serve_cpu_us_per_gift": round((d["gateway_cpu_s"] + d["worker_cpu_s"]) / n * 1e6, 1),
        "valkey_cpu_us_per_gift": round(d["valkey_cpu_s"] / n * 1e6, 1),
        "script_calls_per_gift": round(d["script_calls"] / n, 3),
        "script_us_per_gift": round(d["script_usec"] / n, 1),
        "script_us_per_call": round(d["script_usec"] / max(d["script_calls"], 1), 1),
        "all_commands_us_per_gift": round(d["all_usec"] / n, 1),
        "commands_per_gift": {k[4:-6]: [round(d[k] / n, 3), round(d[k[:-6] + ":usec"] / n, 1)]
                              for k in sorted(d) if k.startswith("cmd:") and k.endswith(":calls")
                              and d[k] > 0},
    }
    print(f"measure ({r['params']['rate']}): {r['measure']}", flush=True)
    return r


if __name__ == "__main__":  # the spawned load generators import this file as __mp_main__
    scenarios.Shards = Measured  # type: ignore[misc]
    scenarios.run_gifts = run_gifts
    sys.exit(cli.main())
