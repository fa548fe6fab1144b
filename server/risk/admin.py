"""The risk engine's admin routes: cases, paged, and appeals that lift what a case did
when the platform brings the evidence its level needs."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.requests import Request

from protocol.risk import EVIDENCE
from server.admin import validate as v
from server.admin.http import read_json
from server.admin.validate import AdminError
from server.parts import Parts
from server.risk.cases import PAGE_DEFAULT, PAGE_MAX, page, parse_cursor
from server.store import keys

# after an appeal, the rules that judge windows (a device's day, a cluster's minutes) do not
# act on the account again from the same evidence for this long
CLEARED_MS = 24 * 3_600_000
RESOLVING_MS = 30_000  # an appeal's hold on its case (released when it is done)
NOTE_MAX = 500  # characters of an appeal's note kept with the resolution


def install(p: Parts) -> None:
    async def cases(r: Request) -> Any:
        """Cases newest first, `limit` a page; `cursor` is the page before's `next_cursor`
        (opaque: `<opened ms>:<case>`, see cases.py)."""
        limit = v.query_int(r.query_params.get("limit", str(PAGE_DEFAULT)), "limit", 1, PAGE_MAX)
        raw = r.query_params.get("cursor")
        return await page(p.redis, limit, None if raw is None else parse_cursor(raw))

    async def case(r: Request) -> Any:
        raw = await p.redis.get(keys.risk_case(r.path_params["case"]))
        if raw is None:
            raise AdminError("case_unknown")
        return orjson.loads(raw)

    async def resolve(r: Request) -> Any:
        """An appeal with the evidence the case's level needs lifts what the case did (and a
        device's blacklist entry), and records the resolution."""
        d = v.obj(await read_json(r), {"evidence", "note"}, frozenset({"evidence"}))
        if d["evidence"] not in EVIDENCE.values():
            raise AdminError("bad_field", f"evidence must be one of {', '.join(EVIDENCE.values())}")
        note = d.get("note", "")
        if not isinstance(note, str) or len(note) > NOTE_MAX:
            raise AdminError("bad_field", f"note must be a string of at most {NOTE_MAX} characters")
        raw = await p.redis.get(keys.risk_case(r.path_params["case"]))
        if raw is None:
            raise AdminError("case_unknown")
        rec = orjson.loads(raw)
        if rec["status"] != "open":
            raise AdminError("case_resolved")
        if d["evidence"] != EVIDENCE[rec["level"]]:
            raise AdminError("wrong_evidence")
        # one appeal at a time resolves a case; another meanwhile is told it is resolved
        hold, mine = [keys.risk_case_resolving(rec["case"])], uuid.uuid4().hex
        taken, _ = await p.scripts["case_hold"](keys=hold, args=["take", mine, RESOLVING_MS])
        if taken != "applied":
            raise AdminError("case_resolved")
        try:
            raw = await p.redis.get(keys.risk_case(rec["case"]))  # (resolved just before?)
            if raw is None or orjson.loads(raw)["status"] != "open":
                raise AdminError("case_resolved")
            uk = keys.user(rec["user"])
            await p.scripts["risk_apply"](
                keys=[uk.profile, uk.events, uk.channel, uk.risk_actions, uk.risk_judged],
                args=["lift", p.clock.now_ms() + CLEARED_MS, rec["case"], rec["level"],
                      rec["reason"], d["evidence"], p.clock.now_ms(), p.settings.events_bound])
            device = rec["evidence"].get("device")
            if rec["level"] == "high" and device:
                await p.scripts["device_ban"](keys=[keys.device_ban(device)],
                                              args=["clear", rec["case"]])
            rec.update(status="resolved", resolution={"evidence": d["evidence"], "note": note,
                                                      "at_ms": p.clock.now_ms()})
            await p.redis.set(keys.risk_case(rec["case"]), orjson.dumps(rec))
        finally:
            # (only its own hold: one that outlived RESOLVING_MS may be another appeal's now)
            await p.scripts["case_hold"](keys=hold, args=["release", mine])
        return rec

    p.admin.add("GET", "/risk/cases", cases)
    p.admin.add("GET", "/risk/cases/{case}", case)
    p.admin.add("POST", "/risk/cases/{case}/resolve", resolve)
