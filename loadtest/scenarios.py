"""The scenarios' load generators (one per process) and their drivers in the parent.

gifts: senders gifting followed recipients; send→confirmed at the sender and
       send→received at the recipient (both in the same process, one clock).
room:  V receivers on the per-user push path (live rooms will switch it to the room
       broadcast); the parent sends gifts at a rate; lag is measured at the receivers.
idle:  C idle authenticated connections; server RSS per connection from /proc.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

import orjson

from loadtest.shards import CONNECT_CONCURRENCY_DEFAULT, Shards, progress_bar, split
from loadtest.stats import summary
from loadtest.target import Target, admin, rss_bytes, seed
from loadtest.viewer import Viewer
from protocol.client import Client
from server.bench import connect

TIMELINE_MAX = 20_000  # points kept for the plot, per shard


async def connect_all(ws: str, tokens: dict[str, str], on_event: Any = None,
                      per_user: Any = None, strict: bool = True) -> dict[str, Client]:
    """Clients for `tokens`; events go to `on_event`, or to `per_user(user)`'s handler;
    `strict=False`: frames parsed, not checked against the protocol (room viewers)."""
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY_DEFAULT)

    async def one(user: str, token: str) -> tuple[str, Client]:
        handler = per_user(user) if per_user is not None else on_event
        async with sem:
            return user, await Client.connect(ws, token, timeout_s=60, on_event=handler,
                                              strict=strict)

    return dict(await asyncio.gather(*(one(u, t) for u, t in tokens.items())))


# -- gifts ------------------------------------------------------------------
async def gifts_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
    received: Counter[str] = Counter()
    recv_ms: list[float] = []

    def on_received(msg: dict[str, Any]) -> None:
        if msg["type"] == "gift.received":
            received[msg["transfer_id"]] += 1
            t = sent_at.get(msg["transfer_id"])  # gift ids repeat across senders; transfer ids not
            if t is not None:
                recv_ms.append((time.perf_counter() - t) * 1000)

    recipients = await connect_all(cfg["ws"], cfg["recipient_tokens"], on_received)
    senders = await connect_all(cfg["ws"], cfg["sender_tokens"], lambda m: None)
    await ctl.sync()
    t0 = time.perf_counter()
    deadline = t0 + cfg["max_s"]
    confirm_ms: list[float] = []
    timeline: list[tuple[float, float]] = []
    outcomes: Counter[str] = Counter()
    confirmed: list[str] = []

    async def run_sender(user: str, client: Client, to: str) -> None:
        # each sender has its own phase, so a set rate arrives evenly, not in bursts
        phase = cfg["phase"][user]
        window = asyncio.Semaphore(cfg["window"])
        tasks = []

        async def one(k: int) -> None:
            gift_id = f"{cfg['tag']}-{k}"
            t = sent_at[f"{user}:{gift_id}"] = time.perf_counter()
            try:
                reply = await client.send_gift(to, "note.do", 1, gift_id=gift_id, timeout_s=60)
            except TimeoutError:
                outcomes["timeout"] += 1
                return
            finally:
                window.release()
            ms = (time.perf_counter() - t) * 1000
            outcomes[str(reply.get("code", reply["type"]))] += 1
            if reply["type"] == "gift.confirmed":
                confirm_ms.append(ms)
                confirmed.append(reply["transfer_id"])
                if len(timeline) < TIMELINE_MAX:
                    timeline.append((t - t0, ms))
            ctl.tick()

        for k in range(cfg["per_sender"]):
            if time.perf_counter() > deadline:
                break
            if cfg["rate_per_sender"]:
                due = t0 + (k + phase) / cfg["rate_per_sender"]
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await window.acquire()
            tasks.append(asyncio.create_task(one(k)))
        await asyncio.gather(*tasks)

    await asyncio.gather(*(run_sender(u, c, cfg["pairs"][u]) for u, c in senders.items()))
    elapsed = time.perf_counter() - t0
    settle_by = time.perf_counter() + 15
    while sum(received[t] > 0 for t in confirmed) < len(confirmed) and time.perf_counter() < settle_by:  # noqa: ASYNC110 - bounded wait
        await asyncio.sleep(0.05)
    for c in [*senders.values(), *recipients.values()]:
        await c.close()
    return {"confirm_ms": confirm_ms, "recv_ms": recv_ms, "timeline": timeline, "seconds": elapsed,
            "outcomes": dict(outcomes), "confirmed": len(confirmed),
            "received_once": sum(received[t] == 1 for t in confirmed),
            "received_twice": sum(n > 1 for n in received.values())}


async def run_gifts(target: Target, run_id: str, procs: int, senders: int, gifts: int,
                    window: int, rate: float, max_s: float) -> dict[str, Any]:
    """One phase of the gifts scenario; rate 0 means as fast as the window allows."""
    users = [f"lt{run_id}s{i}" for i in range(senders)]
    recips = [f"lt{run_id}r{i}" for i in range(senders)]
    pairs = dict(zip(users, recips, strict=True))
    await seed(target, users, recips, [(s, pairs[s]) for s in users], cards=gifts + 10)
    per_sender = max(1, gifts // senders)
    cfgs = []
    for i, part in enumerate(split(users, procs)):
        cfgs.append({
            "ws": target.ws, "tag": f"{run_id}p{i}", "window": window, "max_s": max_s,
            "per_sender": per_sender, "rate_per_sender": rate / senders if rate else 0.0,
            "pairs": {s: pairs[s] for s in part},
            "phase": {s: users.index(s) / senders for s in part},
            "sender_tokens": {s: target.token(s) for s in part},
            "recipient_tokens": {pairs[s]: target.token(pairs[s]) for s in part},
        })
    stop = asyncio.Event()
    with Shards("loadtest.scenarios:gifts_shard", cfgs, timeout_s=max_s + 300) as sh:
        await sh.sync()
        bar = asyncio.create_task(progress_bar("gifts", per_sender * senders,
                                               lambda: int(sh.progress.value), stop))
        outs = await sh.results()
        stop.set()
        await bar
    confirm = [x for o in outs for x in o["confirm_ms"]]
    outcomes: Counter[str] = Counter()
    for o in outs:
        outcomes.update(o["outcomes"])
    seconds = max(o["seconds"] for o in outs)
    return {
        "throughput_per_s": round(len(confirm) / seconds, 1),
        "latency_ms": summary(confirm),
        "received_latency_ms": summary([x for o in outs for x in o["recv_ms"]]),
        "confirmed": len(confirm),
        "outcomes": dict(outcomes),
        "exactly_once": all(o["received_once"] == o["confirmed"] and not o["received_twice"]
                            for o in outs),
        "seconds": round(seconds, 3),
        "timeline": [p for o in outs for p in o["timeline"]],
        "samples_ms": confirm,
        "params": {"senders": senders, "gifts": per_sender * senders, "window": window,
                   "rate": rate or "max", "procs": len(cfgs)},
    }


# -- room -------------------------------------------------------------------
class SharedFrames:
    """What watchers of a shared channel (a room, a group) saw in its coalesced frames: the
    frames, a frame that went back (a duplicate), and each counted event's lag from the
    send time it carries (`sent_ms`, None for events not counted). Work per frame, not per
    event, where it can be: the watchers share the server's cores."""

    def __init__(self, frame_type: str, sent_ms: Any, ctl: Any) -> None:
        self.frame_type = frame_type
        self.sent_ms = sent_ms  # event → the send time in ms, or None when not counted
        self.ctl = ctl
        self.lag_ms: list[float] = []
        self.settled_lag_ms: list[float] = []  # from the event's own `at_ms` (it settled), if any
        self.frames = self.events = self.duplicates = 0
        self.last_to: dict[str, int] = {}  # watcher → the newest event number it got

    def watcher(self, user: str) -> Any:
        def on_event(msg: dict[str, Any]) -> None:
            if msg["type"] != self.frame_type:
                return
            now_ms = time.time() * 1000
            counted = 0
            for e in msg["events"]:
                sent = self.sent_ms(e)
                if sent is not None:
                    counted += 1
                    self.lag_ms.append(now_ms - sent)
                    if "at_ms" in e:
                        self.settled_lag_ms.append(now_ms - e["at_ms"])
            self.count(user, msg["from"], msg["to"], counted)
        return on_event

    def count(self, user: str, start: int, to: int, counted: int) -> None:
        """One frame `start`..`to` seen by `user`, carrying `counted` counted events."""
        self.frames += 1
        if start <= self.last_to.get(user, 0):
            self.duplicates += 1
        self.last_to[user] = to
        if counted:
            self.events += counted
            self.ctl.tick(counted)

    def raw_watcher(self, user: str, sampled: bool, counted_marker: bytes) -> Any:
        """`watcher` for a lean viewer's raw frames. A sampled viewer parses each frame and
        times its events; the others, most of them, only count: frames, their `from`/`to`
        (read from the frame's head) and the counted events (`counted_marker` occurrences,
        e.g. `"kind":"gift"`), so the viewers' own CPU does not set the lag they measure."""
        parsed = self.watcher(user)
        if sampled:
            return lambda payload: parsed(orjson.loads(payload))
        marker = b'"type":' + orjson.dumps(self.frame_type)

        def on_frame(payload: bytes) -> None:
            if marker in payload[:HEAD_BYTES]:
                self.count(user, int(between(payload, b'"from":', b",")),
                           int(between(payload, b'"to":', b",")), payload.count(counted_marker))
        return on_frame


