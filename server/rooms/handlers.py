"""Rooms' requests at the gateway: watch, stop watching, read the state, and the
streamer's live session. They act on the room's slot directly (no settlement entry):
nothing here moves money."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol.messages import encode
from protocol.rooms import BOARD_MAX
from server.gateway.connection import Connection
from server.rooms.viewers import RoomViewers
from server.store import keys
from server.store.outcomes import Status, status

if TYPE_CHECKING:
    from server.gateway.endpoint import Gateway

EXT = "rooms"  # the key of this module's state in `Gateway.ext`


def viewers(gw: Gateway) -> RoomViewers:
    v: RoomViewers = gw.ext[EXT]
    return v


async def snapshot(gw: Gateway, room: str, request_id: str | None) -> str | None:
    """The `room.snapshot` frame, or None when the room does not exist."""
    rk = keys.room(room)
    pipe = gw.redis.pipeline(transaction=False)
    pipe.hmget(rk.profile, "streamer", "live", "session", "audience", "rseq")
    pipe.zrevrange(rk.board, 0, BOARD_MAX - 1, withscores=True)
    (streamer, live, session, audience, rseq), board = await pipe.execute()
    if streamer is None:
        return None
    return encode("room.snapshot", id=request_id, room=room, streamer=streamer, live=live == "1",
                  session=session if live == "1" else None, audience=int(audience or 0),
                  rseq=int(rseq or 0),
                  board=[{"user": u, "cards": int(c)} for u, c in board]).decode()


async def join(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    v = viewers(gw)
    if keys.room(d["room"]).channel not in conn.channels \
            and v.watching(conn.channels) >= gw.s.rooms_per_connection_max:
        gw.error(conn, "too_many_rooms", d["id"])
        return
    await v.join(conn, d["room"])  # subscribe first: frames after the snapshot are not missed
    frame = await snapshot(gw, d["room"], d["id"])
    if frame is None:
        await v.leave(conn, d["room"])
        gw.error(conn, "room_unknown", d["id"])
        return
    conn.push(frame)


async def leave(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    await viewers(gw).leave(conn, d["room"])
    conn.push(encode("room.left", id=d["id"], room=d["room"]).decode())


async def state(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    frame = await snapshot(gw, d["room"], d["id"])
    if frame is None:
        gw.error(conn, "room_unknown", d["id"])
    else:
        conn.push(frame)


async def rank(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    rk = keys.room(d["room"])
    pipe = gw.redis.pipeline(transaction=False)
    pipe.zrevrank(rk.board, conn.user)
    pipe.zscore(rk.board, conn.user)
    place, cards = await pipe.execute()
    conn.push(encode("room.rank", id=d["id"], room=d["room"],
                     rank=None if place is None else int(place) + 1,
                     cards=int(cards or 0)).decode())


async def live(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    rk = keys.room(d["room"])
    reply = await viewers(gw).p.scripts["room_live"](
        keys=[rk.profile, rk.board, rk.channel],
        args=[d["room"], conn.user, "start" if d["live"] else "end", gw.clock.now_ms(),
              gw.s.publish_mode])
    if status(reply) is Status.REJECTED:
        gw.error(conn, str(reply[1]), d["id"])
        return
    await state(gw, conn, d)
