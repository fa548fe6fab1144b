"""giftwire-loadtest SCENARIO [options] — gifts, room, idle, likes, envelope or chat, with
ceilings measured in the same run, a table, a JSON file and a plot; attack, risk-cost (the risk
engine), boost (the recommender's lookup) and rewards (the note economy's task rewards),
without ceilings. Traffic goes only to the target
(by default one the harness starts on loopback); every loop is bounded in count and time."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

from loadtest import boost, ceilings, groups, notes, report, risk, scenarios
from loadtest.stats import ratio
from loadtest.target import Target, raise_nofile, start_own, ws_of
from server.bench import connect as redis_connect
from server.bench import full_audit, settle_streams
from server.config import digits

# measured on 2 cores (lean viewers, the tick on a fixed grid): the tick with the most frames
# per second whose settled → viewer lag p99 stayed under 2 × (d)'s reach (334 ≤ 422 ms)
ROOM_TICK_MS = 200
ROOM_FRAMES_TARGET = 0.5  # of (d)'s frames/s
STOPPED: list[int] = []  # the signal that stopped the run, if one did
FULL = {"senders": 100, "gifts": 20_000, "window": 8, "viewers": 10_000, "room_rate": 20.0,
        "room_s": 10.0, "connections": 20_000, "hold_s": 3.0, "a_s": 3.0, "a_batch": 128,
        "b_gifts": 20_000, "c_conns": 64, "c_s": 3.0, "d_rounds": 5, "fans": 1000, "like_rate": 2.0,
        "taps": 5, "likes_s": 10.0,
        # envelope: 1,000 members grab once each (not 500 twice: a second grab is a retry
        # answered with the same share); 1,000 cards for 200 shares
        "env_members": 1000, "env_shares": 200, "env_total": 1000,
        # chat: 500 members watch; the owner and 4 admins post 50 messages/s in all for 10 s
        "chat_members": 500, "posters": 5, "chat_rate": 50.0, "chat_s": 10.0,
        # attack: 300 normal users (~1 gift/s each) for 10 s alone, then 20 s beside a device
        # farm (12 accounts on 3 devices), an IP cluster (25 accounts of one /24) and bots
        # (3 at ~15 gifts/s, 2 every 0.5 s exactly); 5 enforcement samples on a second gateway
        "normal": 300, "stars": 10, "farm": 12, "farm_devices": 3, "cluster": 25,
        "cluster_spread_s": 8.0, "rate_bots": 3, "regular_bots": 2, "regular_gap_s": 0.5,
        "baseline_s": 10.0, "attack_s": 20.0, "samples": 5, "sample_max_s": 15.0,
        # risk-cost: 200 senders × 4 in flight (10–20 gifts/s each), 20,000 gifts per phase,
        # off, on, on, off, off, on
        "cost_senders": 200, "cost_window": 4, "cost_gifts": 20_000, "rounds": 3,
        # boost: 20 creators × 3 uses, lookups by 1, 8, 32, 64 clients for 5 s each
        "creators": 20, "uses": 3, "clients": [1, 8, 32, 64], "boost_s": 5.0,
        # rewards: 1,000 users, task rewards from 1, 8, 32, 64 clients for 5 s each
        "reward_users": 1000}
SMOKE = {"senders": 4, "gifts": 40, "window": 4, "viewers": 40, "room_rate": 40.0, "room_s": 1.0,
         "connections": 40, "hold_s": 0.5, "a_s": 0.5, "a_batch": 16, "b_gifts": 300,
         "c_conns": 4, "c_s": 0.5, "d_rounds": 2, "fans": 20, "like_rate": 4.0, "taps": 5,
         "likes_s": 1.0, "env_members": 40, "env_shares": 10, "env_total": 50,
         "chat_members": 20, "posters": 2, "chat_rate": 20.0, "chat_s": 1.0,
         "normal": 10, "stars": 2, "farm": 4, "farm_devices": 1, "cluster": 20,
         "cluster_spread_s": 1.0, "rate_bots": 1, "regular_bots": 1, "regular_gap_s": 0.2,
         "baseline_s": 1.5, "attack_s": 6.5, "samples": 2, "sample_max_s": 10.0,
         "cost_senders": 4, "cost_window": 2, "cost_gifts": 80, "rounds": 1,
         "creators": 2, "uses": 2, "clients": [1, 4], "boost_s": 0.5, "reward_users": 10}
SETTLE_S = 30.0
RSS_TARGET_BYTES = 15 * 1024


_DECIMAL = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")


def above_zero(kind: type) -> Any:
    """An argparse type: a number of `kind` above 0 (a zero window waits forever, zero
    senders divide by zero, zero viewers wait for a frame that never comes)."""

    def parse(text: str) -> Any:
        # ASCII digits only: `int` and `float` also take `５`, `1_0` and spaces
        ok = digits(text) if kind is int else _DECIMAL.fullmatch(text) is not None
        if not ok:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
        value = kind(text)
        if not value > 0 or value == float("inf"):  # 1e400 is a float: inf
            raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0 (and finite)")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def client_counts(text: str) -> str:
    """boost's --clients: a comma list of counts above 0."""
    parts = text.split(",")
    if not all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} must be a comma list of counts above 0")
    return text