HEAD_BYTES = 256  # a frame's type, channel, `from` and `to` come first (broadcast.flush)
LAG_SAMPLE_EVERY = 10  # one viewer in ten times its events: ~200,000 samples in a room run


def between(payload: bytes, key: bytes, end: bytes) -> bytes:
    """The raw value after `key` in a frame's head (ended by `end`)."""
    at = payload.index(key, 0, HEAD_BYTES) + len(key)
    return payload[at:payload.index(end, at)]


def gift_sent_ms(e: dict[str, Any]) -> float | None:
    """A room's gift event: its gift id carries the send time (µs)."""
    if e["kind"] != "gift":
        return None
    return int(e["transfer_id"].rsplit(":", 1)[1].split("-")[1]) / 1000


async def room_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    """Viewers of one live room: count the gifts in its coalesced frames, and their lag from
    the moment the gift was sent."""
    seen = SharedFrames("room.frame", gift_sent_ms, ctl)
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY_DEFAULT)

    async def watch(i: int, user: str, token: str) -> Viewer:
        on_frame = seen.raw_watcher(user, i % LAG_SAMPLE_EVERY == 0, b'"kind":"gift"')
        async with sem:
            v = await Viewer.open(f"{cfg['ws']}?token={quote(token)}", on_frame)
            reply = await v.request("room.join", room=cfg["room"], timeout_s=120)
        if reply["type"] == "error":
            raise RuntimeError(f"room.join refused: {reply}")
        return v

    viewers = await asyncio.gather(*(watch(i, u, t) for i, (u, t) in enumerate(cfg["tokens"].items())))
    gc.freeze()  # thousands of viewers' objects: no collection walks them during the run
    await ctl.sync()  # everyone is watching
    seen.frames = 0  # frames/s counts the run's frames, not the audience joining
    await ctl.sync()  # the parent has sent everything and waited for delivery
    await asyncio.gather(*(v.close() for v in viewers))
    return {"lag_ms": seen.lag_ms, "settled_lag_ms": seen.settled_lag_ms, "events": seen.events,
            "frames": seen.frames, "viewers": len(viewers), "duplicates": seen.duplicates}


