"""Load generators in several processes (`--procs`), kept in step with the parent.

A shard is an async function `fn(cfg, ctl) -> dict` named "module:function"; it
runs in its own process and event loop. `ctl.sync()` meets the parent at a
barrier (e.g. "all connected"); `ctl.tick()` advances the progress bar. A shard
that fails breaks the barrier, so nobody waits for it; its traceback is reported.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvloop

from server.lifetime import stop_when_parent_dies

CONNECT_CONCURRENCY_DEFAULT = 200  # WebSocket handshakes in flight per process


class ShardError(RuntimeError):
    """A load-generating process failed."""


@dataclass
class Ctl:
    barrier: Any
    progress: Any
    timeout_s: float

    async def sync(self) -> None:
        await asyncio.to_thread(self.barrier.wait, self.timeout_s)

    def tick(self, n: int = 1) -> None:
        with self.progress.get_lock():
            self.progress.value += n


def _entry(fn_name: str, cfg: dict[str, Any], barrier: Any, progress: Any, results: Any,
           timeout_s: float, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (a Ctrl-C held since the start: discarded)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    stop_when_parent_dies(parent_pid)  # a harness killed outright leaves no generator behind
    module, name = fn_name.split(":")
    fn = getattr(importlib.import_module(module), name)
    gc.collect()
    gc.freeze()  # the generator's own GC pauses would show up as server latency
    try:
        out = uvloop.run(fn(cfg, Ctl(barrier, progress, timeout_s)))
    except BaseException:
        barrier.abort()
        out = {"error": traceback.format_exc()}
    results.put(out)


class Shards:
    def __init__(self, fn_name: str, cfgs: list[dict[str, Any]], timeout_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.timeout_s = timeout_s
        self.barrier = ctx.Barrier(len(cfgs) + 1)
        self.progress = ctx.Value("q", 0)
        self._results = ctx.Queue()
        self.procs = [ctx.Process(target=_entry, args=(fn_name, cfg, self.barrier, self.progress,
                                                       self._results, timeout_s, os.getpid()),
                                 daemon=True)
                      for cfg in cfgs]

    def __enter__(self) -> Shards:
        # the generators ignore SIGINT (a terminal's Ctrl-C reaches the whole process group,
        # and the harness stops them itself: each a traceback else): they start with it
        # blocked, inherited from this thread, and ignore it before unblocking (`_entry`). The
        # harness itself never ignores it: switched to ignored around the start, a Ctrl-C that
        # another of its threads took meanwhile was lost, and the run went on
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for p in self.procs:
                p.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # a failure or a SIGTERM: stop now, and free our waiting threads
            self.barrier.abort()  # (a thread in barrier.wait would hold the loop's exit)
            for _ in self.procs:
                self._results.put({"error": "stopped"})  # (likewise a thread in results.get)
            self._results.cancel_join_thread()
            for p in self.procs:
                p.kill()
        for p in self.procs:  # each by its own PID
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()

    async def sync(self) -> None:
        try:
            await asyncio.to_thread(self.barrier.wait, self.timeout_s)
        except Exception as exc:
            raise ShardError(f"a load generator failed before the barrier: {self._first_error()}") from exc

    def _first_error(self) -> str:
        try:
            out = self._results.get(timeout=5)
        except Exception:
            return "(no report)"
        return str(out.get("error", out))

    async def results(self) -> list[dict[str, Any]]:
        outs = [await asyncio.to_thread(self._results.get, True, self.timeout_s) for _ in self.procs]
        errors = [o["error"] for o in outs if "error" in o]
        if errors:
            raise ShardError(errors[0])
        return outs


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """Round-robin split into `parts` non-empty lists (fewer if there are fewer items)."""
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]


async def progress_bar(label: str, total: int, value: Callable[[], int], stop: asyncio.Event) -> None:
    """A one-line bar on a terminal's stderr; silent when stderr is not a terminal."""
    if not sys.stderr.isatty():
        await stop.wait()
        return
    started = time.monotonic()
    while not stop.is_set():
        done = min(value(), total)
        filled = int(30 * done / max(total, 1))
        sys.stderr.write(f"\r{label:<10} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                         f"{time.monotonic() - started:5.1f}s")
        sys.stderr.flush()
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except TimeoutError:
            pass
    sys.stderr.write("\r" + " " * 70 + "\r")
