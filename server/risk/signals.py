"""The risk streams' entry codec. A gateway writes one entry per partition per tick holding
up to `PER_ENTRY` signals (one stream entry per signal cost the gateway, Valkey and the
engine more than judging it did); the like speed rule's single-signal entries (a plain
field map, `server/rooms/handlers.py`) are read too."""

from __future__ import annotations

from collections.abc import Iterator

import orjson

FIELDS = ("kind", "user", "device", "ip", "to", "at_ms")
PER_ENTRY = 256  # signals one entry carries at most (an entry stays a few tens of KB)
BATCH = "signals"  # the field of a batch entry


def encode(signals: list[dict[str, str]]) -> Iterator[dict[str, bytes]]:
    """Stream entries for these signals, in order, `PER_ENTRY` at most each."""
    for i in range(0, len(signals), PER_ENTRY):
        rows = [[sig[f] for f in FIELDS] for sig in signals[i:i + PER_ENTRY]]
        yield {BATCH: orjson.dumps(rows)}


def decode(fields: dict[str, str]) -> list[dict[str, str]]:
    """The signals of one stream entry (a batch, or one signal written as a field map)."""
    packed = fields.get(BATCH)
    if packed is None:
        return [fields]
    return [dict(zip(FIELDS, row, strict=True)) for row in orjson.loads(packed)]