async def run_room(target: Target, run_id: str, procs: int, viewers: int, senders: int,
                   rate: float, seconds: float) -> dict[str, Any]:
    """A live room on one gateway: `viewers` watch, `senders` gift the streamer in the room at
    `rate`; room events arrive coalesced, one frame per room per tick, at most once."""
    room, streamer = f"lt{run_id}room", f"lt{run_id}st"
    audience = [f"lt{run_id}v{i}" for i in range(viewers)]
    users = [f"lt{run_id}g{i}" for i in range(senders)]
    total = int(rate * seconds)
    await seed(target, users, [streamer, *audience], [(u, streamer) for u in users],
               cards=total + 10)
    await admin(target, "PUT", f"/rooms/{room}", {"streamer": streamer})
    await admin(target, "POST", f"/rooms/{room}/live", {"live": True})
    cfgs = [{"ws": target.ws, "room": room, "tokens": {v: target.token(v) for v in part}}
            for part in split(audience, procs)]
    stop = asyncio.Event()
    with Shards("loadtest.scenarios:room_shard", cfgs, timeout_s=seconds + 600) as sh:
        await sh.sync()
        gifters = await connect_all(target.ws, {u: target.token(u) for u in users})
        expected = total * viewers
        bar = asyncio.create_task(progress_bar("room", expected, lambda: int(sh.progress.value), stop))
        t0 = time.perf_counter()
        liked: list[int] = []
        likers = [asyncio.create_task(like_steadily(c, room, seconds, liked)) for c in gifters.values()]
        sends = []
        for k in range(total):
            await asyncio.sleep(max(0.0, t0 + k / rate - time.perf_counter()))
            gift_id = f"{run_id}-{int(time.time() * 1e6)}-{k}"
            sends.append(asyncio.create_task(gifters[users[k % senders]].send_gift(
                streamer, "note.do", 1, gift_id=gift_id, room=room, timeout_s=60)))
        replies = await asyncio.gather(*sends, return_exceptions=True)
        await asyncio.gather(*likers)
        sent_s = time.perf_counter() - t0
        ok = sum(isinstance(x, dict) and x["type"] == "gift.confirmed" for x in replies)
        by = time.perf_counter() + 15
        while int(sh.progress.value) < ok * viewers and time.perf_counter() < by:  # noqa: ASYNC110 - polls another process
            await asyncio.sleep(0.05)
        delivered_s = time.perf_counter() - t0
        await sh.sync()
        outs = await sh.results()
        stop.set()
        await bar
        for c in gifters.values():
            await c.close()
    lags = [x for o in outs for x in o["lag_ms"]]
    events = sum(o["events"] for o in outs)
    frames = sum(o["frames"] for o in outs)
    return {
        "throughput_per_s": round(frames / delivered_s, 1),  # room frames written per second
        "events_per_s": round(events / delivered_s, 1),  # gift events inside them
        "latency_ms": summary(lags),  # send → viewer
        # settled (the room recorded it: the event's at_ms) → viewer: the room path's own lag
        "settled_latency_ms": summary([x for o in outs for x in o["settled_lag_ms"]]),
        "confirmed": ok, "frames": frames, "events": events, "seconds": round(sent_s, 3),
        "likes_counted": sum(liked),
        "dropped": ok * viewers - events,  # at most once: what slow viewers missed
        # room delivery is at most once: no duplicates, and every confirmed gift reached every
        # viewer unless a frame was dropped (reported, not hidden)
        "exactly_once": not any(o["duplicates"] for o in outs),
        "samples_ms": lags,
        "params": {"viewers": viewers, "gift_rate": rate, "seconds": seconds, "procs": len(cfgs),
                   "path": "a live room: coalesced room.frame per tick"},
    }


