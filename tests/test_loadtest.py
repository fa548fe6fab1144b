"""The load-test harness can't rot: each scenario runs at --smoke size from the command line,
writes a complete JSON, and the invariants held (a smoke run measures nothing worth quoting)."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize(("scenario", "ratios"), [("gifts", {"a", "b", "c"}), ("room", {"d"}),
                                                ("idle", set()), ("likes", {"c"}), ("envelope", {"a"}),
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
    if scenario == "room":  # the room path's own lag, from each gift's settled time
        assert set(data["settled_latency_ms"]) == {"p50", "p90", "p99", "max"}
        assert 0 <= data["settled_latency_ms"]["p50"] <= data["latency_ms"]["p50"]
        # the lean viewers counted every confirmed gift at every viewer (none is slow at this
        # size, so none may miss a frame), none twice
        assert data["confirmed"] > 0 and data["dropped"] == 0 and data["exactly_once"] is True
        assert set(data["targets_met"]) == {"frames", "lag"}
    if scenario == "chat":  # 20 messages from the owner and an admin, to 20 members
        assert data["posted"] == 20 and data["outcomes"] == {"group.posted": 20}
        assert data["expected"] == 400 and data["seen"] + data["dropped"] == 400 and data["seen"] > 0
        assert data["frames_per_s"] > 0


async def run_own(tmp_path: Path, scenario: str) -> dict[str, Any]:
    """`python -m loadtest SCENARIO --smoke --json out.json --plot out.png`: exit 0, audit passed."""
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    code, text = await run_harness(scenario, "--smoke", "--json", str(out_json), "--plot", str(out_png))
    assert code == 0, text
    data: dict[str, Any] = orjson.loads(out_json.read_bytes())
    assert data["scenario"] == scenario and data["invariants_ok"] is True
    assert "audit passed" in data["audit"]
    assert set(data["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return data


async def test_smoke_attack(tmp_path: Path) -> None:
    """Normal users and three attacks: every rule catches exactly its accounts, and no normal user."""
    # The banned bot's device refuses a new account, and a ban is enforced on the second gateway.
    data = await run_own(tmp_path, "attack")
    assert data["false_positives"] == {"users": 0, "cases": 0, "notices": 0, "refused_gifts": 0,
                                       "who": []}
    expected = {"shared_device": 1, "ip_cluster": 20, "automation_rate": 1, "automation_regular": 1}
    for rule, n in expected.items():
        r = data["rules"][rule]
        assert (r["expected"], r["caught_expected"], r["unexpected"]) == (n, n, []), (rule, r)
        assert r["detect_to_first_notice_ms"] > 0 and r["detect_to_first_refusal_ms"] > 0
    assert data["wrong_rule"] == []
    assert data["device_blacklist"]["refused"] is True and data["device_blacklist"]["close_code"] == 4011
    enf = data["enforcement"]
    assert enf["second_gateway"] is True and enf["measured"] == 2
    assert math.isfinite(enf["notice_a_to_refusal_b_ms"]["max"])
    normal = data["normal"]
    assert normal["baseline"]["confirmed_per_s"] > 0 and normal["during_attack"]["confirmed_per_s"] > 0


async def test_smoke_risk_cost(tmp_path: Path) -> None:
    """The engine off, then on, on two targets: both rates measured, nobody judged a bot."""
    data = await run_own(tmp_path, "risk-cost")
    assert [p["risk"] for p in data["phases"]] == ["off", "on"]
    assert all(p["outcomes"] == {"gift.confirmed": 80} for p in data["phases"])
    assert data["phases"][1]["cases"] == 0 and data["phases"][1]["engine_drain_s"] is not None
    assert data["on_off_ratio"] > 0 and data["off_per_s"] > 0


async def test_smoke_boost(tmp_path: Path) -> None:
    """Boosted contents weigh 1.0, others 0.0, at every client count, with no error."""
    data = await run_own(tmp_path, "boost")
    assert [lv["clients"] for lv in data["levels"]] == [1, 4]
    for lv in data["levels"]:
        assert lv["errors"] == 0 and lv["wrong_weights"] == [] and lv["lookups_per_s"] > 0
    assert data["params"]["boosted_contents"] == 4 and data["throughput_per_s"] > 0


async def test_smoke_rewards(tmp_path: Path) -> None:
    """Task rewards from 1 and 4 clients each draw exactly their card from the stock; the users hold all."""
    data = await run_own(tmp_path, "rewards")
    assert [lv["clients"] for lv in data["levels"]] == [1, 4]
    assert all(lv["errors"] == 0 and lv["rewards_per_s"] > 0 for lv in data["levels"])
    c = data["cards"]
    assert c["answered"] == c["drawn"] == c["held"] > 0 and data["invariants_ok"] is True


@pytest.mark.parametrize("bad", [("gifts", "--window", "0"), ("room", "--viewers", "0"),
                                 ("gifts", "--senders", "0"), ("gifts", "--procs", "-1"),
                                 ("gifts", "--rate", "nan"), ("risk-cost", "--rounds", "0"),
                                 ("boost", "--clients", "1,abc"), ("idle", "--connections", "-5")])
async def test_a_size_below_one_is_refused_before_anything_starts(bad: tuple[str, ...]) -> None:
    """A size that could never run (zero window, viewers, senders...) is a usage error, exit 2, at once."""
    # A zero window waited forever, zero viewers waited a minute for a frame, zero senders divided by zero.
    code, text = await run_harness(*bad, "--smoke")
    assert code == 2 and f"argument {bad[1]}:" in text, text


async def test_a_result_path_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path) -> None:
    """`--json` or `--plot` where nothing can be written exits 1 at once, naming the path."""
    # Not after a run whose figures are then lost.
    for flag, path in (("--json", "/nonexistent-dir/out.json"), ("--plot", str(tmp_path))):
        code, text = await run_harness("gifts", "--smoke", flag, path)
        assert code == 1 and path in text and "nothing was run" in text, text


def descendants(pid: int) -> set[int]:
    """The processes below `pid` now (from /proc)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p}
        found |= kids
        todo.extend(kids)
    return found


