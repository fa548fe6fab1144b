"""Fan groups' metrics, in the process-wide registry that /metrics renders."""

from __future__ import annotations

from server.metrics import REGISTRY, Counter

POSTED = REGISTRY.add(Counter("giftwire_group_messages_total", "group messages posted (a retry not again)"))
GRABS = REGISTRY.add(Counter("giftwire_envelope_grabs_total",
                             "red-envelope grabs settled, by outcome (`credited`, or the refusal)"))
