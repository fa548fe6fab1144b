"""python docs/perf/worker_alone.py [GIFTS] — ceiling (b), the settlement worker alone on a
private Valkey (as `loadtest.ceilings.worker_ceiling`: a pre-filled stream, one burst), plus
the worker's CPU, Valkey's CPU and Valkey's script time (INFO commandstats) per gift.
Prints one JSON line. Measurement only; Linux (/proc)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis as syncredis
import uvloop

from loadtest.ceilings import BENCH
from server.bench import Bench, EmbeddedValkey

TCK = os.sysconf("SC_CLK_TCK")
SCRIPT_CMDS = ("cmdstat_fcall", "cmdstat_fcall_ro", "cmdstat_evalsha", "cmdstat_eval")


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TCK


def script_stats(url: str) -> tuple[int, int]:
    r = syncredis.Redis.from_url(url)
    try:
        st = r.info("commandstats")
    finally:
        r.close()
    rows = [v for k, v in st.items() if k in SCRIPT_CMDS]
    return sum(v["calls"] for v in rows), sum(v["usec"] for v in rows)


async def main(gifts: int) -> dict[str, Any]:
    vk = EmbeddedValkey(Path(tempfile.mkdtemp(prefix="gwlt-b-")))
    vk.start()
    assert vk.process is not None
    run_id = uuid.uuid4().hex[:6]
    try:
        bench = Bench(vk.url, BENCH.replace(worker_batch_max=256))
        senders = [f"ltB{run_id}s{i}" for i in range(200)]
        recipients = [f"ltB{run_id}r{i}" for i in range(200)]
        await bench.seed(senders, recipients)
        await bench.prefill(senders, recipients, gifts)
        c0, u0 = script_stats(vk.url)
        v0, p0 = cpu_s(vk.process.pid), time.process_time()
        started = time.perf_counter()
        applied = await bench.burst()
        elapsed = time.perf_counter() - started
        p1, v1 = time.process_time(), cpu_s(vk.process.pid)
        c1, u1 = script_stats(vk.url)
        assert applied == gifts, (applied, gifts)
        await bench.close()
        return {"gifts": gifts, "gifts_per_s": round(gifts / elapsed, 1),
                "worker_cpu_us_per_gift": round((p1 - p0) / gifts * 1e6, 1),
                "valkey_cpu_us_per_gift": round((v1 - v0) / gifts * 1e6, 1),
                "script_calls_per_gift": round((c1 - c0) / gifts, 3),
                "script_us_per_gift": round((u1 - u0) / gifts, 1),
                "script_us_per_call": round((u1 - u0) / max(c1 - c0, 1), 1)}
    finally:
        vk.stop()
        shutil.rmtree(vk.data_dir, ignore_errors=True)  # its AOF: megabytes a run


if __name__ == "__main__":
    print(json.dumps(uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))))
