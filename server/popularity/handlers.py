"""Popularity's requests at the gateway. Reading points, the sign-in and exchanges act on
the user's own slot directly (one Lua call); card uses and cancels touch other owners
(the content, its hash) and go to settlement."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson

from protocol.messages import encode
from server import days
from server.config import fan_card
from server.gateway.connection import Connection
from server.popularity import flows, rules
from server.store import keys
from server.store.outcomes import Status, status

if TYPE_CHECKING:
    from server.gateway.endpoint import Gateway

EXT = "popularity"  # this module's Parts in `Gateway.ext`
SCHEDULE_HORIZON_MS = 30 * 86_400_000  # a use starts at most this far ahead


def _scripts(gw: Gateway) -> Any:
    return gw.ext[EXT].scripts


def _points_reply(rid: str, view_json: str) -> str:
    view = orjson.loads(view_json)
    view.pop("type", None)
    view.pop("seq", None)
    return encode("popularity.points", id=rid, **view).decode()


async def get(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    reply = await _scripts(gw)["pop_read"](keys=flows.user_keys(conn.user),
                                           args=[gw.clock.now_ms(), gw.s.events_bound])
    conn.push(_points_reply(d["id"], str(reply[1])))


async def signin(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    s, now = gw.s, gw.clock.now_ms()
    today = days.local_day(now, days.parse_timezone(s.timezone))
    first, step, most = (int(x) for x in s.signin_points)
    rid, no = d["id"], conn.expect(d["id"])  # the event the script emits is the reply
    try:
        reply = await _scripts(gw)["pop_signin"](
            keys=flows.user_keys(conn.user),
            args=[days.day_key(today), days.day_key(today - timedelta(days=1)), now,
                  s.points_lot_ttl_s * 1000, first, step, most, s.events_bound,
                  keys.route(conn.id, no)])
    except BaseException:
        conn.forget(no)
        raise
    st = status(reply)
    if st is not Status.APPLIED:
        conn.forget(no)
    if st is not Status.REJECTED:  # a fresh lot (a retry's too: a crash may have come between)
        await flows.note_lots(gw.redis, conn.user, now)
    if st is Status.REJECTED:
        gw.error(conn, str(reply[1]), rid)
    elif st is Status.EXISTS:  # signed in today already: the points as they are
        conn.push(_points_reply(rid, str(reply[1])))


async def exchange(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    """One creator's small cards for points, in whole units."""
    await _to_points(gw, conn, d["id"], "exchange", d["exchange"], d["cards"],
                     fan_card(d["creator"]), gw.s.exchange_cards, gw.s.exchange_points)


async def buy(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    """Coin spent on points (SPEC: 8 points per yuan of coin), in whole yuan."""
    await _to_points(gw, conn, d["id"], "purchase", d["buy"], d["coin"], "coin",
                     gw.s.coin_per_yuan, gw.s.points_per_yuan)


CONFLICT = {"exchange": "exchange_id_conflict", "purchase": "buy_id_conflict"}


async def _to_points(gw: Gateway, conn: Connection, rid: str, kind: str, ref: str, amount: int,
                     asset: str, unit: int, unit_points: int) -> None:
    """Something held turns into points in one call on the user's slot (`pop_exchange`)."""
    s, now = gw.s, gw.clock.now_ms()
    no = conn.expect(rid)
    try:
        reply = await _scripts(gw)["pop_exchange"](
            keys=flows.user_keys(conn.user),
            args=[ref, amount, unit, unit_points, now, s.points_lot_ttl_s * 1000, s.events_bound,
                  keys.route(conn.id, no), asset, kind, s.amount_max])
    except BaseException:
        conn.forget(no)
        raise
    st = status(reply)
    if st is Status.APPLIED or st is Status.EXISTS:  # a fresh lot
        await flows.note_lots(gw.redis, conn.user, now)
    if st is Status.APPLIED:
        return  # the event answered the request
    conn.forget(no)
    if st is Status.EXISTS:  # answered as the first time: the stored event, its seq kept
        event = orjson.loads(str(reply[1]))
        event.pop("type", None)
        conn.push(encode("popularity.points", id=rid, **event).decode())
    else:
        code = CONFLICT[kind] if st is Status.CONFLICT else str(reply[1])
        gw.error(conn, code, rid, rules.refusal_detail(code, s))


async def use(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    """Targeting is checked here (pure, one code per field); the rest in settlement."""
    problem = rules.targeting_problem(d["targeting"], gw.s)
    if problem:
        gw.error(conn, problem, d["id"], rules.refusal_detail(problem, gw.s))
        return
    now = gw.clock.now_ms()
    if not now <= d.get("start_at_ms", now) <= now + SCHEDULE_HORIZON_MS:
        gw.error(conn, "bad_field", d["id"])  # in the past, or more than 30 days ahead
        return
    await gw.enqueue(conn, d["id"], flows.USE, flows.use_payload(d, now))


async def cancel(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    await gw.enqueue(conn, d["id"], flows.CANCEL, {"use": d["use"]})
