"""Groups' part of the audit. Red envelopes hold cards in escrow between their steps, so
the ledger's `escrow_matches_in_flight` counts them (`escrow_held`); and each envelope
must add up: its grabs plus what is left plus what was refunded is its total, no more
grabs than shares, every share ≥ 1, and a fully grabbed one has nothing left."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from server.ledger.audit import SCAN_COUNT, AuditResult, read_slots
from server.store import keys

INVARIANT = "envelopes_exact"
IN_ESCROW = ("escrowed", "open")  # the sender's record while the cards are in escrow


def escrow_held(records: dict[str, dict[str, str]]) -> dict[str, int]:
    """Per asset, envelope cards in escrow: what senders put in (not refused) minus what
    grabbers and refunds took out, from the user slots' records."""
    held: dict[str, int] = defaultdict(int)
    for hx in records.values():
        for rid, raw in hx.items():
            if rid.startswith("$es:"):
                rec = orjson.loads(raw)
                if rec["st"] in IN_ESCROW:
                    held[rec["asset"]] += int(rec["count"])
            elif rid.startswith(("$eg:", "$er:")):
                rec = orjson.loads(raw)
                held[rec["asset"]] -= int(rec["count"])
    return dict(held)


async def check_envelopes(scripts: Any, r: AuditResult) -> None:
    found = [(key[key.index("{g:") + 3: key.index("}")], key.split(":env:", 1)[1])
             async for key in scripts.redis.scan_iter(match=keys.SCAN_GROUP_ENVELOPES,
                                                      count=SCAN_COUNT)]
    slots = [[keys.group(g).envelope(e), keys.group(g).grabs(e)] for g, e in found]
    for (group, envelope), (e, grabbed) in zip(found, await read_slots(scripts, slots),
                                               strict=True):
        if e.get("state") == "void":  # a tombstone: an operator voided it before it opened
            continue
        grabs = [int(x) for x in grabbed.values()]
        total, left, refunded = int(e["total"]), int(e["left"]), int(e.get("refunded", 0))
        where = f"group {group} envelope {envelope}"
        if sum(grabs) + left + refunded != total:
            r.fail(INVARIANT, f"{where}: grabs {sum(grabs)} + left {left} + refunded "
                              f"{refunded} != total {total}")
        if len(grabs) > int(e["shares"]) or any(g < 1 for g in grabs):
            r.fail(INVARIANT, f"{where}: {len(grabs)} grabs of {e['shares']} shares: {grabs}")
        if e.get("state") == "done" and (left != 0 or len(grabs) != int(e["shares"])):
            r.fail(INVARIANT, f"{where}: all grabbed but {left} left, {len(grabs)} grabs")
