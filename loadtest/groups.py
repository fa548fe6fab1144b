"""Fan-group scenarios: a red-envelope rush and a busy group chat, each on one fan group
that the harness creates through the admin API (rule `iron_fan`, its capacity raised for
the run), with registered users tagged iron fans of its owner who join over the WebSocket
(`group.join`: a member now, and watching, so the group's frames reach them).

envelope: `members` join one group; a sender (also a member, seeded with cards) sends one red
          envelope of `total` cards for `shares` grabbers; then every member grabs it once, all
          at the same moment, from `--procs` processes. At full size that is 1,000 members
          (the group's capacity raised to 1,001), not 500 members grabbing twice: a member's
          second grab is a retry the server answers with the same share, not a contender.
          Measured: grab → reply per attempt (a winner's `envelope.grabbed` comes once its
          balance is credited, so for winners it is grab → credited; the others get `error`
          `envelope_empty`), grabs answered per second over the rush (first grab sent to
          last reply, across processes, wall clock), and exactness: the winners are exactly
          `shares` members, their shares sum to `total`, each winner's balance is its share,
          and the group's record of the envelope (admin API) agrees reply for reply.
chat:     `members` join and watch one group; `posters` post `group.post` at `rate` messages/s
          in all: the owner and admins it promoted (`group.manage` promote), whom the flood
          rule (5 messages per 10 s for members) does not apply to, so the target needs no
          setting changed. Each message's text carries its send time (µs since the epoch);
          members measure post → seen lag from the coalesced `group.frame`s, count every
          message they got (fanned out = messages × members seen per second), and drops
          (every accepted message × members, minus what was seen; group frames are at most
          once, like room frames), and frames that went back (duplicates: must be none).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from typing import Any

from loadtest.scenarios import TIMELINE_MAX, SharedFrames, connect_all
from loadtest.shards import Shards, progress_bar, split
from loadtest.stats import summary
from loadtest.target import Target, admin, seed
from protocol.client import Client

JOIN_CONCURRENCY = 100  # group.join requests in flight per process
IRON_FAN_CONCURRENCY = 8  # admin PUT /iron-fans calls in flight
DELIVERY_WAIT_S = 15.0
JOINS_SETTLE_S = 0.5  # after the last post / grab: how long frames may still arrive
SAMPLES_MAX = 50_000  # latencies kept for the plot (the summary uses all of them)
ASSET = "note.do"
ENVELOPE_ID = "rush"


# -- set-up shared by both ----------------------------------------------------
async def tag_iron_fans(target: Target, fans: list[str], creator: str) -> None:
    """`PUT /admin/v1/iron-fans` for each fan (the API takes one at a time), a few at once."""
    sem = asyncio.Semaphore(IRON_FAN_CONCURRENCY)

    async def one(fan: str) -> None:
        async with sem:
            await admin(target, "PUT", "/iron-fans", {"fan": fan, "creator": creator, "iron": True})

    await asyncio.gather(*(one(f) for f in fans))


async def make_group(target: Target, group: str, owner: str, fans: list[str]) -> None:
    """An iron-fan group of `owner` with room for the owner and every one of `fans`, who are
    tagged iron fans of the owner (all of them registered users already)."""
    await admin(target, "PUT", f"/groups/{group}", {"owner": owner, "type": "core",
                                                    "rule": "iron_fan", "capacity": len(fans) + 1})
    await tag_iron_fans(target, fans, owner)


async def join(client: Client, group: str, timeout_s: float = 60.0) -> dict[str, Any]:
    reply = await client.request("group.join", group=group, timeout_s=timeout_s)
    if reply["type"] != "group.snapshot":
        raise RuntimeError(f"group.join {group} answered {reply}")
    return reply


async def join_all(clients: dict[str, Client], group: str) -> None:
    sem = asyncio.Semaphore(JOIN_CONCURRENCY)

    async def one(c: Client) -> None:
        async with sem:
            await join(c, group)

    await asyncio.gather(*(one(c) for c in clients.values()))


async def close_all(clients: dict[str, Client]) -> None:
    for c in clients.values():
        await c.close()


# -- envelope -------------------------------------------------------------------
async def envelope_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    """Members of the group: join, wait for the envelope, then all grab it at once."""
    grab_events = 0  # `grab` events in the group's frames, over all members here
    done: set[str] = set()  # members here who saw `envelope_done`

    def member(user: str) -> Any:
        def on_event(msg: dict[str, Any]) -> None:
            nonlocal grab_events
            if msg["type"] != "group.frame":
                return
            for e in msg["events"]:
                if e["kind"] == "grab":
                    grab_events += 1
                elif e["kind"] == "envelope_done":
                    done.add(user)
        return on_event

    clients = await connect_all(cfg["ws"], cfg["tokens"], per_user=member, strict=False)
    await join_all(clients, cfg["group"])
    gc.freeze()
    await ctl.sync()  # every member here is watching
    await ctl.sync()  # the envelope is open: rush
    outcomes: Counter[str] = Counter()
    grab_ms: list[float] = []
    credited_ms: list[float] = []
    empty_ms: list[float] = []
    won: dict[str, list[int]] = {}  # member → [share, balance]
    timeline: list[tuple[float, float]] = []
    ended = started = time.time()
    t0 = time.perf_counter()

    async def grab(user: str, c: Client) -> None:
        nonlocal ended
        t = time.perf_counter()
        try:
            reply = await c.request("envelope.grab", group=cfg["group"], envelope=cfg["envelope"],
                                    timeout_s=cfg["timeout_s"])
        except (TimeoutError, ConnectionError) as exc:
            outcomes[type(exc).__name__] += 1
            return
        ms = (time.perf_counter() - t) * 1000
        ended = max(ended, time.time())
        outcomes[str(reply.get("code", reply["type"]))] += 1
        grab_ms.append(ms)
        if len(timeline) < TIMELINE_MAX:
            timeline.append((t - t0, ms))
        if reply["type"] == "envelope.grabbed":
            credited_ms.append(ms)
            won[user] = [int(reply["share"]), int(reply["balance"])]
        elif reply.get("code") == "envelope_empty":
            empty_ms.append(ms)
        ctl.tick()

    await asyncio.gather(*(grab(u, c) for u, c in clients.items()))
    by = time.perf_counter() + DELIVERY_WAIT_S
    while len(done) < len(clients) and time.perf_counter() < by:  # noqa: ASYNC110 - bounded wait
        await asyncio.sleep(0.05)
    await close_all(clients)
    return {"grab_ms": grab_ms, "credited_ms": credited_ms, "empty_ms": empty_ms, "won": won,
            "outcomes": dict(outcomes),
            "started": started, "ended": ended, "timeline": timeline, "members": len(clients),
            "grab_events": grab_events, "done_seen": len(done)}


async def run_envelope(target: Target, run_id: str, procs: int, members: int, shares: int,
                       total: int, max_s: float) -> dict[str, Any]:
    """One envelope of `total` cards for `shares`, grabbed once by each of `members` at once."""
    if not 1 <= shares <= min(total, members):
        raise SystemExit(f"envelope: need 1 ≤ shares ≤ total and ≤ members (got {shares}, "
                         f"{total}, {members})")
    group, owner, sender = f"lt{run_id}env", f"lt{run_id}eo", f"lt{run_id}es"
    users = [f"lt{run_id}e{i}" for i in range(members)]
    name = f"{sender}:{ENVELOPE_ID}"  # how the group names the sender's envelope
    await seed(target, [sender], [owner, *users], [], cards=total)
    await make_group(target, group, owner, [sender, *users])
    cfgs = [{"ws": target.ws, "group": group, "envelope": name, "timeout_s": max_s,
             "tokens": {u: target.token(u) for u in part}} for part in split(users, procs)]
    stop = asyncio.Event()
    with Shards("loadtest.groups:envelope_shard", cfgs, timeout_s=max_s + 600) as sh:
        s = await Client.connect(target.ws, target.token(sender), timeout_s=60,
                                 on_event=lambda m: None, strict=False)
        await join(s, group)
        await sh.sync()  # every member is watching
        sent = await s.request("envelope.send", group=group, envelope=ENVELOPE_ID, asset=ASSET,
                               total=total, shares=shares, timeout_s=60)
        if sent["type"] != "envelope.sent" or sent["envelope"] != name:
            raise RuntimeError(f"envelope.send answered {sent}")
        bar = asyncio.create_task(progress_bar("envelope", members, lambda: int(sh.progress.value),
                                               stop))
        await sh.sync()
        outs = await sh.results()
        stop.set()
        await bar
        await s.close()
    state = await admin(target, "GET", f"/groups/{group}/envelopes/{name}", None)
    won = {u: x for o in outs for u, x in o["won"].items()}
    outcomes: Counter[str] = Counter()
    for o in outs:
        outcomes.update(o["outcomes"])
    grab_ms = [x for o in outs for x in o["grab_ms"]]
    credited = [x for o in outs for x in o["credited_ms"]]
    seconds = max(o["ended"] for o in outs) - min(o["started"] for o in outs)
    shares_sum = sum(share for share, _ in won.values())
    recorded = {u: int(x) for u, x in state["grabs"].items()}
    checks = {
        "winners_equal_shares": len(won) == shares,
        "shares_sum_to_total": shares_sum == total,
        "every_share_at_least_1": all(share >= 1 for share, _ in won.values()),
        "balance_is_share": all(balance == share for share, balance in won.values()),
        "group_record_agrees": recorded == {u: share for u, (share, _) in won.items()},
        "envelope_done": (state["left"], state["left_shares"], state["state"]) == (0, 0, "done"),
        "every_grab_answered": (outcomes["envelope.grabbed"] + outcomes["envelope_empty"]
                                == members == sum(outcomes.values())),
    }
    return {
        "throughput_per_s": round(len(grab_ms) / seconds, 1) if seconds > 0 else 0.0,  # grabs answered/s
        "latency_ms": summary(grab_ms),  # grab → reply, every attempt
        "credited_latency_ms": summary(credited),  # grab → `envelope.grabbed` (credited)
        "empty_latency_ms": summary([x for o in outs for x in o["empty_ms"]]),  # → envelope_empty
        "grabs": members, "winners": len(won), "shares": shares, "total": total,
        "shares_sum": shares_sum, "share_min": min((x for x, _ in won.values()), default=0),
        "share_max": max((x for x, _ in won.values()), default=0),
        "outcomes": dict(outcomes), "checks": checks,
        "exactly_once": all(checks.values()),
        "rush_seconds": round(seconds, 3),
        # the group's frames are at most once: what the members saw of the rush
        "grab_events_seen": sum(o["grab_events"] for o in outs),
        "grab_events_expected": shares * members,
        "members_saw_done": sum(o["done_seen"] for o in outs),
        "timeline": [p for o in outs for p in o["timeline"]],
        "samples_ms": grab_ms[:SAMPLES_MAX],
        "params": {"members": members, "shares": shares, "total": total, "asset": ASSET,
                   "grabs_per_member": 1, "procs": len(cfgs), "group_capacity": members + 2},
    }


# -- chat -----------------------------------------------------------------------
async def chat_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    """Members watching the group: count the posters' messages in its coalesced frames and
    their lag from the send time in the text."""
    posters = frozenset(cfg["posters"])

    def posted_ms(e: dict[str, Any]) -> float | None:
        """A poster's message: its text starts with the send time (µs)."""
        if e["kind"] != "message" or e["message"]["from"] not in posters:
            return None
        return int(e["message"]["text"].split(" ", 1)[0]) / 1000

    seen = SharedFrames("group.frame", posted_ms, ctl)
    clients = await connect_all(cfg["ws"], cfg["tokens"], per_user=seen.watcher, strict=False)
    await join_all(clients, cfg["group"])
    gc.freeze()
    await asyncio.sleep(JOINS_SETTLE_S)  # the last joins' frames arrive before the count starts
    await ctl.sync()  # every member here is watching
    frames_before = seen.frames  # the joins' frames are not the chat's
    await ctl.sync()  # the parent has posted everything and waited for delivery
    await close_all(clients)
    return {"lag_ms": seen.lag_ms, "seen": seen.events, "frames": seen.frames - frames_before,
            "members": len(clients), "duplicates": seen.duplicates}


