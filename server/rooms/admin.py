"""Rooms' admin routes: a room and its streamer (the platform creates rooms), its state."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from protocol.rooms import BOARD_MAX
from server.admin import validate as v
from server.admin.http import read_json
from server.admin.validate import AdminError
from server.ledger.admin import require_users
from server.parts import Parts
from server.rooms.audit import rebuild_board
from server.rooms.handlers import wish_of
from server.store import keys


def install(p: Parts) -> None:
    async def room(r: Request) -> Any:
        room_id = v.user_id(r.path_params["room"], "room")
        rk = keys.room(room_id)
        if r.method == "PUT":
            d = v.obj(await read_json(r), {"streamer"}, frozenset({"streamer"}))
            streamer = v.user_id(d["streamer"], "streamer")
            await require_users(p.redis, streamer=streamer)
            await p.redis.hset(rk.profile, "streamer", streamer)
        prof = await p.redis.hgetall(rk.profile)
        if "streamer" not in prof:
            raise AdminError("room_unknown")
        board = await p.redis.zrevrange(rk.board, 0, BOARD_MAX - 1, withscores=True)
        return {"room": room_id, "streamer": prof["streamer"], "live": prof.get("live") == "1",
                "session": prof.get("session") if prof.get("live") == "1" else None,
                "sessions": int(prof.get("sessions", 0)), "audience": int(prof.get("audience", 0)),
                "board": [{"user": u, "cards": int(c)} for u, c in board], "wish": wish_of(prof)}

    async def rebuild(r: Request) -> Any:
        room_id = v.user_id(r.path_params["room"], "room")
        if not await p.redis.exists(keys.room(room_id).profile):
            raise AdminError("room_unknown")
        board = await rebuild_board(p.redis, room_id)
        return {"room": room_id, "board": sorted(({"user": u, "cards": c} for u, c in board.items()),
                                                 key=lambda e: (-int(e["cards"]), str(e["user"])))}

    p.admin.add(("GET", "PUT"), "/rooms/{room}", room)
    p.admin.add("POST", "/rooms/{room}/board/rebuild", rebuild)
