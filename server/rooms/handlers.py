"""Rooms' requests at the gateway: watch, stop watching, read the state, and the
streamer's live session. They act on the room's slot directly (no settlement entry):
nothing here moves money."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from protocol.messages import encode
from protocol.rooms import BOARD_MAX
from server.config import fan_card
from server.gateway.connection import Connection
from server.gifting import rules
from server.rooms.viewers import RoomViewers
from server.store import keys
from server.store.outcomes import Status, status

if TYPE_CHECKING:
    from server.gateway.endpoint import Gateway

EXT = "rooms"  # the key of this module's state in `Gateway.ext`
log = logging.getLogger("giftwire.rooms")


def viewers(gw: Gateway) -> RoomViewers:
    v: RoomViewers = gw.ext[EXT]
    return v


async def room_now(redis: Any, room: str, now_ms: int
                   ) -> tuple[dict[str, str], list[tuple[str, float]], int]:
    """A room's profile, its board (top `BOARD_MAX`) and its audience now, in one round trip.
    The audience is the shares that have not lapsed, summed now: a dead gateway's viewers do
    not count even before some gateway's report prunes them."""
    rk = keys.room(room)
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(rk.profile)
    pipe.zrevrange(rk.board, 0, BOARD_MAX - 1, withscores=True)
    pipe.hgetall(rk.audience)
    pipe.zrangebyscore(rk.audience_expiry, now_ms + 1, "+inf")
    p, board, shares, live_gateways = await pipe.execute()
    return p, board, sum(int(shares.get(g, 0)) for g in live_gateways)


async def snapshot(gw: Gateway, room: str, request_id: str | None) -> str | None:
    """The `room.snapshot` frame, or None when the room does not exist."""
    p, board, audience = await room_now(gw.redis, room, gw.clock.now_ms())
    if "streamer" not in p:
        return None
    live = p.get("live") == "1"
    session = p.get("session") if live else None
    # an effect fired in this session has `effect:<name>` = the session (like_room.lua)
    effects = [n for _, n in (e.split(":", 1) for e in gw.s.room_effects)
               if session is not None and p.get(f"effect:{n}") == session]
    return encode("room.snapshot", id=request_id, room=room, streamer=p["streamer"], live=live,
                  session=session, audience=audience, rseq=int(p.get("rseq", 0)),
                  board=[{"user": u, "cards": int(c)} for u, c in board], wish=wish_of(p),
                  likes=int(p.get("likes", 0)) if live else 0, effects=effects).decode()


def wish_of(p: dict[str, str]) -> dict[str, Any] | None:
    """The open gift wish of a room profile, or None."""
    if p.get("wish_open") != "1":
        return None
    return {"wish": p["wish_id"], "asset": p["wish_asset"], "target": int(p["wish_target"]),
            "progress": int(p.get("wish_progress", 0)), "ends_at_ms": int(p.get("wish_ends_ms", 0))}


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


async def like(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    """Count a batch of taps on the fan's slot (the speed rule, totals, levels); the room's
    session total gets the counted likes with the gateway's next tick (one call per room)."""
    streamer = await viewers(gw).streamer(d["room"])
    if streamer is None:
        gw.error(conn, "room_unknown", d["id"])
        return
    s, uk, now = gw.s, keys.user(conn.user), gw.clock.now_ms()
    tz = rules.parse_timezone(s.timezone)
    today = rules.local_day(now, tz)
    reply = await viewers(gw).p.scripts["like_fan"](
        keys=[uk.profile, uk.like_totals, uk.like_levels, uk.like_recent, uk.events, uk.channel,
              uk.like_tasks, uk.balances, uk.system, uk.ledger],
        args=[streamer, d["count"], now, s.like_window_ms, s.likes_per_window_max,
              ",".join(s.like_levels), s.events_bound, rules.day_key(today),
              rules.day_key(today - timedelta(days=1)), s.like_task_likes, s.like_streak_days,
              fan_card(streamer), fan_card(streamer, rare=True)])
    if status(reply) is Status.REJECTED:
        gw.error(conn, str(reply[1]), d["id"])
        return
    counted, refused, total, level, likes_today, streak = (int(x) for x in reply[1:7])
    if counted:
        viewers(gw).add_likes(d["room"], counted)
    if refused:  # the risk engine reads these; a lost signal never costs the fan a reply
        try:
            await gw.redis.xadd(keys.risk_stream(keys.partition_of(conn.user, s.partitions)),
                                {"user": conn.user, "signal": "like_speed", "refused": refused,
                                 "at_ms": now}, maxlen=s.risk_stream_max, approximate=True)
        except RedisError:
            log.warning("like speed signal for %s not written", conn.user, exc_info=True)
    conn.push(encode("room.liked", id=d["id"], room=d["room"], counted=counted, refused=refused,
                     total=total, level=level, today=likes_today, streak=streak).decode())



async def rank(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    rk = keys.room(d["room"])
    pipe = gw.redis.pipeline(transaction=False)
    pipe.exists(rk.profile)
    pipe.zrevrank(rk.board, conn.user)
    pipe.zscore(rk.board, conn.user)
    found, place, cards = await pipe.execute()
    if not found:
        gw.error(conn, "room_unknown", d["id"])
        return
    conn.push(encode("room.rank", id=d["id"], room=d["room"],
                     rank=None if place is None else int(place) + 1,
                     cards=int(cards or 0)).decode())


async def wish(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    if d["open"] and ("asset" not in d or "target" not in d):
        gw.error(conn, "missing_field", d["id"], "opening a wish needs 'asset' and 'target'")
        return
    if d["open"] and d["asset"] not in gw.s.note_assets:
        gw.error(conn, "bad_field", d["id"], f"asset must be a note card: {', '.join(gw.s.note_assets)}")
        return
    rk = keys.room(d["room"])
    ends = int(d.get("ends_at_ms", 0))
    reply = await viewers(gw).p.scripts["room_wish"](
        keys=[rk.profile, rk.channel],
        args=[conn.user, "open" if d["open"] else "close", d.get("asset", ""), d.get("target", 1),
              ends, gw.clock.now_ms(), gw.s.publish_mode])
    st = status(reply)
    if st is Status.REJECTED:
        gw.error(conn, str(reply[1]), d["id"])
        return
    if st is Status.APPLIED:  # the workers end a timed wish at its time; a closed one no more
        if d["open"] and ends:
            await gw.redis.zadd(keys.WISHES_DUE, {d["room"]: ends})
        elif not d["open"]:
            await gw.redis.zrem(keys.WISHES_DUE, d["room"])
    await state(gw, conn, d)


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