async def run_chat(target: Target, run_id: str, procs: int, members: int, posters: int,
                   rate: float, seconds: float, max_s: float) -> dict[str, Any]:
    """`members` watch a group; the owner and `posters - 1` admins post `rate` messages/s in
    all for `seconds`; members measure post → seen."""
    if rate <= 0 or seconds <= 0 or members < 1:
        raise SystemExit(f"chat: need a rate, seconds and members above 0 (got {rate}, {seconds}, "
                         f"{members})")
    group, owner = f"lt{run_id}chat", f"lt{run_id}co"
    admins = [f"lt{run_id}ca{i}" for i in range(max(0, posters - 1))]
    users = [f"lt{run_id}c{i}" for i in range(members)]
    total = max(1, int(rate * seconds))
    await seed(target, [], [owner, *admins, *users], [], cards=0)
    await make_group(target, group, owner, [*admins, *users])
    speakers = [owner, *admins]
    cfgs = [{"ws": target.ws, "group": group, "posters": speakers,
             "tokens": {u: target.token(u) for u in part}} for part in split(users, procs)]
    stop = asyncio.Event()
    with Shards("loadtest.groups:chat_shard", cfgs, timeout_s=max_s + 600) as sh:
        # the posters watch nothing: the owner is a member from the start, admins leave
        # the watch after joining (they stay members), so their frames cost no one here
        clients = await connect_all(target.ws, {u: target.token(u) for u in speakers},
                                    lambda m: None, strict=False)
        for a in admins:
            await join(clients[a], group)
            await clients[a].request("group.close", group=group, timeout_s=60)
            promoted = await clients[owner].request("group.manage", group=group, action="promote",
                                                    user=a, timeout_s=60)
            if promoted.get("role") != "admin":
                raise RuntimeError(f"promote {a} answered {promoted}")
        await sh.sync()  # every member is watching
        expected = total * members
        bar = asyncio.create_task(progress_bar("chat", expected, lambda: int(sh.progress.value), stop))
        sends = []
        t0 = time.perf_counter()
        for k in range(total):
            await asyncio.sleep(max(0.0, t0 + k / rate - time.perf_counter()))
            if time.perf_counter() - t0 > max_s:
                break
            text = f"{int(time.time() * 1e6)} message {k} from the load test, hello everyone"
            sends.append(asyncio.create_task(timed(clients[speakers[k % len(speakers)]].request(
                "group.post", group=group, msg_id=f"{run_id}m{k}", text=text, timeout_s=60))))
        replies = await asyncio.gather(*sends, return_exceptions=True)
        sent_s = time.perf_counter() - t0
        ok = sum(isinstance(r, tuple) and r[0]["type"] == "group.posted" for r in replies)
        by = time.perf_counter() + DELIVERY_WAIT_S
        while int(sh.progress.value) < ok * members and time.perf_counter() < by:  # noqa: ASYNC110 - polls another process
            await asyncio.sleep(0.05)
        delivered_s = time.perf_counter() - t0
        await sh.sync()
        outs = await sh.results()
        stop.set()
        await bar
        await close_all(clients)
    outcomes: Counter[str] = Counter(
        str(r[0].get("code", r[0]["type"])) if isinstance(r, tuple) else type(r).__name__
        for r in replies)
    ack_ms = [r[1] for r in replies if isinstance(r, tuple) and r[0]["type"] == "group.posted"]
    lags = [x for o in outs for x in o["lag_ms"]]
    seen = sum(o["seen"] for o in outs)
    frames = sum(o["frames"] for o in outs)
    step = max(1, len(lags) // SAMPLES_MAX)
    return {
        "throughput_per_s": round(seen / delivered_s, 1),  # messages × members seen per second
        "latency_ms": summary(lags),  # post → seen by a member
        "post_ack_ms": summary(ack_ms),  # post → `group.posted` at the poster
        "frames_per_s": round(frames / delivered_s, 1),  # group frames members got per second
        "posted": ok, "outcomes": dict(outcomes), "seen": seen, "expected": ok * members,
        "dropped": ok * members - seen, "frames": frames,
        "post_rate_achieved": round(len(replies) / sent_s, 1),
        "seconds": round(sent_s, 3), "delivered_seconds": round(delivered_s, 3),
        # group delivery is at most once: no frame twice (drops are reported, not hidden)
        "exactly_once": not any(o["duplicates"] for o in outs),
        "samples_ms": lags[::step],
        "params": {"members": members, "posters": len(speakers), "rate": rate, "seconds": seconds,
                   "messages": total, "procs": len(cfgs),
                   "posters_are": "the owner and admins (not subject to the flood rule)",
                   "path": "a fan group: coalesced group.frame per tick"},
    }


async def timed(request: Any) -> tuple[dict[str, Any], float]:
    """A request's reply and its time in ms."""
    t = time.perf_counter()
    reply: dict[str, Any] = await request
    return reply, (time.perf_counter() - t) * 1000