async def like_steadily(client: Client, room: str, seconds: float, counted: list[int]) -> None:
    """A gifter also likes the room: LIKE_TAPS taps every LIKE_EVERY_S (under the speed rule)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        reply = await client.request("room.like", room=room, count=LIKE_TAPS, timeout_s=60)
        counted.append(int(reply.get("counted", 0)))
        await asyncio.sleep(LIKE_EVERY_S)


LIKE_TAPS, LIKE_EVERY_S = 5, 0.5  # 10 likes/s per gifter, within the 15/s speed rule


# -- likes ------------------------------------------------------------------
async def likes_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    """Fans liking a live room: each sends batches of taps at its own rate; what the replies
    say was counted and refused, and how long each batch took to be acknowledged."""
    clients = await connect_all(cfg["ws"], cfg["tokens"], lambda m: None)
    await ctl.sync()
    counted = refused = 0
    ack_ms: list[float] = []
    t0 = time.perf_counter()

    async def fan(user: str, client: Client) -> None:
        nonlocal counted, refused
        per_s = cfg["fast_rate"] if user in cfg["fast"] else cfg["rate"]
        for k in range(int(per_s * cfg["seconds"])):
            await asyncio.sleep(max(0.0, t0 + cfg["phase"][user] + k / per_s - time.perf_counter()))
            t = time.perf_counter()
            reply = await client.request("room.like", room=cfg["room"], count=cfg["taps"], timeout_s=60)
            ack_ms.append((time.perf_counter() - t) * 1000)
            counted += reply["counted"]
            refused += reply["refused"]
            ctl.tick()

    await asyncio.gather(*(fan(u, c) for u, c in clients.items()))
    seconds = time.perf_counter() - t0
    await ctl.sync()
    for c in clients.values():
        await c.close()
    return {"counted": counted, "refused": refused, "ack_ms": ack_ms, "seconds": seconds,
            "batches": len(ack_ms)}


async def run_likes(target: Target, run_id: str, procs: int, fans: int, rate: float, taps: int,
                    seconds: float) -> dict[str, Any]:
    """`fans` like a live room `rate` batches of `taps` a second each (a tenth of them three
    times as fast, over the speed limit); the room's session total must equal every counted
    like, and Valkey's time per like batch comes from `INFO commandstats`."""
    room, streamer = f"lt{run_id}likes", f"lt{run_id}ls"
    users = [f"lt{run_id}f{i}" for i in range(fans)]
    await seed(target, [], [streamer, *users], [], cards=0)
    await admin(target, "PUT", f"/rooms/{room}", {"streamer": streamer})
    await admin(target, "POST", f"/rooms/{room}/live", {"live": True})
    fast = set(users[:: 10])
    redis = connect(target.redis_url)
    await redis.config_resetstat()
    cfgs = [{"ws": target.ws, "room": room, "rate": rate, "fast_rate": rate * 3, "taps": taps,
             "seconds": seconds, "fast": sorted(fast & set(part)),
             "phase": {u: (i % 97) / 97 / rate for i, u in enumerate(part)},
             "tokens": {u: target.token(u) for u in part}} for part in split(users, procs)]
    stop = asyncio.Event()
    expected = sum(int((rate * 3 if u in fast else rate) * seconds) for u in users)
    with Shards("loadtest.scenarios:likes_shard", cfgs, timeout_s=seconds + 600) as sh:
        await sh.sync()
        bar = asyncio.create_task(progress_bar("likes", expected, lambda: int(sh.progress.value), stop))
        await sh.sync()
        outs = await sh.results()
        stop.set()
        await bar
    await asyncio.sleep(1.0)  # the gateways' last tick adds their likes to the room
    stats = await redis.info("commandstats")
    fcall = stats.get("cmdstat_fcall", {"calls": 0, "usec": 0})
    total = int((await admin(target, "GET", f"/rooms/{room}", None))["likes"])
    await redis.aclose()
    counted = sum(o["counted"] for o in outs)
    batches = sum(o["batches"] for o in outs)
    seconds_run = max(o["seconds"] for o in outs)
    return {
        "throughput_per_s": round(counted / seconds_run, 1),  # likes counted per second
        "latency_ms": summary([x for o in outs for x in o["ack_ms"]]),
        "counted": counted, "refused": sum(o["refused"] for o in outs), "batches": batches,
        "batches_per_s": round(batches / seconds_run, 1),  # `room.like` requests answered
        "room_total": total,
        "exactly_once": total == counted,  # the room's total is every counted like, once
        "valkey_us_per_batch": round(fcall["usec"] / max(1, batches), 2),
        "samples_ms": [x for o in outs for x in o["ack_ms"]][:20_000],
        "params": {"fans": fans, "rate": rate, "taps": taps, "seconds": seconds,
                   "fast_fans": len(fast), "procs": len(cfgs)},
    }


