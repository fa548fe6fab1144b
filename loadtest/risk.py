"""Risk-engine scenarios (the target must run with `GIFTWIRE_RISK_ENABLED=1` and the harness's
loopback address in `GIFTWIRE_TRUSTED_PROXIES`: the harness's own target is started that way).
Every client claims a device (a v2 token) and an address (`X-Forwarded-For`).

attack:    normal users gift at a human pace (uneven gaps, ~1 a second each, each from its own
           /24 and device), first alone (the baseline), then while three attacks run:
             a device farm  — accounts connecting round-robin on a few devices (the accounts
                              beyond the third per device are expected to be restricted);
             an IP cluster  — accounts of one /24 gifting one recipient (one the normal users
                              gift too): all of them expected frozen once 20 have gifted;
             bots           — some gifting at ~15 a second with uneven gaps (automation_rate),
                              some at exactly regular intervals, slowly (automation_regular).
           Per rule: time to detection from the attack's first action (a farm connect, a
           cluster or bot gift) to the case's `opened_ms` (which is the time of the action that
           tripped the rule, as the gateway stamped it), to the first `risk.notice` (the
           decision as the user sees it) and to the first refusal; accounts caught vs expected;
           false positives among the normal users (any case, notice or refusal: exit 1); the
           normal users' confirmed gifts/s and latency before and during the attacks.
           Then enforcement on a second gateway: an account connected to gateway A (where it
           gifts fast, and gets its `risk.notice`) and to gateway B (where it probes with
           `envelope.grab` every few ms) until banned; the time from the notice on A to the
           first `risk_banned` refusal on B. The probes are actions too: the account's ban is
           earned on both gateways at once, as a bot using two connections would.
risk-cost: the gifts scenario's max rate with the engine off and on, on two targets the
           harness starts one after the other (off, on, on, off, ... `--rounds` pairs), each on
           its own Valkey with the same load: S senders × W in flight, each sender from its
           own /24 and device (so the engine's IP-cluster count runs on every gift; loopback
           would be exempt). At that rate one sender sends ~10–20 gifts a second, which the
           default automation rule bans; the "on" target keeps the engine's per-signal work
           identical and moves only the thresholds: GIFTWIRE_BOT_ACTIONS_PER_S=50 with
           GIFTWIRE_BOT_WINDOW_S=1 (the same 51 action times kept and scanned per signal as
           10/s × 5 s) and GIFTWIRE_BOT_REGULAR_CV=0 (the regularity measure is still computed,
           never met). The engine's backlog (risk stream entries not yet judged) is sampled
           during the run and its drain time after.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from loadtest.raw import Raw, Refused, outcome, token
from loadtest.shards import CONNECT_CONCURRENCY_DEFAULT, Shards, progress_bar, split
from loadtest.stats import summary
from loadtest.target import Target, add_gateway, admin, seed, start_own
from server.bench import connect as redis_connect
from server.store import keys

RISK_ENV = {"GIFTWIRE_RISK_ENABLED": "1", "GIFTWIRE_TRUSTED_PROXIES": "127.0.0.1"}
# risk-cost: the "on" target's thresholds (see the module's doc)
COST_ON_ENV = {**RISK_ENV, "GIFTWIRE_BOT_ACTIONS_PER_S": "50", "GIFTWIRE_BOT_WINDOW_S": "1",
               "GIFTWIRE_BOT_REGULAR_CV": "0"}
COST_OFF_ENV = {"GIFTWIRE_RISK_ENABLED": "0", "GIFTWIRE_TRUSTED_PROXIES": "127.0.0.1"}
HUMAN_GAP_S = (0.4, 1.6)  # a normal user's gaps between gifts: uneven, ~1 a second
# uneven, 66 ms on average: ~15 a second. Wide enough that 20 of its gaps never look
# regular (CV ~0.5; with 40-93 ms, CV ~0.23, a smoke run's 0.15 regularity threshold caught
# it first by chance a few times in a hundred judgements, under the wrong rule)
RATE_BOT_GAP_MS = (10, 123)
PROBE_EVERY_S = 0.003  # enforcement: B probes this often (each after the previous reply)
ENFORCE_BURST = (60, 0.01)  # enforcement: gifts on A, this far apart (100 a second)
REFUSALS = ("risk_restricted", "risk_frozen", "risk_banned", "sender_restricted", "sender_frozen",
            "sender_banned")
CASES_PAGE = 500
Audit = Callable[[Target], Awaitable[tuple[bool, str]]]


def now_ms() -> float:
    return time.time() * 1000


# addresses: every normal user and attacker account in a /24 of its own unless the attack
# shares one; none loopback (the IP-cluster rule exempts loopback)
def normal_ip(i: int) -> str:
    return f"10.{1 + i // 250}.{i % 250}.7"


def farm_ip(device: int) -> str:
    return f"172.16.{device}.10"


def cluster_ip(k: int) -> str:
    return f"203.0.113.{1 + k}"


def bot_ip(k: int) -> str:
    return f"198.51.{k}.20"


def probe_ip(k: int) -> str:
    return f"100.64.{k}.5"


def sender_ip(i: int) -> str:
    return f"10.{101 + i // 250}.{i % 250}.9"


# -- attack: the normal users, in load-generating processes ---------------------------
async def normal_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    """Normal users: connect, then gift random stars at a human pace for `seconds`; every
    gift's send time, latency and outcome, and any `risk.notice` they get."""
    rng = random.Random(cfg["seed"])
    notices: list[list[Any]] = []

    def handler(user: str) -> Callable[[dict[str, Any]], None]:
        def on_event(msg: dict[str, Any]) -> None:
            if msg.get("type") == "risk.notice":
                notices.append([user, now_ms(), msg.get("reason"), msg.get("action")])
        return on_event

    sem = asyncio.Semaphore(CONNECT_CONCURRENCY_DEFAULT)

    async def conn(user: str, ip: str, device: str) -> tuple[str, Raw]:
        async with sem:
            return user, await Raw.open(cfg["ws"], token(cfg["secret"], user, device), ip,
                                        handler(user))

    clients = dict(await asyncio.gather(*(conn(u, ip, d) for u, (ip, d) in cfg["users"].items())))
    await ctl.sync()  # everyone connected
    await ctl.sync()  # the parent's clock starts
    t0 = time.time()
    end = t0 + cfg["seconds"]
    gifts: list[tuple[float, float, str]] = []  # (sent, wall s; ms or -1; outcome)

    async def one(user: str, c: Raw, to: str, k: int) -> None:
        t = time.time()
        try:
            out, ms = outcome(await c.gift(to, f"{cfg['tag']}-{k}", timeout_s=60)), 0.0
            ms = (time.time() - t) * 1000
        except (TimeoutError, ConnectionError) as exc:
            out, ms = type(exc).__name__, -1.0
        gifts.append((t, ms, out))
        ctl.tick()

    async def person(user: str, c: Raw) -> None:
        tasks = []
        due, k = t0 + rng.uniform(0, HUMAN_GAP_S[1]), 0
        while due < end:
            await asyncio.sleep(max(0.0, due - time.time()))
            tasks.append(asyncio.create_task(one(user, c, rng.choice(cfg["stars"]), k)))
            k += 1
            due += rng.uniform(*HUMAN_GAP_S)
        await asyncio.gather(*tasks)

    await asyncio.gather(*(person(u, c) for u, c in clients.items()))
    for c in clients.values():
        await c.close()
    return {"gifts": gifts, "notices": notices, "users": len(clients)}


