"""The note economy's metrics, in the process-wide registry that /metrics renders."""

from __future__ import annotations

from server.metrics import REGISTRY, Counter

DRAWN = REGISTRY.add(Counter("giftwire_note_cards_drawn_total",
                             "note cards task rewards drew and credited, by asset (a retry not again)"))
SETS = REGISTRY.add(Counter("giftwire_note_sets_redeemed_total",
                            "complete note-card sets redeemed (a retry not again)"))
