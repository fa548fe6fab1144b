"""Live rooms (SPEC section 1 table 3, seed 001): a streamer's room, its live sessions,
viewers across gateways, coalesced room frames, gifts recorded on the room's board.
Where things are:

    viewers.py             one frame per room per tick; this gateway's audience share
    handlers.py            room.join / room.leave / room.state / room.live
    record.py              the gift flow's room step (board, broadcast)
    lua/room_audience.lua  where the audience is summed and dead gateways lapse
    lua/room_record.lua    where a gift lands on the contribution board, once
    lua/room_live.lua      where a session starts and ends
"""

from __future__ import annotations

from typing import Any

from server.gifting.flow import KIND as GIFT
from server.parts import Parts
from server.rooms import admin, audit, handlers
from server.rooms.record import record_step
from server.rooms.viewers import RoomViewers


def install(p: Parts) -> None:
    p.scripts.load("server.rooms")
    p.requests.add("room.join", handlers.join, ("room.snapshot", "error"))
    p.requests.add("room.leave", handlers.leave, ("room.left",))
    p.requests.add("room.state", handlers.state, ("room.snapshot", "error"))
    p.requests.add("room.live", handlers.live, ("room.snapshot", "error"))
    p.requests.add("room.rank.get", handlers.rank, ("room.rank",))
    p.flows.add_step(GIFT, record_step(p.settings))
    admin.install(p)
    p.audits.append((audit.INVARIANT, audit.check_boards))

    def setup(gw: Any) -> Any:
        gw.ext[handlers.EXT] = v = RoomViewers(gw, p)
        return v.run

    p.gateway.append(setup)
