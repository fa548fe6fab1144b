"""Live rooms (SPEC section 1 table 3, seed 001): a streamer's room, its live sessions,
viewers across gateways, coalesced room frames, gifts recorded on the room's board.
Where things are:

    viewers.py             one frame per room per tick; this gateway's audience share
    handlers.py            room.join / room.leave / room.state / room.live
    record.py              the gift flow's room step (board, broadcast)
    lua/room_audience.lua  where the audience is summed and dead gateways lapse
    lua/room_record.lua    where a gift lands on the contribution board, once
    lua/room_live.lua      where a session starts and ends
    lua/room_quote.lua     where a gift wish prices a gift by the audience (the boost)
    lua/room_wish.lua      where a wish opens, closes and ends
"""

from __future__ import annotations

from typing import Any

from server.gifting.flow import KIND as GIFT
from server.gifting.offers import ACCEPT
from server.parts import Parts
from server.rooms import admin, audit, handlers, wishes
from server.rooms.record import quote_step, record_step
from server.rooms.viewers import RoomViewers


def install(p: Parts) -> None:
    p.scripts.load("server.rooms")
    p.requests.add("room.join", handlers.join, ("room.snapshot", "error"))
    p.requests.add("room.leave", handlers.leave, ("room.left",))
    p.requests.add("room.state", handlers.state, ("room.snapshot", "error"))
    p.requests.add("room.live", handlers.live, ("room.snapshot", "error"))
    p.requests.add("room.rank.get", handlers.rank, ("room.rank", "error"))
    p.requests.add("room.wish", handlers.wish, ("room.snapshot", "error"))
    p.requests.add("room.like", handlers.like, ("room.liked", "error"))
    p.flows.add_step(GIFT, quote_step(p.settings, lambda today: today.now_ms), first=True)
    p.flows.add_step(GIFT, record_step(p.settings, p.clock.now_ms))
    p.flows.add_step(ACCEPT, record_step(p.settings, p.clock.now_ms))  # an offer accepted later
    p.periodic.add("wish-ends", wishes.end_due(p), every_ms=p.settings.wish_end_check_ms)
    admin.install(p)
    p.audits.append((audit.INVARIANT, audit.check_boards))

    def setup(gw: Any) -> Any:
        gw.ext[handlers.EXT] = v = RoomViewers(gw, p)
        return v.run

    p.gateway.append(setup)
