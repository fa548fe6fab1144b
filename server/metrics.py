"""A small Prometheus registry: counters, gauges and histograms with labels, rendered
in the text exposition format at `/metrics`. One per process."""

from __future__ import annotations

import asyncio
import bisect
from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

Labels = tuple[tuple[str, str], ...]
LABEL_SETS_MAX = 256  # per metric: label values come from bounded sets (codes, partitions)


def _fmt(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


class Counter:
    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc = name, doc
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, n: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        if key in self.values or len(self.values) < LABEL_SETS_MAX:
            self.values[key] += n

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} counter"]
        out += [f"{self.name}{_fmt(k)} {v:g}" for k, v in sorted(self.values.items())]
        if not self.values:  # a sample from the start: a scrape (or a reader) sees it exists
            out.append(f"{self.name} 0")
        return out


class Gauge:
    def __init__(self, name: str, doc: str, read: Callable[[], dict[Labels, float]] | None = None) -> None:
        self.name, self.doc, self.read = name, doc, read
        self.values: dict[Labels, float] = {}

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def render(self) -> list[str]:
        values = self.read() if self.read else self.values
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} gauge"]
        out += [f"{self.name}{_fmt(k)} {v:g}" for k, v in sorted(values.items())]
        return out


class Histogram:
    def __init__(self, name: str, doc: str, buckets: tuple[float, ...]) -> None:
        self.name, self.doc, self.buckets = name, doc, buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append(f'{self.name}_bucket{{le="{bound:g}"}} {running}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self.n}')
        out += [f"{self.name}_sum {self.total:g}", f"{self.name}_count {self.n}"]
        return out


M = TypeVar("M", Counter, Gauge, Histogram)


class Registry:
    def __init__(self) -> None:
        self.metrics: list[Counter | Gauge | Histogram] = []

    def add(self, metric: M) -> M:
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        return "\n".join(line for m in self.metrics for line in m.render()) + "\n"


REGISTRY = Registry()
CONNECTIONS = REGISTRY.add(Gauge("giftwire_connections", "open WebSocket connections"))
FRAMES_IN = REGISTRY.add(Counter("giftwire_frames_in_total", "WebSocket frames received"))
FRAMES_OUT = REGISTRY.add(Counter("giftwire_frames_out_total", "WebSocket frames sent"))
DEAD_LETTERED = REGISTRY.add(Counter(
    "giftwire_dead_lettered_total", "settlement entries set aside after failing, by partition"))
DUPLICATES_DROPPED = REGISTRY.add(Counter(
    "giftwire_duplicates_dropped_total",
    "events or replies a connection had already passed on (replays after crashes, claims)"))
GAPS_FILLED = REGISTRY.add(Counter(
    "giftwire_event_gaps_filled_total",
    "events a connection missed live (a slot move) and got from the log before the next one"))
DISCONNECTS = REGISTRY.add(Counter("giftwire_disconnects_total", "connections ended, by reason"))
REFUSED = REGISTRY.add(Counter("giftwire_requests_refused_total",
                               "requests the gateway refused for its own bounds before any "
                               "handler ran or anything was queued, by code"))
CLAIMED = REGISTRY.add(Counter("giftwire_claimed_entries_total",
                               "stream entries taken over: from a dead worker, or a worker's "
                               "own failed ones run again"))
BACKLOG = REGISTRY.add(Gauge("giftwire_stream_backlog", "settlement stream length, by partition"))
HELD = REGISTRY.add(Gauge("giftwire_partition_held",
                          "1 while a worker holds the partition's lease; 0: nothing settles it"))
STALLED = REGISTRY.add(Gauge(
    "giftwire_settlement_stalled_seconds",
    "how long this worker has re-run the entries in hand without settling them; 0 while it "
    "settles (past GIFTWIRE_SETTLE_STALL_ALERT_S, page someone)"))
STALLED.set(0)
SETTLE_SECONDS = REGISTRY.add(Histogram(
    "giftwire_settlement_seconds", "settlement entry queued → applied",
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)))


METRICS_HEAD_MAX = 8192  # bytes of a request head the worker's metrics listener reads
METRICS_READ_S = 5.0  # how long it waits for that head (and for its answer to be taken)
METRICS_CONNECTIONS_MAX = 8  # at once: scrapers are few; idle sockets must not pile up


async def serve_metrics(host: str, port: int) -> asyncio.Server:
    """`GET /metrics` of this process on host:port, for processes without the gateway's
    HTTP server (settlement workers, `jobs`): one bounded request a connection, then closed."""

    open_now = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        if open_now >= METRICS_CONNECTIONS_MAX:
            writer.close()
            return
        open_now += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), METRICS_READ_S)
            line = head[:METRICS_HEAD_MAX].split(b"\r\n", 1)[0].split()
            if line[:2] in ([b"GET", b"/metrics"], [b"HEAD", b"/metrics"]):
                body = REGISTRY.render().encode()
                status, ctype = b"200 OK", b"text/plain; version=0.0.4; charset=utf-8"
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype +
                         b"\r\nContent-Length: " + str(len(body)).encode() +
                         b"\r\nConnection: close\r\n\r\n" + (b"" if line[:1] == [b"HEAD"] else body))
            await asyncio.wait_for(writer.drain(), METRICS_READ_S)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that left, stalled or sent nonsense: nothing to answer
        finally:
            open_now -= 1
            writer.close()

    return await asyncio.start_server(answer, host, port, limit=METRICS_HEAD_MAX)
