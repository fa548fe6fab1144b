"""The note economy's admin routes: the odds and stock, refills, task rewards and set
redemptions (the platform's backend reports tasks done; giftwire draws and credits)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from server.admin import validate as v
from server.admin.http import read_json
from server.admin.validate import AdminError
from server.ledger.admin import require_users
from server.notes import metrics
from server.notes.economy import Economy, Refused
from server.parts import Parts


def _refused(exc: Refused, s: Any) -> AdminError:
    """The admin error of an economy refusal, each code written out (protocol.errors)."""
    match exc.code:
        case "amount_too_large":
            return AdminError("amount_too_large", f"a balance (or the stock) would pass "
                                                  f"GIFTWIRE_AMOUNT_MAX ({s.amount_max})")
        case "stock_empty":
            return AdminError("stock_empty")
        case "refill_id_conflict":
            return AdminError("refill_id_conflict")
        case "reward_id_conflict":
            return AdminError("reward_id_conflict")
        case "redemption_id_conflict":
            return AdminError("redemption_id_conflict")
        case "set_incomplete":
            return AdminError("set_incomplete")
        case "user_unknown":
            return AdminError("user_unknown")
    raise ValueError(f"no admin error for the economy's refusal {exc.code!r}")


def install(p: Parts, e: Economy) -> None:
    s = p.settings

    async def view(r: Request) -> Any:
        return {"kinds": await e.kinds(),
                "set_kinds": list(e.set_assets),
                "set_reward": {"asset": e.reward_asset, "amount": e.reward_per_set},
                "reward_cards_max": s.reward_cards_max}

    async def refill(r: Request) -> Any:
        d = v.obj(await read_json(r), {"id", "asset", "amount"}, frozenset({"id", "asset", "amount"}))
        rid = v.user_id(d["id"], "id")
        if not isinstance(d["asset"], str) or d["asset"] not in e.weights:
            raise AdminError("unknown_asset", f"the stock holds note cards: {', '.join(e.weights)}")
        amount = v.amount(d["amount"], "amount", s.amount_max)
        try:
            left, replayed = await e.refill(rid, d["asset"], amount)
        except Refused as exc:
            raise _refused(exc, s) from None
        return {"id": rid, "asset": d["asset"], "stock": left, "replayed": replayed}

    async def reward(body: Any) -> Any:
        """A task done: `cards` drawn (default 1) and credited, idempotent by `id`."""
        d = v.obj(body, {"id", "user", "cards"}, frozenset({"id", "user"}))
        rid, uid = v.user_id(d["id"], "id"), v.user_id(d["user"])
        cards = v.integer(d.get("cards", 1), "cards", 1, s.reward_cards_max)
        try:
            got = await e.reward(rid, uid, cards, p.clock.now_ms())
        except Refused as exc:
            raise _refused(exc, s) from None
        if not got.replayed:
            for asset, n in got.drawn.items():
                metrics.DRAWN.inc(n, asset=asset)
        return {"id": rid, "user": uid, "drawn": got.drawn, "balances": got.balances,
                "replayed": got.replayed}

    async def redeem(r: Request) -> Any:
        d = v.obj(await read_json(r), {"id", "user", "sets"}, frozenset({"id", "user"}))
        rid, uid = v.user_id(d["id"], "id"), v.user_id(d["user"])
        sets = v.integer(d.get("sets", 1), "sets", 1, s.sets_per_redemption_max)
        await require_users(p.redis, user=uid)
        try:
            got = await e.redeem(rid, uid, sets, p.clock.now_ms())
        except Refused as exc:
            raise _refused(exc, s) from None
        if not got.replayed:
            metrics.SETS.inc(got.sets)
        return {"id": rid, "user": uid, "sets": got.sets,
                "reward": {"asset": got.reward[0], "amount": got.reward[1]},
                "balances": got.balances, "replayed": got.replayed}

    p.admin.add("GET", "/notes", view)
    p.admin.add("POST", "/notes/stock", refill)
    async def reward_route(r: Request) -> Any:
        return await reward(await read_json(r))

    p.admin.add("POST", "/notes/rewards", reward_route)
    p.admin.add("POST", "/notes/redemptions", redeem)
    p.admin.add_bulk("note_rewards", reward)
