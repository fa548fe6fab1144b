"""Gifting's metrics, in the process-wide registry that /metrics renders."""

from __future__ import annotations

from server.metrics import REGISTRY, Counter

REJECTED = REGISTRY.add(Counter("giftwire_gifts_rejected_total", "gifts refused, by reason"))
SETTLED = REGISTRY.add(Counter("giftwire_gifts_settled_total", "gifts settled, by outcome"))
