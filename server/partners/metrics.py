"""Partner apps' metrics, in the process-wide registry that /metrics renders."""

from __future__ import annotations

from server.metrics import REGISTRY, Counter

BONUSES = REGISTRY.add(Counter("giftwire_partner_bonuses_total",
                               "partner bonuses given, by channel and bonus (`points`: gifts "
                               "whose recipient earned points; `campaign`: users who joined)"))
