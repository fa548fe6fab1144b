"""Rooms' admin routes: a room and its streamer (the platform creates rooms), its state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request

from server import days
from server.admin import validate as v
from server.admin.http import no_body, read_json
from server.admin.validate import AdminError
from server.config import fan_card_of, tiers_arg
from server.gifting import rules
from server.ledger.admin import require_users
from server.parts import Parts
from server.rooms.audit import rebuild_board
from server.rooms.handlers import room_now, wish_of
from server.store import keys

LIKES_CREATORS_MAX = 1000  # streamers listed for one fan


def tiers_of(arg: str | None) -> list[str]:
    """Stored tiers (`<limit>:<num>:<den>,…`) as the API shows them (`<limit>:<num>/<den>`)."""
    return [t.replace(":", "/").replace("/", ":", 1) for t in arg.split(",")] if arg else []


def done_day(day_key: str | None) -> str | None:
    return days.iso_day(day_key) if day_key else None


def install(p: Parts) -> None:
    async def room(r: Request) -> Any:
        room_id = v.user_id(r.path_params["room"], "room")
        rk = keys.room(room_id)
        if r.method == "PUT":
            d = v.obj(await read_json(r), {"streamer", "wish_tiers"}, frozenset({"streamer"}))
            streamer = v.user_id(d["streamer"], "streamer")
            await require_users(p.redis, streamer=streamer)
            await p.redis.hset(rk.profile, "streamer", streamer)
            if d.get("wish_tiers") is not None:  # the room's own; null: back to the default
                await p.redis.hset(rk.profile, "wish_tiers", tiers_arg(v.wish_tiers(d["wish_tiers"])))
            elif "wish_tiers" in d:
                await p.redis.hdel(rk.profile, "wish_tiers")
        prof, board, audience = await room_now(p.redis, room_id, p.clock.now_ms())
        if "streamer" not in prof:
            raise AdminError("room_unknown")
        return {"room": room_id, "streamer": prof["streamer"], "live": prof.get("live") == "1",
                "session": prof.get("session") if prof.get("live") == "1" else None,
                "sessions": int(prof.get("sessions", 0)), "audience": audience,
                "likes": int(prof.get("likes", 0)),
                "board": [{"user": u, "cards": int(c)} for u, c in board], "wish": wish_of(prof),
                "wish_tiers": tiers_of(prof.get("wish_tiers")) or list(p.settings.wish_tiers),
                "wish_tiers_own": "wish_tiers" in prof}

    async def rebuild(r: Request) -> Any:
        room_id = v.user_id(r.path_params["room"], "room")
        await no_body(r)
        if not await p.redis.exists(keys.room(room_id).profile):
            raise AdminError("room_unknown")
        board = await rebuild_board(p.redis, room_id)
        return {"room": room_id, "board": sorted(({"user": u, "cards": c} for u, c in board.items()),
                                                 key=lambda e: (-int(e["cards"]), str(e["user"])))}

    async def live(r: Request) -> Any:
        """The platform starts or ends a session on the streamer's behalf."""
        room_id = v.user_id(r.path_params["room"], "room")
        d = v.obj(await read_json(r), {"live"}, frozenset({"live"}))
        rk = keys.room(room_id)
        streamer = await p.redis.hget(rk.profile, "streamer")
        if streamer is None:
            raise AdminError("room_unknown")
        await p.scripts["room_live"](
            keys=[rk.profile, rk.board, rk.channel],
            args=[room_id, streamer, "start" if v.boolean(d["live"], "live") else "end",
                  p.clock.now_ms(), p.settings.publish_mode])
        return await room(r)

    async def likes(r: Request) -> Any:
        """A fan's likes by streamer: totals, fan-club levels, the small and rare small cards
        they hold (their balances of the streamer's cards: net of exchanges), the daily task."""
        uid = v.user_id(r.path_params["user"])
        await require_users(p.redis, user=uid)
        uk = keys.user(uid)
        pipe = p.redis.pipeline(transaction=False)
        for key in (uk.like_totals, uk.like_levels, uk.balances, uk.like_tasks):
            pipe.hgetall(key)
        totals, levels, balances, tasks = await pipe.execute()
        # a streak stands while its last task day is today or yesterday (the platform's local
        # days), as `like_fan.lua` judges it on the next like: older ones show 0, not stale
        today = rules.local_day(p.clock.now_ms(), rules.parse_timezone(p.settings.timezone))
        standing = {rules.day_key(today), rules.day_key(today - timedelta(days=1))}

        def streak(c: str) -> int:
            return int(tasks.get(f"{c}:streak", 0)) if tasks.get(f"{c}:done") in standing else 0

        cards: dict[tuple[str, bool], int] = {}
        for asset, n in balances.items():
            of = fan_card_of(asset)
            if of is not None:
                cards[of] = int(n)
        creators = sorted(set(totals) | {c for c, _ in cards})
        return {"user": uid, "creators": [
            {"creator": c, "likes": int(totals.get(c, 0)), "level": int(levels.get(c, 0)),
             "small_cards": cards.get((c, False), 0), "rare_cards": cards.get((c, True), 0),
             "streak": streak(c), "task_done_day": done_day(tasks.get(f"{c}:done"))}
            for c in creators[:LIKES_CREATORS_MAX]]}

    p.admin.add(("GET", "PUT"), "/rooms/{room}", room)
    p.admin.add("POST", "/rooms/{room}/live", live)
    p.admin.add("GET", "/users/{user}/likes", likes)
    p.admin.add("POST", "/rooms/{room}/board/rebuild", rebuild)
