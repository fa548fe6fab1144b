"""Latency statistics. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / max of latencies in ms, rounded to µs."""
    s = sorted(values)
    if not s:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan}
    return {k: round(percentile(s, q), 3) for k, q in (("p50", 50), ("p90", 90), ("p99", 99))} | {
        "max": round(s[-1], 3)}


def ratio(value: float, ceiling: float) -> float:
    return round(value / ceiling, 3) if ceiling > 0 else math.nan
