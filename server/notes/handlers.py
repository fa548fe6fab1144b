"""The note economy's requests at the gateway: the published odds, and redeeming sets
(one Lua call on the user's own slot, answered directly)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol.messages import encode
from server.gateway.connection import Connection
from server.gateway.endpoint import error_frame
from server.notes import metrics
from server.notes.economy import Economy, Refused

if TYPE_CHECKING:
    from server.gateway.endpoint import Gateway

EXT = "notes"  # this module's Economy in `Gateway.ext`
# the redemption's refusals → the protocol's error codes
REDEEM_ERRORS = {"user_unknown": "not_registered", "amount_too_large": "set_reward_full",
                 "set_incomplete": "set_incomplete",
                 "redemption_id_conflict": "redemption_id_conflict"}


def _economy(gw: Gateway) -> Economy:
    e: Economy = gw.ext[EXT]
    return e


async def get(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    e = _economy(gw)
    kinds = [{"asset": k["asset"], "odds": k["odds"], "odds_now": k["odds_now"],
              "in_stock": k["stock"] > 0} for k in await e.kinds()]
    conn.push(encode("notes.info", id=d["id"], kinds=kinds, set_kinds=list(e.set_assets),
                     set_reward={"asset": e.reward_asset, "amount": e.reward_per_set}).decode())


async def redeem(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    e, rid, sets = _economy(gw), d["id"], d.get("sets", 1)
    if sets > gw.s.sets_per_redemption_max:
        conn.push(error_frame("bad_field", rid, f"sets must be <= {gw.s.sets_per_redemption_max}"))
        return
    try:
        r = await e.redeem(d["redemption"], conn.user, sets, gw.clock.now_ms())
    except Refused as exc:
        gw.error(conn, REDEEM_ERRORS[exc.code], rid)
        return
    if not r.replayed:
        metrics.SETS.inc(r.sets)
    conn.push(encode("notes.redeemed", id=rid, redemption=d["redemption"], sets=r.sets,
                     reward={"asset": r.reward[0], "amount": r.reward[1]}, balances=r.balances,
                     replayed=r.replayed).decode())
