"""Gifting's requests at the gateway: what needs no storage is checked here, before
anything is queued; the rest goes to settlement as an entry of the gift or offer flow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol.messages import encode, rejection
from server import days
from server.config import Settings
from server.gateway.connection import Connection
from server.gifting import flow, offers, rules
from server.gifting.metrics import REJECTED
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status

if TYPE_CHECKING:
    from server.gateway.endpoint import Gateway


def precheck(s: Settings, user: str, d: dict[str, Any]) -> str | None:
    """Rules that need no storage: the rejection code, or None."""
    if d["to"] == user:
        return "self_gift"
    if not s.is_asset(d["asset"]):
        return "unknown_asset"
    if d["asset"] not in s.note_assets:
        return "not_transferable"
    if d["count"] > s.count_max:
        return "amount_too_large"
    return None


async def send(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    code = precheck(gw.s, conn.user, d)
    if code:
        REJECTED.inc(reason=code)
        tid = rules.transfer_id(conn.user, d["gift_id"])
        conn.push(rejection(tid, d["gift_id"], code, d["id"]))
        return
    await gw.enqueue(conn, d["id"], flow.KIND, flow.payload(d, conn.channel))


async def accept(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    await _offer_action(gw, conn, d, "accept")


async def decline(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    await _offer_action(gw, conn, d, "decline")


async def _offer_action(gw: Gateway, conn: Connection, d: dict[str, Any], action: str) -> None:
    sender, gift_id = rules.split_transfer_id(d["offer_id"])
    # a sender's own record is never an offer to them, nor is a system transfer (`$…`)
    if sender == conn.user or sender.startswith("$"):
        conn.push(rejection(d["offer_id"], gift_id, "offer_not_found", d["id"]))
        return
    await gw.enqueue(conn, d["id"], action, offers.payload(d))


async def frame(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    """The festival's avatar frame: on a festival day, for a user who gifted that day; it
    shows until the day's end plus GIFTWIRE_FESTIVAL_FRAME_DAYS (a pure date sum, then one
    call on the user's slot that checks the day's gifts and records the frame once)."""
    now, tz = gw.clock.now_ms(), days.parse_timezone(gw.s.timezone)
    today = days.local_day(now, tz)
    day = days.day_key(today)
    if not await gw.redis.sismember(keys.FESTIVALS, day):
        gw.error(conn, "not_festival", d["id"])
        return
    until = days.next_midnight_ms(now, tz) + gw.s.festival_frame_days * 86_400_000
    uk = keys.user(conn.user)
    reply = await gw.ext[FRAME_EXT](keys=[uk.profile, uk.day(day)], args=[day, until])
    st = status(reply)
    if st is Status.REJECTED:
        gw.error(conn, str(reply[1]), d["id"])
    elif st is Status.APPLIED or st is Status.EXISTS:
        conn.push(encode("festival.framed", id=d["id"], day=days.iso_day(str(reply[1])),
                         expires_at_ms=int(reply[2])).decode())
    else:
        raise UnknownStatus(f"frame_redeem answered {reply!r}")


FRAME_EXT = "gifting.frame"  # the frame script, in `Gateway.ext`