def cmdline(pid: int) -> bytes:
    """`pid`'s command line, or b"" once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


OURS = (b"server.cli", b"valkey", b"spawn_main")  # what the harness starts


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize(("signum", "group"), [(signal.SIGTERM, False), (signal.SIGINT, False),
                                               (signal.SIGINT, True)])
async def test_a_stop_signal_stops_everything_the_run_started(signum: signal.Signals,
                                                              group: bool) -> None:
    """A harness stopped mid-run by SIGTERM or Ctrl-C exits 128 + signal, in one line, leaving nothing up."""
    # Ctrl-C is SIGINT, also sent as a terminal does, to the whole process group. Mid-run: its target up, its
    # load generators waiting at a barrier. It exits within seconds; no traceback, the generators' neither; no
    # server, Valkey or generator is left running.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest", "room", "--smoke",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        start_new_session=group)
    started: dict[int, bytes] = {}
    try:
        for _ in range(1200):  # until the target and the generators are up
            started |= {p: cmdline(p) for p in descendants(proc.pid) if p not in started}
            if any(b"serve" in c for c in started.values()) and any(
                    b"spawn_main" in c for c in started.values()):
                break
            await asyncio.sleep(0.05)
        assert any(b"spawn_main" in c for c in started.values()), started
        if group:
            os.killpg(proc.pid, signum)  # its own session: the group is the harness's alone
        else:
            proc.send_signal(signum)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 128 + signum, err.decode()
        assert f"stopped ({signum.name})" in err.decode() and b"Traceback" not in err, err.decode()
        for _ in range(100):
            if not [p for p in started if alive(p)]:
                break
            await asyncio.sleep(0.1)
        assert not [p for p in started if alive(p)], f"left running after {signum.name}"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for p, line in started.items():  # a failing run must not leave orphans to later tests
            if alive(p) and cmdline(p) == line and any(o in line for o in OURS):
                os.kill(p, signal.SIGKILL)