POSITIVE_INT, POSITIVE_FLOAT = above_zero(int), above_zero(float)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="giftwire-loadtest", description=__doc__)
    p.add_argument("scenario", choices=["gifts", "room", "idle", "likes", "envelope", "chat",
                                        "attack", "risk-cost", "boost", "rewards"])
    p.add_argument("--smoke", action="store_true", help="a size that finishes in seconds")
    p.add_argument("--procs", type=POSITIVE_INT, default=2, help="load-generating processes")
    p.add_argument("--json", type=Path, help="write the result here")
    p.add_argument("--plot", type=Path, help="write a PNG: latency over time and a histogram")
    p.add_argument("--url", help="a running giftwire (default: start one on the embedded Valkey)")
    p.add_argument("--admin-key")
    p.add_argument("--token-secret")
    p.add_argument("--redis-url", help="the target's Redis, for the audit and ceiling (a)")
    p.add_argument("--server-pid", type=int, help="the target gateway's PID (idle reads its RSS)")
    p.add_argument("--rate", type=POSITIVE_FLOAT,
                   help="gifts: the set rate of the second phase (default: half the max); "
                        "chat: messages/s posted in all (default 50)")
    p.add_argument("--senders", type=POSITIVE_INT)
    p.add_argument("--gifts", type=POSITIVE_INT)
    p.add_argument("--window", type=POSITIVE_INT, help="gifts in flight per sender at max rate")
    p.add_argument("--viewers", type=POSITIVE_INT, help="room receivers, and the connections of ceiling (d)")
    p.add_argument("--connections", type=POSITIVE_INT, help="idle connections")
    p.add_argument("--members", type=POSITIVE_INT,
                   help="envelope: members, each grabbing once (default 1,000); chat: members "
                        "watching (default 500)")
    p.add_argument("--shares", type=POSITIVE_INT, help="envelope: grabbers the envelope allows (default 200)")
    p.add_argument("--total", type=POSITIVE_INT, help="envelope: cards in the envelope (default 1,000)")
    p.add_argument("--posters", type=POSITIVE_INT,
                   help="chat: the owner and posters-1 admins post (default 5)")
    p.add_argument("--room-tick-ms", type=POSITIVE_INT, default=ROOM_TICK_MS,
                   help="room: the gateway's room tick (its own target only): 10,000 viewers "
                        "at 100 ms need 100,000 frames/s")
    p.add_argument("--normal", type=POSITIVE_INT, help="attack: normal users (default 300)")
    p.add_argument("--attack-s", type=POSITIVE_FLOAT, help="attack: seconds the attacks run (default 20)")
    p.add_argument("--second-url", help="attack against --url: another gateway of the same "
                                        "deployment, for the enforcement samples")
    p.add_argument("--rounds", type=POSITIVE_INT, help="risk-cost: off/on pairs of targets, in the order "
                                              "off, on, on, off, ... (default 3)")
    p.add_argument("--clients", type=client_counts,
                   help="boost, rewards: concurrent HTTP clients, a comma list (default 1,8,32,64)")
    p.add_argument("--max-seconds", type=POSITIVE_FLOAT, default=120.0, help="bound on each phase")
    return p