# -- idle -------------------------------------------------------------------
async def idle_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY_DEFAULT)
    connect_ms: list[float] = []

    async def one(user: str, token: str) -> Client:
        async with sem:
            t = time.perf_counter()
            c = await Client.connect(cfg["ws"], token, timeout_s=120, on_event=lambda m: None)
            connect_ms.append((time.perf_counter() - t) * 1000)
            ctl.tick()
            return c

    t0 = time.perf_counter()
    clients = await asyncio.gather(*(one(u, t) for u, t in cfg["tokens"].items()))
    seconds = time.perf_counter() - t0
    await ctl.sync()  # all connected; the parent reads the server's RSS
    await ctl.sync()
    alive = sum(c._error is None for c in clients)
    for c in clients:
        await c.close()
    return {"connect_ms": connect_ms, "seconds": seconds, "alive": alive}


async def run_idle(target: Target, run_id: str, procs: int, connections: int,
                   hold_s: float) -> dict[str, Any]:
    if target.pid is None:
        raise SystemExit("idle needs the server's PID to read its RSS: pass --server-pid")
    users = [f"lt{run_id}i{i}" for i in range(connections)]
    before = rss_bytes(target.pid)
    cfgs = [{"ws": target.ws, "tokens": {u: target.token(u) for u in part}}
            for part in split(users, procs)]
    stop = asyncio.Event()
    with Shards("loadtest.scenarios:idle_shard", cfgs, timeout_s=900) as sh:
        bar = asyncio.create_task(progress_bar("idle", connections, lambda: int(sh.progress.value), stop))
        await sh.sync()
        await asyncio.sleep(hold_s)
        after = rss_bytes(target.pid)
        await sh.sync()
        outs = await sh.results()
        stop.set()
        await bar
    connect_ms = [x for o in outs for x in o["connect_ms"]]
    alive = sum(o["alive"] for o in outs)
    return {
        "throughput_per_s": round(len(connect_ms) / max(o["seconds"] for o in outs), 1),
        "latency_ms": summary(connect_ms),
        "connections": alive,
        "rss_before_bytes": before, "rss_after_bytes": after,
        "rss_per_connection_bytes": round((after - before) / max(alive, 1)),
        "exactly_once": alive == connections,
        "samples_ms": connect_ms,
        "params": {"connections": connections, "hold_s": hold_s, "procs": len(cfgs)},
    }
