"""What the hardware and the stack can do, measured in the same run as a scenario:

(a) the Lua steps one gift needs, pipelined straight into Redis from several processes;
(b) the settlement worker alone, fed from a pre-filled stream;
(c) a plain WebSocket echo on the gateway's Starlette/uvicorn stack and settings;
(d) a plain broadcast of one pre-encoded frame to V connections on that stack.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

from loadtest.shards import CONNECT_CONCURRENCY_DEFAULT, Shards, split
from loadtest.viewer import Viewer
from server.bench import Bench, EmbeddedValkey
from server.config import Settings

# the harness's settings for Redis-side ceilings: limits lifted, as in LOAD_PROFILE
BENCH = Settings(gifts_per_day=10**9, pair_gifts_per_day=10**9)
ECHO_FRAME = orjson.dumps({"type": "gift.send", "id": "r123456", "gift_id": "g-1795376853-42",
                           "to": "u0000042", "asset": "note.do", "count": 1}).decode()
CONNECT_CONCURRENCY = CONNECT_CONCURRENCY_DEFAULT


# -- (a) --------------------------------------------------------------------
async def lua_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    bench = Bench(cfg["redis_url"], BENCH)
    tag, batch = cfg["tag"], cfg["batch"]
    senders = [f"{tag}s{i}" for i in range(batch)]
    recipients = [f"{tag}r{i}" for i in range(batch)]
    await bench.seed(senders, recipients)
    await ctl.sync()
    started, done, k = time.perf_counter(), 0, 0
    while time.perf_counter() - started < cfg["seconds"]:
        n = await bench.gift_round(senders, recipients, f"{k}")
        done, k = done + n, k + 1
        ctl.tick(n)
    elapsed = time.perf_counter() - started
    await bench.close()
    return {"gifts": done, "seconds": elapsed}


async def lua_ceiling(redis_url: str, procs: int, seconds: float, batch: int, run_id: str) -> float:
    cfgs = [{"redis_url": redis_url, "tag": f"ltA{run_id}p{i}", "batch": batch, "seconds": seconds}
            for i in range(procs)]
    with Shards("loadtest.ceilings:lua_shard", cfgs, timeout_s=seconds + 120) as sh:
        await sh.sync()
        outs = await sh.results()
    return float(sum(o["gifts"] for o in outs) / max(o["seconds"] for o in outs))


# -- (b) --------------------------------------------------------------------
async def worker_ceiling(gifts: int, batch_max: int, run_id: str) -> float:
    """The worker alone on a private Valkey: pre-fill the stream, time one burst run."""
    data = Path(tempfile.mkdtemp(prefix="gwlt-b-"))
    vk = EmbeddedValkey(data)
    vk.start()
    try:
        bench = Bench(vk.url, BENCH.replace(worker_batch_max=batch_max))
        senders = [f"ltB{run_id}s{i}" for i in range(200)]
        recipients = [f"ltB{run_id}r{i}" for i in range(200)]
        await bench.seed(senders, recipients)
        await bench.prefill(senders, recipients, gifts)
        started = time.perf_counter()
        applied = await bench.burst()
        elapsed = time.perf_counter() - started
        assert applied == gifts, (applied, gifts)
        await bench.close()
        return gifts / elapsed
    finally:
        vk.stop()
        shutil.rmtree(data, ignore_errors=True)


# -- (c) and (d): the plain stack ------------------------------------------
class EchoServer:
    """`python -m loadtest.echo_server` as a child process, stopped by its PID."""

    def __init__(self, *args: str) -> None:
        self.args = args

    def __enter__(self) -> EchoServer:
        # in a process group of its own: a terminal's Ctrl-C reaches the harness, which
        # stops it (a Ctrl-C while it starts had killed it, and the run ended in a traceback)
        self.proc = subprocess.Popen([sys.executable, "-m", "loadtest.echo_server", *self.args],
                                     stdout=subprocess.PIPE, text=True, process_group=0)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"echo server did not start: {line!r}")
        self.http = line.strip().rsplit(" ", 1)[1]
        self.ws = self.http.replace("http://", "ws://")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def post(self, path: str) -> dict[str, Any]:
        req = urllib.request.Request(f"{self.http}{path}", method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            out: dict[str, Any] = orjson.loads(resp.read())
            return out


async def echo_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    conns = [await connect(f"{cfg['ws']}/echo", compression=cfg.get("compression"))
             for _ in range(cfg["conns"])]
    await ctl.sync()
    deadline = time.perf_counter() + cfg["seconds"]
    started = time.perf_counter()

    async def pump(ws: Any) -> int:
        n = 0
        for _ in range(cfg["window"]):
            await ws.send(ECHO_FRAME)
        while time.perf_counter() < deadline:
            await ws.recv()
            n += 1
            await ws.send(ECHO_FRAME)
        for _ in range(cfg["window"]):
            await ws.recv()
        return n

    counts = await asyncio.gather(*(pump(ws) for ws in conns))
    elapsed = time.perf_counter() - started
    for ws in conns:
        await ws.close()
    return {"messages": sum(counts), "seconds": elapsed}


async def echo_ceiling(procs: int, conns: int, window: int, seconds: float,
                       server_args: tuple[str, ...] = ()) -> float:
    with EchoServer(*server_args) as srv:
        cfgs = [{"ws": srv.ws, "conns": max(1, conns // procs), "window": window, "seconds": seconds,
                 "compression": "deflate" if "--deflate" in server_args else None}
                for _ in range(procs)]
        with Shards("loadtest.ceilings:echo_shard", cfgs, timeout_s=seconds + 120) as sh:
            await sh.sync()
            outs = await sh.results()
    return float(sum(o["messages"] for o in outs) / max(o["seconds"] for o in outs))


async def broadcast_shard(cfg: dict[str, Any], ctl: Any) -> dict[str, Any]:
    """Viewers of the plain broadcast, through the same lean viewer as the room scenario's:
    the time every viewer had one frame, then `rounds` more."""
    got = 0
    want = 0
    reached = asyncio.get_running_loop().create_future()

    def on_frame(_: bytes) -> None:
        nonlocal got, reached
        got += 1
        if got == want and not reached.done():
            reached.set_result(time.time())

    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> Viewer:
        async with sem:
            return await Viewer.open(f"{cfg['ws']}/sub", on_frame, welcome=False)

    conns = await asyncio.gather(*(one() for _ in range(cfg["viewers"])))
    ctl.tick(len(conns))
    want = len(conns)
    await ctl.sync()  # all connected: phase 1, one frame each
    first = await asyncio.wait_for(reached, 60)
    got, want = 0, len(conns) * cfg["rounds"]
    reached = asyncio.get_running_loop().create_future()
    await ctl.sync()  # phase 2: `rounds` frames each
    second = await asyncio.wait_for(reached, 60)
    await asyncio.gather(*(v.close() for v in conns))
    return {"first": first, "second": second, "viewers": len(conns)}


async def broadcast_ceiling(procs: int, viewers: int, rounds: int) -> dict[str, float]:
    """Frames/s of a plain broadcast, and the time one frame takes to reach everyone."""
    with EchoServer() as srv:
        cfgs = [{"ws": srv.ws, "viewers": len(part), "rounds": rounds}
                for part in split(list(range(viewers)), procs)]
        with Shards("loadtest.ceilings:broadcast_shard", cfgs, timeout_s=300) as sh:
            await sh.sync()
            one = await asyncio.to_thread(srv.post, "/blast?rounds=1")
            await sh.sync()
            many = await asyncio.to_thread(srv.post, f"/blast?rounds={rounds}")
            outs = await sh.results()
    reach_ms = (max(o["first"] for o in outs) - one["started"]) * 1000
    frames = many["sent"] / (max(o["second"] for o in outs) - many["started"])
    return {"frames_per_s": frames, "reach_all_ms": reach_ms, "viewers": float(viewers)}