def sizes(args: argparse.Namespace) -> dict[str, Any]:
    out = dict(SMOKE if args.smoke else FULL)
    for name in ("senders", "gifts", "window", "viewers", "connections", "posters"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    for name, keys in (("members", ("env_members", "chat_members")), ("shares", ("env_shares",)),
                       ("total", ("env_total",))):
        if getattr(args, name) is not None:
            out.update(dict.fromkeys(keys, getattr(args, name)))
    if args.scenario == "chat" and args.rate is not None:
        out["chat_rate"] = args.rate
    for name, key in (("normal", "normal"), ("attack_s", "attack_s"), ("rounds", "rounds")):
        if getattr(args, name) is not None:
            out[key] = getattr(args, name)
    if args.scenario == "risk-cost":
        for name in ("senders", "gifts", "window"):
            if getattr(args, name) is not None:
                out["cost_" + name] = getattr(args, name)
    if args.clients:
        out["clients"] = [int(x) for x in args.clients.split(",")]
    return out


def target_from(args: argparse.Namespace) -> Target:
    if not args.url:
        # the room tick is the gateway's; for an external target set GIFTWIRE_ROOM_TICK_MS there
        if args.scenario == "room":
            return start_own({"GIFTWIRE_ROOM_TICK_MS": str(args.room_tick_ms)})
        # attack: the engine on, the harness's loopback a trusted proxy (its X-Forwarded-For
        # gives every client its own address); an external target needs the same settings
        if args.scenario != "attack":
            return start_own(None)
        # a smoke run is short (6.5 s of attack) and shares a busy machine: its regularity
        # threshold is looser than the default 0.05, so a scheduling stall can't hide its
        # regular bot (humans' gaps, 0.4-1.6 s at random, have a CV of about 0.35)
        return start_own({**risk.RISK_ENV, **({"GIFTWIRE_BOT_REGULAR_CV": "0.15"} if args.smoke else {})})
    missing = [f for f in ("admin_key", "token_secret", "redis_url") if not getattr(args, f)]
    if missing:
        raise SystemExit(f"with --url also give {', '.join('--' + m.replace('_', '-') for m in missing)}")
    return Target(args.url.rstrip("/"), args.admin_key, args.token_secret, args.redis_url,
                  args.server_pid)


async def settle_and_audit(target: Target) -> tuple[bool, str]:
    """Wait (bounded) until the stream is drained and nothing is in flight, then audit."""
    redis = redis_connect(target.redis_url)
    try:
        deadline = time.monotonic() + SETTLE_S
        while True:
            backlog = await redis.xlen(settle_streams(1)[0])
            result, text = await full_audit(redis)
            if (backlog == 0 and result.in_flight == 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()
    return result.ok and result.in_flight == 0 and backlog == 0, text


async def measure_ceilings(target: Target, args: argparse.Namespace, z: dict[str, Any],
                           run_id: str) -> dict[str, float]:
    a = await ceilings.lua_ceiling(target.redis_url, args.procs, z["a_s"], z["a_batch"], run_id)
    b = await ceilings.worker_ceiling(z["b_gifts"], 256, run_id)
    c = await ceilings.echo_ceiling(args.procs, z["c_conns"], z["window"], z["c_s"])
    d = await ceilings.broadcast_ceiling(args.procs, z["viewers"], z["d_rounds"])
    return {"a_lua_per_s": round(a, 1), "b_worker_per_s": round(b, 1), "c_echo_per_s": round(c, 1),
            "d_broadcast_per_s": round(d["frames_per_s"], 1),
            "d_reach_all_ms": round(d["reach_all_ms"], 2), "d_viewers": d["viewers"]}


FD_HEADROOM = 256  # the server's own descriptors besides connections: Redis, listeners, logs


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM or Ctrl-C unwinds the run: the target, its Valkey and the load generators this
    # run started are stopped by the `with` blocks that started them, not orphaned
    task = asyncio.current_task()
    assert task is not None

    def on_signal(signum: int) -> None:
        STOPPED.append(signum)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C unwinds the same way
        asyncio.get_running_loop().add_signal_handler(signum, on_signal, signum)
    z = sizes(args)
    limit = raise_nofile(2 * max(z["connections"], z["viewers"]) + 1024)
    if args.scenario == "idle" and not args.url and z["connections"] > limit - FD_HEADROOM:
        raise SystemExit(
            f"the open-files limit here is {limit} per process, so one gateway can hold at most "
            f"{limit - FD_HEADROOM} connections: pass --connections {limit - FD_HEADROOM} or less")
    run_id = uuid.uuid4().hex[:6]
    if args.scenario == "risk-cost":
        return await run_risk_cost(args, z, run_id)
    target = target_from(args)
    if args.scenario in ("attack", "boost", "rewards"):
        return await run_without_ceilings(args, z, run_id, target)
    try:
        if args.scenario == "gifts":
            result = await scenarios.run_gifts(target, run_id + "m", args.procs, z["senders"], z["gifts"],
                                               z["window"], 0.0, args.max_seconds)
            rate = args.rate or max(1.0, result["throughput_per_s"] / 2)
            result["at_rate"] = await scenarios.run_gifts(
                target, run_id + "h", args.procs, z["senders"],
                min(z["gifts"], int(rate * min(args.max_seconds, 20))), z["window"], rate, args.max_seconds)
        elif args.scenario == "room":
            result = await scenarios.run_room(target, run_id, args.procs, z["viewers"], 20 if not args.smoke
                                              else 2, z["room_rate"], z["room_s"])
        elif args.scenario == "likes":
            result = await scenarios.run_likes(target, run_id, args.procs, z["fans"], z["like_rate"],
                                               z["taps"], z["likes_s"])
        elif args.scenario == "envelope":
            result = await groups.run_envelope(target, run_id, args.procs, z["env_members"],
                                               z["env_shares"], z["env_total"], args.max_seconds)
        elif args.scenario == "chat":
            result = await groups.run_chat(target, run_id, args.procs, z["chat_members"], z["posters"],
                                           z["chat_rate"], z["chat_s"], args.max_seconds)
        else:
            result = await scenarios.run_idle(target, run_id, args.procs, z["connections"], z["hold_s"])
        cs = await measure_ceilings(target, args, z, run_id)
        ok, audit_text = await settle_and_audit(target)
    finally:
        target.stop()
    result.update({
        "scenario": args.scenario, "smoke": args.smoke, "machine": report.machine(),
        "ceilings": cs, "ratio_to_ceiling": ratios_to_ceilings(args.scenario, result, cs),
        "invariants_ok": (ok and result["exactly_once"]
                          and result.get("at_rate", {}).get("exactly_once", True)),
        "audit": audit_text, "command": "giftwire-loadtest " + " ".join(sys.argv[1:]),
    })
    if args.scenario == "room":
        result["lag_target_ms"] = round(2 * cs["d_reach_all_ms"], 2)
        result["targets_met"] = {  # issue 10: ≥ 0.5 of (d)'s frames/s at a lag p99 ≤ 2 × its reach
            "frames": result["ratio_to_ceiling"]["d"] >= ROOM_FRAMES_TARGET,
            "lag": result["settled_latency_ms"]["p99"] <= result["lag_target_ms"]}
    if args.scenario == "idle":
        result["rss_target_bytes"] = RSS_TARGET_BYTES
    return result


def common(args: argparse.Namespace) -> dict[str, Any]:
    return {"scenario": args.scenario, "smoke": args.smoke, "machine": report.machine(),
            "command": "giftwire-loadtest " + " ".join(sys.argv[1:])}


async def run_risk_cost(args: argparse.Namespace, z: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Two targets of the harness's own, engine off and on, one after the other (`--rounds`)."""
    if args.url:
        raise SystemExit("risk-cost starts its own targets (engine off, engine on): no --url")
    sz = {"senders": z["cost_senders"], "window": z["cost_window"], "gifts": z["cost_gifts"],
          "rounds": z["rounds"]}
    result = await risk.run_cost(run_id, args.procs, sz, args.max_seconds, settle_and_audit)
    audits = [f"{p['risk']}: {p.pop('audit')}" for p in result["phases"]]
    result.update(common(args))
    result.update(audit="\n".join(audits),
                  invariants_ok=result["audits_ok"] and result["exactly_once"])
    return result


async def run_without_ceilings(args: argparse.Namespace, z: dict[str, Any], run_id: str,
                               target: Target) -> dict[str, Any]:
    """attack, boost and rewards: what they measure is not bounded by the ceilings, so none
    are taken."""
    try:
        if args.scenario == "attack":
            second = ws_of(args.second_url) if args.second_url else None
            result = await risk.run_attack(target, run_id, args.procs, z, second)
        elif args.scenario == "rewards":
            result = await notes.run_rewards(target, run_id, args.procs, z["clients"], z["boost_s"],
                                             z["reward_users"])
        else:
            result = await boost.run_boost(target, run_id, args.procs, z["clients"], z["boost_s"],
                                           z["creators"], z["uses"])
        ok, audit_text = await settle_and_audit(target)
    finally:
        target.stop()
    result.update(common(args))
    result.update(audit=audit_text, invariants_ok=ok and result.get("exactly_once", True))
    if args.scenario == "attack":
        if result["false_positives"]["users"] or result["false_positives"]["refused_gifts"]:
            result["failure"] = (f"{result['false_positives']['users']} normal user(s) caught by "
                                 f"the risk engine: {result['false_positives']['who']}")
    elif not result["exactly_once"] and args.scenario == "rewards":
        result["failure"] = (f"rewards: {result['cards']} (answered, drawn from the stock and "
                             "held must agree) or requests failed")
    elif not result["exactly_once"]:
        result["failure"] = "boost lookups failed or answered a wrong weight"
    return result


def ratios_to_ceilings(scenario: str, result: dict[str, Any], cs: dict[str, float]) -> dict[str, float]:
    """The scenario's throughput over the ceilings it is compared with: envelope grabs/s to
    (a) (Lua steps, gifts/s); chat message deliveries/s (`d`) and its frames/s (`d_frames`)
    to (d) (frames/s)."""
    thr = result["throughput_per_s"]
    if scenario == "gifts":
        return {"a": ratio(thr, cs["a_lua_per_s"]), "b": ratio(thr, cs["b_worker_per_s"]),
                "c": ratio(thr, cs["c_echo_per_s"])}
    if scenario == "room":
        return {"d": ratio(thr, cs["d_broadcast_per_s"])}
    if scenario == "envelope":
        return {"a": ratio(thr, cs["a_lua_per_s"])}
    if scenario == "likes":  # a like batch is one request frame and one reply: as an echo
        return {"c": ratio(result["batches_per_s"], cs["c_echo_per_s"])}
    if scenario == "chat":
        return {"d": ratio(thr, cs["d_broadcast_per_s"]),
                "d_frames": ratio(result["frames_per_s"], cs["d_broadcast_per_s"])}
    return {}


def unwritable(path: Path | None) -> str | None:
    """Why the result could not be written to `path` (checked before a run, not after)."""
    if path is None:
        return None
    if path.is_dir():
        return f"{path} is a directory"
    if path.exists() and not path.is_file():  # a FIFO would block the open below
        return f"{path} is not a regular file"
    existed = path.exists()
    try:  # tried, not judged by permission bits: root passes os.access for /proc and /sys
        with path.open("a"):
            pass
    except OSError as exc:
        return f"cannot write {path} ({exc.strerror or exc})"
    if not existed:
        path.unlink(missing_ok=True)
    return None


def stopped() -> int:
    name = signal.Signals(STOPPED[0]).name
    print(f"stopped ({name}): everything this run started was stopped", file=sys.stderr)
    return 128 + STOPPED[0]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for why in (unwritable(args.json), unwritable(args.plot)):
        if why:
            print(f"giftwire-loadtest: {why}: nothing was run", file=sys.stderr)
            return 1
    try:
        result = uvloop.run(run(args))
    except asyncio.CancelledError:
        if not STOPPED:
            raise
        return stopped()
    if STOPPED:  # a signal while the run was being wound up: stopped all the same
        return stopped()
    print(report.table(result))
    try:
        if args.json:
            report.write_json(args.json, result)
        if args.plot:
            report.plot(args.plot, result)
    except OSError as exc:  # (a path that went away during the run)
        print(f"giftwire-loadtest: cannot write the result: {exc}", file=sys.stderr)
        return 1
    if result.get("failure"):
        print(f"\nFAILED: {result['failure']}", file=sys.stderr)
        return 1
    if not result["invariants_ok"]:
        print("\nINVARIANTS BROKEN — see the audit below\n" + result["audit"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
