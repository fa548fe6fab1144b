"""Settlement plumbing as a module: its own script (dead-lettering) and the operator's
routes for dead letters. It knows no domain; the flows come from the other modules."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from server.admin import validate as v
from server.admin.http import no_body, read_json
from server.admin.validate import AdminError, stream_id
from server.clock import ADVANCE_MAX_MS, ClockLocked
from server.parts import Parts
from server.settlement.dead_letters import DeadLetterError, DeadLetters

DEAD_LETTERS_PAGE_MAX = 1000  # dead letters in one listing


def install(p: Parts) -> None:
    p.scripts.load("server.settlement")
    dead = DeadLetters(p.redis, p.scripts, p.replies, p.flows, p.settings, p.clock)

    async def listing(r: Request) -> Any:
        limit = v.query_int(r.query_params.get("limit", "100"), "limit", 1, DEAD_LETTERS_PAGE_MAX)
        page, total = await dead.list(limit)
        return {"dead_letters": page, "total": total}

    async def action(r: Request) -> Any:
        raw = r.path_params["partition"]
        if not (raw.isascii() and raw.isdigit() and int(raw) < p.settings.partitions):
            raise AdminError("not_found", f"no partition {raw!r} (there are {p.settings.partitions})")
        partition = int(raw)
        dead_id = r.path_params["id"]
        if stream_id(dead_id) is None:  # not a stream id: no dead letter has it
            raise AdminError("not_found", f"no dead letter {dead_id[:80]!r} (ids are <ms>-<seq>)")
        await no_body(r)
        try:
            if r.path_params["action"] == "retry":
                return await dead.retry(partition, dead_id)
            if r.path_params["action"] == "void":
                return await dead.void(partition, dead_id)
        except DeadLetterError as exc:
            raise AdminError(exc.code, exc.message) from None
        raise AdminError("not_found", "the action is retry or void")

    async def clock(r: Request) -> Any:
        """GET: the time every rule uses; POST {"advance_ms": n}: move it (test clock only)."""
        if r.method == "POST":
            if not p.clock.movable:  # before the body: any POST is refused alike
                raise AdminError("clock_locked")
            d = v.obj(await read_json(r), {"advance_ms"}, frozenset({"advance_ms"}))
            ms = v.integer(d["advance_ms"], "advance_ms", 1, ADVANCE_MAX_MS)
            try:
                await p.clock.advance(ms)
            except ClockLocked:
                raise AdminError("clock_locked") from None
        return {"now_ms": p.clock.now_ms(), "offset_ms": p.clock.offset_ms,
                "movable": p.clock.movable}

    p.admin.add(("GET", "POST"), "/clock", clock)
    p.admin.add("GET", "/dead-letters", listing)
    p.admin.add("POST", "/dead-letters/{partition}/{id}/{action}", action)
