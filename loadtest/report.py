"""The terminal table, the JSON file and the PNG plot of a run."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import orjson


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "python": sys.version.split()[0], "platform": platform.platform()}


def table(result: dict[str, Any]) -> str:
    own = OWN_TABLES.get(result["scenario"])
    if own is not None:
        return aligned([*own(result), ("invariants (audit)",
                                       "ok" if result["invariants_ok"] else "BROKEN")])
    c, r, lat = result["ceilings"], result["ratio_to_ceiling"], result["latency_ms"]
    unit = {"gifts": "gifts/s", "room": "frames/s", "idle": "connects/s",
            "likes": "likes/s counted", "envelope": "grabs/s answered",
            "chat": "messages × members/s"}[result["scenario"]]
    what = LATENCY_OF.get(result["scenario"], "latency")
    rows = [
        (f"{result['scenario']} throughput", f"{result['throughput_per_s']:,.0f} {unit}"),
        (f"{what} p50 / p90 / p99 / max",
         f"{lat['p50']:.2f} / {lat['p90']:.2f} / {lat['p99']:.2f} / {lat['max']:.2f} ms"),
    ]
    if result["scenario"] == "envelope":
        rows += envelope_rows(result)
    if result["scenario"] == "chat":
        rows += chat_rows(result)
    if "at_rate" in result:
        ar = result["at_rate"]
        rows.append((f"at {ar['params']['rate']:.0f}/s: p99 confirm",
                     f"{ar['latency_ms']['p99']:.2f} ms (p50 {ar['latency_ms']['p50']:.2f})"))
    if "settled_latency_ms" in result:
        sl = result["settled_latency_ms"]
        rows.append(("settled → viewer p50 / p99", f"{sl['p50']:.2f} / {sl['p99']:.2f} ms"))
    if "events_per_s" in result:
        rows.append(("events delivered (inside frames)", f"{result['events_per_s']:,.0f} events/s"))
    if "received_latency_ms" in result:
        rl = result["received_latency_ms"]
        rows.append(("send → received p50 / p99", f"{rl['p50']:.2f} / {rl['p99']:.2f} ms"))
    if "valkey_us_per_batch" in result:
        rows.append(("likes counted / refused / room total",
                     f"{result['counted']:,} / {result['refused']:,} / {result['room_total']:,}"))
        rows.append(("Valkey time per like batch", f"{result['valkey_us_per_batch']:.1f} µs"))
    if "rss_per_connection_bytes" in result:
        rows.append(("server RSS per connection", f"{result['rss_per_connection_bytes'] / 1024:.1f} KiB"))
    rows += [
        ("(a) Lua steps ceiling", f"{c['a_lua_per_s']:,.0f} gifts/s"),
        ("(b) worker alone", f"{c['b_worker_per_s']:,.0f} gifts/s"),
        ("(c) WebSocket echo ceiling", f"{c['c_echo_per_s']:,.0f} msgs/s"),
        ("(d) broadcast ceiling", f"{c['d_broadcast_per_s']:,.0f} frames/s "
                                  f"(reach {c['d_reach_all_ms']:.0f} ms at {c['d_viewers']:.0f})"),
    ]
    rows += [(f"ratio to {k}", f"{v:.3f}") for k, v in r.items()]
    rows.append(("invariants (audit + exactly once)", "ok" if result["invariants_ok"] else "BROKEN"))
    return aligned(rows)


def aligned(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f} ms"


def attack_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    n, fp, enf = result["normal"], result["false_positives"], result["enforcement"]
    base, during = n["baseline"], n["during_attack"]
    rows = [
        ("normal users: gifts/s confirmed", f"{base['confirmed_per_s']:,.1f} before, "
                                            f"{during['confirmed_per_s']:,.1f} during the attacks "
                                            f"(kept {n['kept_ratio']}); {n['users']} users"),
        ("normal: confirmed of sent", f"{base['confirmed_fraction']} before, "
                                      f"{during['confirmed_fraction']} during"),
        ("normal: confirm p50 / p99", f"{base['latency_ms']['p50']:.1f} / {base['latency_ms']['p99']:.1f}"
                                      f" ms before, {during['latency_ms']['p50']:.1f} / "
                                      f"{during['latency_ms']['p99']:.1f} ms during"),
        ("false positives (normal users)", f"{fp['users']} users ({fp['cases']} cases, "
                                           f"{fp['notices']} notices, {fp['refused_gifts']} refusals)"),
    ]
    for rule, r in result["rules"].items():
        rows.append((f"{rule}: caught / expected", f"{r['caught_expected']} / {r['expected']} "
                                                   f"(of {r['accounts']}; {len(r['unexpected'])} "
                                                   f"unexpected)"))
        eng = r["engine_signal_to_notice_ms"]
        rows.append((f"{rule}: detection", f"case {ms(r['detect_to_case_opened_ms'])}, notice "
                                           f"{ms(r['detect_to_first_notice_ms'])}, refusal "
                                           f"{ms(r['detect_to_first_refusal_ms'])} after the first "
                                           f"action; signal → notice p50 "
                                           f"{ms(eng['p50'] if eng else None)}"))
    if result["wrong_rule"]:
        rows.append(("caught by another rule", ", ".join(result["wrong_rule"][:5])))
    bl = result["device_blacklist"]
    if bl.get("tried"):
        rows.append(("banned device, new account", f"refused ({bl['close_code']})" if bl["refused"]
                     else "NOT refused"))
    lat = enf["notice_a_to_refusal_b_ms"]
    from_case = enf["case_opened_to_refusal_b_ms"]
    where = "a second gateway" if enf["second_gateway"] else "the same gateway"
    rows.append((f"enforcement on {where}", "–" if lat is None else
                 f"notice on A → refused on B p50 {lat['p50']:.1f} ms, max {lat['max']:.1f} ms "
                 f"({lat['n']} samples)"))
    if from_case:
        rows.append(("case opened → refused on B", f"p50 {from_case['p50']:.1f} ms, max "
                                                   f"{from_case['max']:.1f} ms"))
    return rows


def cost_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("gifts/s, engine off / on", f"{result['off_per_s']:,.1f} / {result['throughput_per_s']:,.1f}"),
            ("on / off ratio", f"{result['on_off_ratio']} (pairs {result['pair_ratios']})"),
            ("confirm p50 / p99 off", f"{result['latency_off_ms']['p50']:.1f} / "
                                      f"{result['latency_off_ms']['p99']:.1f} ms"),
            ("confirm p50 / p99 on", f"{result['latency_ms']['p50']:.1f} / "
                                     f"{result['latency_ms']['p99']:.1f} ms")]
    for i, ph in enumerate(result["phases"]):
        extra = ""
        if ph["risk"] == "on":
            extra = (f"; engine backlog max {ph['engine_backlog_max']:,}, at end "
                     f"{ph['engine_backlog_at_end']:,}, drained in {ph['engine_drain_s']:.1f} s; "
                     f"cases {ph['cases']}")
        rows.append((f"phase {i + 1} ({ph['risk']})", f"{ph['throughput_per_s']:,.1f} gifts/s, "
                                                     f"{ph['outcomes']}{extra}"))
    return rows


def level_row(lv: dict[str, Any], rate: str, unit: str, extra: str = "") -> tuple[str, str]:
    """One client count of an HTTP sweep (boost, rewards): its rate and latencies."""
    lat = lv["latency_ms"]
    return (f"{lv['clients']} clients", f"{lv[rate]:,.0f} {unit}/s, p50 {lat['p50']:.2f} / p99 "
                                        f"{lat['p99']:.2f} / max {lat['max']:.2f} ms, errors "
                                        f"{lv['errors']}{extra}")


def boost_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [level_row(lv, "lookups_per_s", "lookups",
                      f", wrong weights {len(lv['wrong_weights'])}") for lv in result["levels"]]


def rewards_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [level_row(lv, "rewards_per_s", "rewards") for lv in result["levels"]]
    c = result["cards"]
    rows.append(("cards answered / drawn / held", f"{c['answered']} / {c['drawn']} / {c['held']}"))
    return rows


OWN_TABLES = {"attack": attack_rows, "risk-cost": cost_rows, "boost": boost_rows,
              "rewards": rewards_rows}


LATENCY_OF = {"envelope": "grab → reply", "chat": "post → member"}


def envelope_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    cl, el, o = result["credited_latency_ms"], result["empty_latency_ms"], result["outcomes"]
    other = sum(n for k, n in o.items() if k not in ("envelope.grabbed", "envelope_empty"))
    exact = "exact" if result["exactly_once"] else "NOT EXACT: " + ", ".join(
        k for k, ok in result["checks"].items() if not ok)
    return [
        ("grab → credited p50 / p99", f"{cl['p50']:.2f} / {cl['p99']:.2f} ms (winners)"),
        ("grab → envelope_empty p50 / p99", f"{el['p50']:.2f} / {el['p99']:.2f} ms"),
        ("grabs: won / empty / other", f"{o.get('envelope.grabbed', 0):,} / "
                                       f"{o.get('envelope_empty', 0):,} / {other:,} "
                                       f"in {result['rush_seconds']:.3f} s"),
        ("winners / shares", f"{result['winners']:,} / {result['shares']:,}"),
        ("shares sum / total", f"{result['shares_sum']:,} / {result['total']:,} "
                               f"(shares {result['share_min']}–{result['share_max']}): {exact}"),
        ("grab events seen by members", f"{result['grab_events_seen']:,} of "
                                        f"{result['grab_events_expected']:,}"),
    ]


def chat_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    ack, p = result["post_ack_ms"], result["params"]
    return [
        ("messages posted (accepted)", f"{result['posted']:,} of {p['messages']:,} at "
                                       f"{result['post_rate_achieved']:.1f}/s by {p['posters']} posters"),
        ("post → posted (ack) p50 / p99", f"{ack['p50']:.2f} / {ack['p99']:.2f} ms"),
        ("deliveries seen / expected / dropped", f"{result['seen']:,} / {result['expected']:,} / "
                                                 f"{result['dropped']:,} ({p['members']} members)"),
        ("group frames to members", f"{result['frames_per_s']:,.0f} frames/s"),
    ]


def write_json(path: Path, result: dict[str, Any]) -> None:
    slim = {k: v for k, v in result.items() if k not in ("timeline", "samples_ms")}
    if "at_rate" in slim:
        slim["at_rate"] = {k: v for k, v in slim["at_rate"].items() if k not in ("timeline", "samples_ms")}
    path.write_bytes(orjson.dumps(slim, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def plot(path: Path, result: dict[str, Any]) -> None:
    """Latency over time and a latency histogram, per phase (needs matplotlib:
    pip install 'giftwire[loadtest]')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"gifts": "max rate",
             "attack": f"normal users (attacks from {result.get('attack_started_s')} s)",
             "risk-cost": "engine on", "boost": f"{result.get('best_clients')} clients",
             "rewards": f"{result.get('best_clients')} clients"}
    phases = [(names.get(result["scenario"], result["scenario"]), result)]
    if "at_rate" in result:
        phases.append((f"{result['at_rate']['params']['rate']:.0f}/s", result["at_rate"]))
    fig, axes = plt.subplots(len(phases), 2, figsize=(12, 4.2 * len(phases)), squeeze=False)
    for (label, phase), (ax1, ax2) in zip(phases, axes, strict=True):
        timeline = phase.get("timeline") or list(enumerate(phase["samples_ms"]))
        if timeline:
            xs, ys = zip(*timeline, strict=True)
            ax1.scatter(xs, ys, s=2, alpha=0.4)
        ax1.set_xlabel("seconds into the phase" if phase.get("timeline") else "sample")
        ax1.set_ylabel("latency (ms)")
        ax1.set_title(f"{result['scenario']} at {label}: latency over time")
        ax2.hist(phase["samples_ms"], bins=80)
        ax2.set_yscale("log")
        ax2.set_xlabel("latency (ms)")
        lat = phase["latency_ms"]
        ax2.set_title(f"histogram: p50 {lat['p50']:.1f}, p99 {lat['p99']:.1f} ms")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