# -- attack: the attackers, in the parent ---------------------------------------------
@dataclass
class Account:
    user: str
    ip: str
    device: str
    client: Raw | None = None
    notices: list[tuple[float, str, str]] = field(default_factory=list)  # (wall ms, reason, action)
    first_action_ms: float = 0.0
    first_refusal_ms: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    sent: list[tuple[float, str]] = field(default_factory=list)  # (sent wall ms, outcome)

    def on_event(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "risk.notice":
            self.notices.append((now_ms(), str(msg.get("reason")), str(msg.get("action"))))

    async def open(self, target: Target, ws: str | None = None) -> Raw:
        self.client = await Raw.open(ws or target.ws, token(target.token_secret, self.user,
                                                            self.device), self.ip, self.on_event)
        return self.client

    async def gift(self, to: str, gift_id: str) -> None:
        assert self.client is not None
        t = now_ms()
        if not self.first_action_ms:
            self.first_action_ms = t
        try:
            out = outcome(await self.client.gift(to, gift_id, timeout_s=60))
        except (TimeoutError, ConnectionError) as exc:
            out = type(exc).__name__
        self.outcomes[out] += 1
        self.sent.append((t, out))
        if out in REFUSALS and not self.first_refusal_ms:
            self.first_refusal_ms = now_ms()


async def gift_at_human_pace(a: Account, to: str, start: float, end: float, rng: random.Random,
                             tag: str) -> None:
    tasks = []
    due, k = start, 0
    while due < end:
        await asyncio.sleep(max(0.0, due - time.time()))
        tasks.append(asyncio.create_task(a.gift(to, f"{tag}-{k}")))
        k += 1
        due += rng.uniform(*HUMAN_GAP_S)
    await asyncio.gather(*tasks)


async def gift_on_schedule(a: Account, to: str, gaps_s: Callable[[], float], end: float,
                           tag: str) -> None:
    """Gifts sent at times fixed in advance (not waiting for replies), `gaps_s()` apart."""
    tasks = []
    due, k = time.time(), 0
    while due < end:
        await asyncio.sleep(max(0.0, due - time.time()))
        tasks.append(asyncio.create_task(a.gift(to, f"{tag}-{k}")))
        k += 1
        due += gaps_s()
    await asyncio.gather(*tasks)


async def run_farm(target: Target, farm: list[Account], star: str, end: float,
                   rng: random.Random, tag: str) -> float:
    """Accounts connect one by one, round-robin on the devices (so the accounts beyond the
    third of each device come last), then gift at a human pace. Returns the first connect."""
    first = now_ms()
    for a in farm:
        a.first_action_ms = now_ms()
        await a.open(target)
        await asyncio.sleep(0.1)  # a distinct first-connect order per device
    await asyncio.gather(*(gift_at_human_pace(a, star, time.time() + rng.uniform(0, 1), end, rng,
                                              f"{tag}f") for a in farm))
    return first


async def enforcement_sample(target: Target, a: Account, b_ws: str, group: str,
                             star: str, deadline_s: float) -> dict[str, Any]:
    """`a` connected to gateway A (the target) and B; it gifts fast on A and probes on B;
    when does B refuse it, measured from the notice on A?"""
    ca = await a.open(target)
    cb = await Raw.open(b_ws, token(target.token_secret, a.user, a.device), a.ip)
    await asyncio.sleep(0.3)  # the connect signals are judged first
    end = time.time() + deadline_s
    sent: list[tuple[float, float, bool]] = []  # (sent, replied, refused) per probe, wall ms
    banned = asyncio.Event()

    async def one_probe() -> None:
        t = now_ms()
        try:
            reply = await cb.request("envelope.grab", timeout_s=30, group=group, envelope="x:y")
        except (TimeoutError, ConnectionError):
            return
        refused = reply.get("code") == "risk_banned"
        sent.append((t, now_ms(), refused))
        if refused:
            banned.set()

    async def probe() -> None:
        # open loop (not waiting for replies: an allowed grab goes through settlement), so the
        # moment B's view changed is known to within PROBE_EVERY_S
        tasks = []
        while time.time() < end and not banned.is_set():
            tasks.append(asyncio.create_task(one_probe()))
            await asyncio.sleep(PROBE_EVERY_S)
        await asyncio.gather(*tasks)

    async def burst() -> None:
        n, gap = ENFORCE_BURST
        tasks = []
        for k in range(n):
            tasks.append(asyncio.create_task(a.gift(star, f"enf-{k}")))
            await asyncio.sleep(gap)
        await asyncio.gather(*tasks)

    await asyncio.gather(probe(), burst())
    by = time.time() + 5
    while not any(act == "banned" for _, _, act in a.notices) and time.time() < by:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for c in (ca, cb):
        await c.close()
    notice = min((t for t, _, act in a.notices if act == "banned"), default=None)
    first = min((x for x in sent if x[2]), default=None)  # the first refused, by send time
    allowed_before = max((x[0] for x in sent if not x[2] and (first is None or x[0] < first[0])),
                         default=None)
    return {"user": a.user, "notice_a_ms": notice,
            "refused_b_ms": first[1] if first else None,  # its reply: the refusal seen
            "refused_b_probe_sent_ms": first[0] if first else None,
            "last_allowed_probe_sent_ms": allowed_before,
            "probes": len(sent)}


async def all_cases(target: Target) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):  # bounded: 500 cases a page
        page = await admin(target, "GET", f"/risk/cases?limit={CASES_PAGE}"
                           + (f"&cursor={quote(cursor, safe='')}" if cursor else ""), None)
        out.extend(page["cases"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    return out


def rel(t: float | None, t0: float | None) -> float | None:
    return round(t - t0, 1) if t is not None and t0 else None


def rule_report(rule: str, pop: list[Account], expected: list[str], cases: list[dict[str, Any]],
                first_action_ms: float) -> dict[str, Any]:
    users = {a.user for a in pop}
    mine = [c for c in cases if c["user"] in users and c["reason"] == rule]
    caught = sorted({c["user"] for c in mine})
    notices = [t for a in pop for t, reason, _ in a.notices if reason == rule]
    refusals = [a.first_refusal_ms for a in pop if a.first_refusal_ms]
    opened = min((c["opened_ms"] for c in mine), default=None)
    first_notice = min(notices, default=None)
    # per caught account: its case's opened_ms (the tripping action at the gateway) → its notice
    lags = []
    by_user = {a.user: a for a in pop}
    for c in mine:
        got = [t for t, reason, _ in by_user[c["user"]].notices if reason == rule]
        if got:
            lags.append(min(got) - c["opened_ms"])
    # gifts sent after the account's own notice had arrived, and still confirmed: none expected
    leaked = 0
    for a in pop:
        noticed = min((t for t, reason, _ in a.notices if reason == rule), default=None)
        if noticed is not None:
            leaked += sum(1 for t, out in a.sent if t > noticed and out == "gift.confirmed")
    return {
        "accounts": len(pop), "expected": len(expected), "caught": len(caught),
        "caught_expected": len(set(caught) & set(expected)),
        "missed": sorted(set(expected) - set(caught)),
        "unexpected": sorted(set(caught) - set(expected)),
        "first_action_ms": round(first_action_ms, 1),
        "detect_to_case_opened_ms": rel(opened, first_action_ms),
        "detect_to_first_notice_ms": rel(first_notice, first_action_ms),
        "detect_to_first_refusal_ms": rel(min(refusals, default=None), first_action_ms),
        "engine_signal_to_notice_ms": summary(lags) if lags else None,
        "refusals": sum(a.outcomes[k] for a in pop for k in REFUSALS),
        "refusal_codes": dict(Counter({k: sum(a.outcomes[k] for a in pop) for k in REFUSALS
                                       if any(a.outcomes[k] for a in pop)})),
        "confirmed_after_notice": leaked,
        "gifts_confirmed": sum(a.outcomes["gift.confirmed"] for a in pop),
    }


def phase_stats(gifts: list[tuple[float, float, str]], start: float, end: float) -> dict[str, Any]:
    inside = [g for g in gifts if start <= g[0] < end]
    ok = [ms for _, ms, out in inside if out == "gift.confirmed"]
    seconds = max(end - start, 1e-9)
    return {"seconds": round(seconds, 3), "sent": len(inside), "confirmed": len(ok),
            "sent_per_s": round(len(inside) / seconds, 1),
            "confirmed_per_s": round(len(ok) / seconds, 1),
            "confirmed_fraction": round(len(ok) / len(inside), 4) if inside else None,
            "latency_ms": summary(ok),
            "outcomes": dict(Counter(out for _, _, out in inside))}


async def run_attack(target: Target, run_id: str, procs: int, z: dict[str, Any],
                     second_ws: str | None) -> dict[str, Any]:
    p = f"lt{run_id}"
    rng = random.Random(run_id)
    normal = [f"{p}n{i}" for i in range(z["normal"])]
    stars = [f"{p}star{i}" for i in range(z["stars"])]
    farm = [Account(f"{p}f{i}", farm_ip(i % z["farm_devices"]), f"{p}fd{i % z['farm_devices']}")
            for i in range(z["farm"])]
    cluster = [Account(f"{p}c{k}", cluster_ip(k), f"{p}cd{k}") for k in range(z["cluster"])]
    rate_bots = [Account(f"{p}br{k}", bot_ip(k), f"{p}brd{k}") for k in range(z["rate_bots"])]
    regular_bots = [Account(f"{p}bg{k}", bot_ip(100 + k), f"{p}bgd{k}")
                    for k in range(z["regular_bots"])]
    probes = [Account(f"{p}e{k}", probe_ip(k), f"{p}ed{k}") for k in range(z["samples"])]
    fresh = f"{p}x"  # a new account trying a banned bot's device
    attackers = [*farm, *cluster, *rate_bots, *regular_bots]
    senders = [*normal, *(a.user for a in [*attackers, *probes])]
    cards = int(20 * (z["baseline_s"] + z["attack_s"])) + 200
    await seed(target, senders, [*stars, fresh], [(s, st) for s in senders for st in stars], cards)
    if second_ws is None and target.data_dir is not None:
        second_ws = add_gateway(target)
    # the attackers whose first action is a gift connect now (a connect is no attack of theirs)
    for a in [*cluster, *rate_bots, *regular_bots]:
        await a.open(target)
    parts = split(list(range(len(normal))), procs)
    cfgs = [{"ws": target.ws, "secret": target.token_secret, "stars": stars, "tag": f"{run_id}{j}",
             "seconds": z["baseline_s"] + z["attack_s"], "seed": f"{run_id}-{j}",
             "users": {normal[i]: [normal_ip(i), f"{p}nd{i}"] for i in part}}
            for j, part in enumerate(parts)]
    stop = asyncio.Event()
    expected_gifts = int(len(normal) * (z["baseline_s"] + z["attack_s"]) / 1.0)
    with Shards("loadtest.risk:normal_shard", cfgs, timeout_s=z["attack_s"] + 600) as sh:
        await sh.sync()
        bar = asyncio.create_task(progress_bar("attack", expected_gifts, lambda: int(sh.progress.value),
                                               stop))
        await sh.sync()
        t_start = time.time()
        await asyncio.sleep(z["baseline_s"])
        t_attack = time.time()
        end = t_attack + z["attack_s"]
        reg_gap = z["regular_gap_s"]
        populations = [
            run_farm(target, farm, stars[1 % len(stars)], end, rng, f"{run_id}"),
            *(gift_at_human_pace(a, stars[0], t_attack + rng.uniform(0, z["cluster_spread_s"]), end,
                                 rng, f"{run_id}c") for a in cluster),
            *(gift_on_schedule(a, stars[0], lambda: rng.uniform(*RATE_BOT_GAP_MS) / 1000, end,
                               f"{run_id}r") for a in rate_bots),
            *(gift_on_schedule(a, stars[0], lambda: reg_gap, end, f"{run_id}g")
              for a in regular_bots),
        ]
        await asyncio.gather(*populations)
        outs = await sh.results()
        t_end = end  # the normal users stop sending then (their replies may come later)
        stop.set()
        await bar
    await asyncio.sleep(1.0)  # decisions on the last signals
    for a in attackers:
        if a.client is not None:
            await a.client.close()
    # the device blacklist: a new account on a banned bot's device is refused at connect
    blacklist: dict[str, Any] = {"tried": False}
    if rate_bots or regular_bots:
        bot = (rate_bots or regular_bots)[0]
        blacklist = {"tried": True, "device": bot.device}
        try:
            c = await Raw.open(target.ws, token(target.token_secret, fresh, bot.device), bot_ip(250))
            await c.close()
            blacklist["refused"], blacklist["close_code"] = False, None
        except Refused as exc:
            blacklist["refused"], blacklist["close_code"] = True, exc.code
    # enforcement on a second gateway, one sample at a time
    samples = []
    for a in probes:
        samples.append(await enforcement_sample(target, a, second_ws or target.ws, f"{p}nogroup",
                                                stars[0], z["sample_max_s"]))
    cases = await all_cases(target)
    opened = {c["user"]: c["opened_ms"] for c in cases if c["reason"].startswith("automation")}
    lat = [s["refused_b_ms"] - s["notice_a_ms"] for s in samples
           if s["refused_b_ms"] is not None and s["notice_a_ms"] is not None]
    from_case = [s["refused_b_ms"] - opened[s["user"]] for s in samples
                 if s["refused_b_ms"] is not None and s["user"] in opened]
    for s in samples:
        s["case_opened_ms"] = opened.get(s["user"])
    enforcement = {
        "second_gateway": second_ws is not None,
        "samples": len(samples), "measured": len(lat),
        "notice_a_to_refusal_b_ms": stats_of(lat),
        "case_opened_to_refusal_b_ms": stats_of(from_case),
        "probe_every_ms": PROBE_EVERY_S * 1000, "detail": samples,
    }
    # the rules
    farm_devices = z["farm_devices"]
    rules = {
        "shared_device": rule_report("shared_device", farm, [a.user for a in farm[3 * farm_devices:]],
                                     cases, min(a.first_action_ms for a in farm) if farm else 0.0),
        "ip_cluster": rule_report("ip_cluster", cluster,
                                  [a.user for a in cluster if a.first_action_ms]
                                  if len(cluster) >= 20 else [], cases,
                                  min((a.first_action_ms for a in cluster if a.first_action_ms),
                                      default=0.0)),
        "automation_rate": rule_report("automation_rate", rate_bots, [a.user for a in rate_bots],
                                       cases, min((a.first_action_ms for a in rate_bots), default=0.0)),
        "automation_regular": rule_report("automation_regular", regular_bots,
                                          [a.user for a in regular_bots], cases,
                                          min((a.first_action_ms for a in regular_bots), default=0.0)),
    }
    rule_of = {a.user: r for r, pop in (("shared_device", farm), ("ip_cluster", cluster),
                                        ("automation_rate", rate_bots),
                                        ("automation_regular", regular_bots)) for a in pop}
    wrong_rule = sorted({f"{c['user']}:{c['reason']}" for c in cases
                         if c["user"] in rule_of and c["reason"] != rule_of[c["user"]]})
    # false positives among the normal users
    normal_set = set(normal)
    gifts = [g for o in outs for g in o["gifts"]]
    fp_cases = [c for c in cases if c["user"] in normal_set]
    fp_notices = [n for o in outs for n in o["notices"]]
    fp_refused = sum(1 for g in gifts if g[2] in REFUSALS)
    fp_users = sorted({c["user"] for c in fp_cases} | {n[0] for n in fp_notices})
    base = phase_stats(gifts, t_start, t_attack)
    during = phase_stats(gifts, t_attack, t_end)
    ok_during = sorted((g[0] - t_start, g[1]) for g in gifts
                       if g[2] == "gift.confirmed" and g[0] >= t_attack)
    all_ok = [(g[0] - t_start, g[1]) for g in gifts if g[2] == "gift.confirmed"]
    caught_all = all(not r["missed"] for r in rules.values())
    return {
        "throughput_per_s": during["confirmed_per_s"],  # the normal users' gifts/s under attack
        "latency_ms": during["latency_ms"],
        "normal": {"users": len(normal), "baseline": base, "during_attack": during,
                   "kept_ratio": (round(during["confirmed_per_s"] / base["confirmed_per_s"], 3)
                                  if base["confirmed_per_s"] else None)},
        "rules": rules,
        "all_caught": caught_all,
        "wrong_rule": wrong_rule,
        "false_positives": {"users": len(fp_users), "cases": len(fp_cases), "notices": len(fp_notices),
                            "refused_gifts": fp_refused, "who": fp_users[:20]},
        "enforcement": enforcement,
        "device_blacklist": blacklist,
        "cases_total": len(cases),
        "attack_started_s": round(t_attack - t_start, 3), "seconds": round(t_end - t_start, 3),
        "timeline": all_ok[:100_000], "samples_ms": [ms for _, ms in ok_during][:100_000],
        "params": {"normal": len(normal), "stars": len(stars), "human_gap_s": list(HUMAN_GAP_S),
                   "farm": len(farm), "farm_devices": farm_devices, "cluster": len(cluster),
                   "cluster_spread_s": z["cluster_spread_s"], "rate_bots": len(rate_bots),
                   "rate_bot_gap_ms": list(RATE_BOT_GAP_MS), "regular_bots": len(regular_bots),
                   "regular_gap_s": reg_gap, "baseline_s": z["baseline_s"], "attack_s": z["attack_s"],
                   "enforcement_samples": len(probes), "procs": len(cfgs),
                   "target_risk_settings": {k: v for k, v in target.env.items()
                                            if k in RISK_ENV or "BOT" in k or "RISK" in k}},
    }


def stats_of(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    s = sorted(values)
    return {"p50": round(s[(len(s) - 1) // 2], 2), "max": round(s[-1], 2), "min": round(s[0], 2),
            "n": len(s)}


# -- risk-cost ----------------------------------------------------------------------
async def cost_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    """Senders at max rate (W in flight each), each from its own address and device; their
    recipients connected, counting what they receive."""
    received = 0

    def on_received(msg: dict[str, Any]) -> None:
        nonlocal received
        if msg.get("type") == "gift.received":
            received += 1

    sem = asyncio.Semaphore(CONNECT_CONCURRENCY_DEFAULT)

    async def conn(user: str, ip: str | None, device: str | None, handler: Any) -> tuple[str, Raw]:
        async with sem:
            return user, await Raw.open(cfg["ws"], token(cfg["secret"], user, device), ip, handler)

    recips = dict(await asyncio.gather(*(conn(r, None, None, on_received)
                                         for r in cfg["pairs"].values())))
    senders = dict(await asyncio.gather(*(conn(s, ip, d, None) for s, (ip, d) in cfg["senders"].items())))
    await ctl.sync()
    t0 = time.perf_counter()
    deadline = t0 + cfg["max_s"]
    confirm_ms: list[float] = []
    outcomes: Counter[str] = Counter()

    async def sender(user: str, c: Raw) -> None:
        window = asyncio.Semaphore(cfg["window"])
        tasks = []

        async def one(k: int) -> None:
            t = time.perf_counter()
            try:
                out = outcome(await c.gift(cfg["pairs"][user], f"{cfg['tag']}-{k}", timeout_s=60))
            except (TimeoutError, ConnectionError) as exc:
                out = type(exc).__name__
            finally:
                window.release()
            outcomes[out] += 1
            if out == "gift.confirmed":
                confirm_ms.append((time.perf_counter() - t) * 1000)
            ctl.tick()

        for k in range(cfg["per_sender"]):
            if time.perf_counter() > deadline:
                break
            await window.acquire()
            tasks.append(asyncio.create_task(one(k)))
        await asyncio.gather(*tasks)

    await asyncio.gather(*(sender(u, c) for u, c in senders.items()))
    seconds = time.perf_counter() - t0
    by = time.perf_counter() + 15
    while received < len(confirm_ms) and time.perf_counter() < by:  # noqa: ASYNC110 - bounded wait
        await asyncio.sleep(0.05)
    for c in [*senders.values(), *recips.values()]:
        await c.close()
    return {"confirm_ms": confirm_ms, "seconds": seconds, "outcomes": dict(outcomes),
            "confirmed": len(confirm_ms), "received": received}


async def engine_backlog(redis: Any, partitions: int) -> int:
    """Risk signals written and not yet judged (the engine group's lag plus pending)."""
    total = 0
    for part in range(partitions):
        stream = keys.risk_stream(part)
        try:
            groups = await redis.xinfo_groups(stream)
        except Exception:  # no stream yet
            continue
        for g in groups:
            lag = g.get("lag")
            total += int(g.get("pending", 0)) + (int(lag) if lag is not None else 0)
    return total


async def cost_phase(on: bool, run_id: str, procs: int, z: dict[str, Any], max_s: float,
                     audit: Audit) -> dict[str, Any]:
    target = start_own(COST_ON_ENV if on else COST_OFF_ENV)
    try:
        p = f"lt{run_id}"
        senders = [f"{p}s{i}" for i in range(z["senders"])]
        recips = [f"{p}r{i}" for i in range(z["senders"])]
        pairs = dict(zip(senders, recips, strict=True))
        per_sender = max(1, z["gifts"] // len(senders))
        await seed(target, senders, recips, list(pairs.items()), cards=per_sender + 10)
        index = {s: i for i, s in enumerate(senders)}
        cfgs = [{"ws": target.ws, "secret": target.token_secret, "tag": f"{run_id}p{j}",
                 "window": z["window"], "max_s": max_s, "per_sender": per_sender,
                 "pairs": {s: pairs[s] for s in part},
                 "senders": {s: [sender_ip(index[s]), f"{p}d{index[s]}"] for s in part}}
                for j, part in enumerate(split(senders, procs))]
        partitions = int(target.env.get("GIFTWIRE_PARTITIONS", "1"))
        redis = redis_connect(target.redis_url)
        backlog_max = 0
        stop = asyncio.Event()

        async def sample_backlog() -> None:
            nonlocal backlog_max
            while not stop.is_set():
                backlog_max = max(backlog_max, await engine_backlog(redis, partitions))
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except TimeoutError:
                    pass

        label = "on" if on else "off"
        with Shards("loadtest.risk:cost_shard", cfgs, timeout_s=max_s + 300) as sh:
            await sh.sync()
            sampler = asyncio.create_task(sample_backlog())
            bar = asyncio.create_task(progress_bar(f"risk {label}", per_sender * len(senders),
                                                   lambda: int(sh.progress.value), stop))
            outs = await sh.results()
            stop.set()
            await asyncio.gather(sampler, bar)
        backlog_end = await engine_backlog(redis, partitions)
        t = time.perf_counter()
        while await engine_backlog(redis, partitions) and time.perf_counter() - t < 120:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        drain_s = time.perf_counter() - t
        cases = (await admin(target, "GET", "/risk/cases?limit=100", None))["cases"]
        await redis.aclose()
        ok, text = await audit(target)
    finally:
        target.stop()
    confirm = [x for o in outs for x in o["confirm_ms"]]
    outcomes: Counter[str] = Counter()
    for o in outs:
        outcomes.update(o["outcomes"])
    seconds = max(o["seconds"] for o in outs)
    return {"risk": label, "throughput_per_s": round(len(confirm) / seconds, 1),
            "latency_ms": summary(confirm), "confirmed": len(confirm), "seconds": round(seconds, 3),
            "outcomes": dict(outcomes),
            "exactly_once": sum(o["received"] for o in outs) == len(confirm),
            "engine_backlog_max": backlog_max if on else None,
            "engine_backlog_at_end": backlog_end if on else None,
            "engine_drain_s": round(drain_s, 3) if on else None,
            "cases": len(cases), "case_reasons": dict(Counter(c["reason"] for c in cases)),
            "audit_ok": ok, "audit": text, "samples_ms": confirm}


async def run_cost(run_id: str, procs: int, z: dict[str, Any], max_s: float,
                   audit: Audit) -> dict[str, Any]:
    phases = []
    for r in range(z["rounds"]):
        # off, on, on, off, ...: a drift over the run (a warming disk cache, a neighbour's
        # load) weighs on both sides alike instead of on the second of every pair
        for on in ((False, True) if r % 2 == 0 else (True, False)):
            phases.append(await cost_phase(on, f"{run_id}{r}{int(on)}", procs, z, max_s, audit))
    off = [x for x in phases if x["risk"] == "off"]
    on_ = [x for x in phases if x["risk"] == "on"]
    rate_off = sum(x["confirmed"] for x in off) / sum(x["seconds"] for x in off)
    rate_on = sum(x["confirmed"] for x in on_) / sum(x["seconds"] for x in on_)
    pairs = [round(b["throughput_per_s"] / a["throughput_per_s"], 3)  # per round
             for a, b in zip(off, on_, strict=True) if a["throughput_per_s"]]
    samples_on = [x for p in on_ for x in p["samples_ms"]]
    samples_off = [x for p in off for x in p["samples_ms"]]
    for ph in phases:
        ph["audit_passed"] = "audit passed" in ph["audit"]
        del ph["samples_ms"]
    return {
        "throughput_per_s": round(rate_on, 1),  # gifts/s with the engine on
        "off_per_s": round(rate_off, 1),
        "on_off_ratio": round(rate_on / rate_off, 3) if rate_off else None,
        "pair_ratios": pairs,
        "latency_ms": summary(samples_on),
        "latency_off_ms": summary(samples_off),
        "phases": phases,
        "samples_ms": samples_on[:100_000],
        "exactly_once": all(p["exactly_once"] for p in phases),
        "audits_ok": all(p["audit_ok"] for p in phases),
        "params": {"senders": z["senders"], "gifts_per_phase": max(1, z["gifts"] // z["senders"])
                   * z["senders"], "window": z["window"], "rounds": z["rounds"], "procs": procs,
                   "order": "off, on in even rounds, on, off in odd ones (ABBA), each a fresh "
                            "target on its own Valkey",
                   "on_settings": COST_ON_ENV, "off_settings": COST_OFF_ENV},
    }
