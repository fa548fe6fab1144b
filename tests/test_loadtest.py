"""The load-test harness can't rot: each scenario runs at --smoke size from the command line,
writes a complete JSON, and the invariants held (a smoke run measures nothing worth quoting)."""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path

import orjson
import pytest

KEYS = {"throughput_per_s", "latency_ms", "ceilings", "ratio_to_ceiling", "invariants_ok",
        "machine", "audit", "params"}
CEILINGS = {"a_lua_per_s", "b_worker_per_s", "c_echo_per_s", "d_broadcast_per_s", "d_reach_all_ms"}


async def run_harness(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.parametrize(("scenario", "ratios"), [("gifts", {"a", "c"}), ("room", {"d"}), ("idle", set()),
                                                ("likes", set()), ("envelope", {"a"}),
                                                ("chat", {"d", "d_frames"})])
async def test_smoke_scenario(tmp_path: Path, scenario: str, ratios: set[str]) -> None:
    """`python -m loadtest SCENARIO --smoke --json out.json` exits 0 with every figure present."""
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    code, text = await run_harness(scenario, "--smoke", "--json", str(out_json), "--plot", str(out_png))
    assert code == 0, text
    data = orjson.loads(out_json.read_bytes())
    assert KEYS <= set(data), set(data)
    assert data["scenario"] == scenario and data["invariants_ok"] is True
    assert set(data["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert all(math.isfinite(v) and v >= 0 for v in data["latency_ms"].values())
    assert CEILINGS <= set(data["ceilings"]) and all(v > 0 for v in data["ceilings"].values())
    assert set(data["ratio_to_ceiling"]) == ratios
    assert data["throughput_per_s"] > 0
    assert "audit passed" in data["audit"]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if scenario == "gifts":
        assert data["at_rate"]["latency_ms"]["p99"] >= 0 and data["outcomes"] == {"gift.confirmed": 40}
    if scenario == "idle":
        assert data["connections"] == 40 and data["rss_per_connection_bytes"] > 0
    if scenario == "envelope":  # 40 members grab 50 cards in 10 shares: exactly 10 win, sum 50
        assert data["outcomes"] == {"envelope.grabbed": 10, "envelope_empty": 30}
        assert (data["winners"], data["shares_sum"]) == (10, 50) and all(data["checks"].values())
        assert data["credited_latency_ms"]["p99"] >= 0
    if scenario == "chat":  # 20 messages from the owner and an admin, to 20 members
        assert data["posted"] == 20 and data["outcomes"] == {"group.posted": 20}
        assert data["expected"] == 400 and data["seen"] + data["dropped"] == 400 and data["seen"] > 0
        assert data["frames_per_s"] > 0
