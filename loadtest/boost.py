"""boost: the recommender's lookup, `GET /admin/v1/content/{id}/boost`, hammered by N concurrent
HTTP clients (keep-alive connections, one request in flight each, spread over `--procs`
processes), at each N of a sweep (`--clients`, default 1, 8, 32, 64), for a fixed time each.

Set-up through the public interfaces: C creators (category music, 100 followers, points bought
through `POST /admin/v1/popularity/purchases`) each use `popularity.use` (video heating, basic
cover, starting now) on U contents of their own over the WebSocket. The lookups cycle through
those boosted contents and as many never boosted (a recommender asks about every candidate);
each answer is checked: 200, and weight 1.0 for a boosted content (its boost is in its first
2 h), 0.0 for the others. Measured per N: lookups/s answered, latency p50/p90/p99/max (request
written → whole body read), errors and wrong weights."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any
from urllib.parse import urlparse

import orjson

from loadtest.raw import Raw, token
from loadtest.shards import Shards, split
from loadtest.stats import summary
from loadtest.target import Target, admin, seed

TARGETING: dict[str, Any] = {"region": {"radius_km": 20}, "age": {"min": 18, "max": 35},
                             "gender": "any",
                             "interests": {"core": ["music", "dance", "idol"], "extended": ["kpop"]}}
CARD, CARD_POINTS = "video_heating", 100
SAMPLES_MAX = 100_000


class Http:
    """A minimal HTTP/1.1 keep-alive client for one GET route (the generator must cost far
    less than the server per request)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                 key: str) -> None:
        self.reader, self.writer = reader, writer
        self.head = f"Host: {host}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()

    @classmethod
    async def open(cls, http: str, key: str) -> Http:
        u = urlparse(http)
        assert u.hostname is not None and u.port is not None
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        return cls(reader, writer, u.netloc, key)

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self.head)
        return await self._answer()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\nContent-Type: application/json"
                          b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
                          + self.head + body)
        return await self._answer()

    async def _answer(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = -1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise RuntimeError(f"no content-length in {head!r}")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


async def boost_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    conns = [await Http.open(cfg["http"], cfg["key"]) for _ in range(cfg["clients"])]
    contents: list[list[Any]] = cfg["contents"]  # [content, expected weight]
    await ctl.sync()
    t0 = time.perf_counter()
    deadline = t0 + cfg["seconds"]
    lat: list[float] = []
    statuses: Counter[int] = Counter()
    wrong: list[str] = []

    async def client(j: int, c: Http) -> None:
        k = j * 7919
        while time.perf_counter() < deadline:
            cid, weight = contents[k % len(contents)]
            k += 1
            t = time.perf_counter()
            status, body = await c.get(f"/admin/v1/content/{cid}/boost")
            lat.append((time.perf_counter() - t) * 1000)
            statuses[status] += 1
            if status == 200:
                got = orjson.loads(body)["weight"]
                if got != weight and len(wrong) < 20:
                    wrong.append(f"{cid}: {got} (expected {weight})")

    await asyncio.gather(*(client(j + cfg["offset"], c) for j, c in enumerate(conns)))
    seconds = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return {"lat": lat, "seconds": seconds, "statuses": {str(k): v for k, v in statuses.items()},
            "wrong": wrong}


async def make_boosts(target: Target, run_id: str, creators: int, uses: int) -> list[str]:
    """Creators with points, each boosting `uses` contents now; the contents boosted."""
    p = f"lt{run_id}"
    users = [f"{p}cr{i}" for i in range(creators)]
    await seed(target, [], users, [], cards=0)  # registered 30 days ago
    boosted: list[str] = []
    for i, u in enumerate(users):
        await admin(target, "PUT", f"/popularity/accounts/{u}", {"category": "music", "followers": 100})
        bought = await admin(target, "POST", "/popularity/purchases",
                             {"order": f"{p}o{i}", "user": u, "fen": uses * CARD_POINTS * 100 // 8})
        if bought.get("points") != uses * CARD_POINTS:
            raise RuntimeError(f"purchase answered {bought}")
        c = await Raw.open(target.ws, token(target.token_secret, u))
        try:
            for k in range(uses):
                content = f"{p}v{i}x{k}"
                used = await c.request("popularity.use", timeout_s=30, use=f"u{k}", card=CARD,
                                       content=content, content_hash=f"{random.getrandbits(64):016x}",
                                       category="music", targeting=TARGETING)
                if used.get("type") != "popularity.used":
                    raise RuntimeError(f"popularity.use answered {used}")
                boosted.append(content)
        finally:
            await c.close()
    return boosted


async def http_level(shard: str, target: Target, procs: int, clients: int, seconds: float,
                     **extra: Any) -> tuple[list[dict[str, Any]], list[float], Counter[str], float]:
    """`clients` HTTP clients split over `procs` shard processes running `shard` for
    `seconds`: each shard's output, every latency, the statuses and the run's seconds."""
    per = [len(part) for part in split(list(range(clients)), procs)]
    offsets = [sum(per[:j]) for j in range(len(per))]
    cfgs = [{"http": target.http, "key": target.admin_key, "clients": n, "offset": off,
             "seconds": seconds, **extra} for n, off in zip(per, offsets, strict=True)]
    with Shards(shard, cfgs, timeout_s=seconds + 120) as sh:
        await sh.sync()
        outs = await sh.results()
    lat = [x for o in outs for x in o["lat"]]
    statuses: Counter[str] = Counter()
    for o in outs:
        statuses.update(o["statuses"])
    return outs, lat, statuses, max(o["seconds"] for o in outs)


async def run_level(target: Target, procs: int, clients: int, seconds: float,
                    contents: list[list[Any]]) -> dict[str, Any]:
    outs, lat, statuses, seconds_run = await http_level(
        "loadtest.boost:boost_shard", target, procs, clients, seconds, contents=contents)
    ok = statuses.get("200", 0)
    return {"clients": clients, "procs": len(outs),
            "lookups_per_s": round(ok / seconds_run, 1), "lookups": len(lat),
            "latency_ms": summary(lat), "statuses": dict(statuses),
            "errors": len(lat) - ok, "wrong_weights": [w for o in outs for w in o["wrong"]],
            "seconds": round(seconds_run, 3), "samples_ms": lat}


async def run_boost(target: Target, run_id: str, procs: int, levels: list[int], seconds: float,
                    creators: int, uses: int) -> dict[str, Any]:
    boosted = await make_boosts(target, run_id, creators, uses)
    contents = [[c, 1.0] for c in boosted] + [[f"lt{run_id}none{i}", 0.0] for i in range(len(boosted))]
    random.Random(run_id).shuffle(contents)
    runs = [await run_level(target, procs, n, seconds, contents) for n in levels]
    best = max(runs, key=lambda r: r["lookups_per_s"])
    for r in runs:
        if r is not best:
            del r["samples_ms"]
    samples = best.pop("samples_ms")
    step = max(1, len(samples) // SAMPLES_MAX)
    return {
        "throughput_per_s": best["lookups_per_s"], "latency_ms": best["latency_ms"],
        "best_clients": best["clients"], "levels": runs,
        "exactly_once": all(not r["errors"] and not r["wrong_weights"] for r in runs),
        "samples_ms": samples[::step],
        "params": {"creators": creators, "uses_each": uses, "boosted_contents": len(boosted),
                   "unboosted_contents": len(boosted), "clients": levels, "seconds_each": seconds,
                   "procs": procs, "route": "GET /admin/v1/content/{id}/boost",
                   "connections": "keep-alive, one request in flight each"},
    }
