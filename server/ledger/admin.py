"""The ledger's admin routes: users and their profile, balances and ledger pages, grants
(mint → user) and revocations (user → burn)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

from server import days
from server.admin import validate as v
from server.admin.http import path_user, read_json
from server.admin.validate import AdminError
from server.config import fan_card_of
from server.ledger.grants import grant
from server.parts import Parts
from server.store import keys
from server.store.outcomes import Status, status

# the grant script's rejection codes → the admin codes they are answered with
GRANT_REJECTIONS = {
    "user_unknown": "user_unknown",
    "insufficient_balance": "insufficient_balance",
    "amount_too_large": "amount_too_large",
}
LEDGER_PAGE_DEFAULT = 50
GIFT_LINE = ("count", "cost", "free", "tier")  # the fields a `gift_out` line adds


def gift_line(f: dict[str, str]) -> dict[str, int]:
    """A `gift_out` line's count, cost (festival and boost included), free part and tier: as
    stored when the price was not the count, else a plain gift's (send_debit.lua)."""
    if f["kind"] != "gift_out":
        return {}
    if "cost" in f:
        return {k: int(f[k]) for k in GIFT_LINE}
    paid = -int(f["delta"])
    return {"count": paid, "cost": paid, "free": 0, "tier": 0}


async def require_users(redis: Any, **users: str) -> None:
    """404 `user_unknown` unless every named user has a profile (one call per key: the
    profiles sit in different cluster slots)."""
    found = await asyncio.gather(*(redis.hexists(keys.user(u).profile, "registered_at_ms")
                                   for u in users.values()))  # registered, as GET /users says
    missing = [f"{role} {u}" for (role, u), n in zip(users.items(), found, strict=True) if not n]
    if missing:
        raise AdminError("user_unknown", f"no such user: {', '.join(missing)}")


class LedgerAdmin:
    def __init__(self, p: Parts) -> None:
        self.p = p
        self.redis = p.redis
        self.s = p.settings

    async def put_user(self, uid: str, body: Any) -> dict[str, Any]:
        uid = v.user_id(uid)
        now = self.p.clock.now_ms()
        fields = v.profile(body, now)
        uk = keys.user(uid)
        given = "registered_at_ms" in fields  # else set once, on creation, to now
        registered = fields.pop("registered_at_ms", str(now))
        reply = await self.p.scripts["user_put"](
            keys=[uk.profile, uk.erased],
            args=[registered, "1" if given else "0", *(x for kv in fields.items() for x in kv)])
        if status(reply) is Status.REJECTED:  # GDPR: an erased id is gone for good
            raise AdminError("user_erased")
        created = reply[1] == "1"
        return {"id": uid, "created": bool(created)}

    async def bulk_user(self, item: Any) -> Any:
        """A bulk item is a PUT /users/{id} body with its `id` in it."""
        if not isinstance(item, dict):
            raise AdminError("bad_body", "each user is an object with its id")
        if "id" not in item:
            raise AdminError("missing_field", "missing field(s): id")
        uid = item["id"]
        body = {k: x for k, x in item.items() if k != "id"}  # (a PUT's body has no id)
        return await self.put_user(uid if isinstance(uid, str) else "", body)

    async def get_user(self, uid: str) -> dict[str, Any]:
        uk = keys.user(v.user_id(uid))
        p = await self.redis.hgetall(uk.profile)
        if "registered_at_ms" not in p:  # a profile is a user only once registered
            raise AdminError("user_unknown")
        return {
            "id": uid,
            "registered_at_ms": int(p["registered_at_ms"]),
            "real_name_verified": p.get("real_name") == "1",
            "vip": p.get("vip") == "1",
            "banned": p.get("banned") == "1",
            "confirm_gifts": p.get("confirm") == "1",
            "mentor": p.get("mentor"),
            "region": p.get("region"),
            "gender": p.get("gender"),
            "free_cards_used": int(p.get("free_used", 0)),
            "risk": self.risk_state(p),
            "avatar_frame": self.frame(p),
            "balances": await self.balances(uid),
        }

    def frame(self, p: dict[str, str]) -> dict[str, Any] | None:
        """The festival avatar frame the user shows now (`festival.frame`), or None."""
        until = int(p.get("frame_until_ms") or 0)
        if until <= self.p.clock.now_ms():
            return None
        return {"day": days.iso_day(p["frame_day"]), "expires_at_ms": until}

    def risk_state(self, p: dict[str, str]) -> dict[str, Any]:
        """The risk engine's decisions in force on the account (support's view: a user who
        was offline when told still sees only the next refusal)."""
        now = self.p.clock.now_ms()

        def until(field: str) -> int | None:
            ms = int(p.get(field) or 0)
            return ms if ms > now else None

        return {"restricted_until_ms": until("risk_restricted_until"),
                "frozen_until_ms": until("risk_frozen_until"),
                "banned": p.get("risk_banned") == "1"}

    async def balances(self, uid: str) -> dict[str, int]:
        """As of now: the modules' refreshes run first (popularity's expired lots burn)."""
        await self.p.refresh_balances(v.user_id(uid))
        raw = await self.redis.hgetall(keys.user(v.user_id(uid)).balances)
        return {a: int(n) for a, n in raw.items() if int(n)}

    async def move(self, body: Any, revoke: bool) -> dict[str, Any]:
        """A grant (mint → user) or a revocation (user → burn), idempotent by `id`."""
        d = v.obj(body, {"id", "user", "asset", "amount"}, frozenset({"id", "user", "asset", "amount"}))
        op_id = v.user_id(d["id"], "id")
        uid = v.user_id(d["user"])
        asset = v.asset(d["asset"], self.s)
        # a balance its module's structure backs (popularity's lots: never bare), or a grant
        # of a fan-club card (earned by the like task alone); such cards may be revoked (to
        # burn), or a fan who earned some could never be erased
        if asset in self.p.managed_assets or (fan_card_of(asset) is not None and not revoke):
            raise AdminError("asset_not_grantable")
        amount = v.amount(d["amount"], "amount", self.s.amount_max)
        kind = "revoke" if revoke else "grant"
        st, detail = await grant(self.p.scripts, self.s, uid, f"${kind}:{op_id}", asset,
                                 -amount if revoke else amount, "burn" if revoke else "mint", kind,
                                 self.p.clock.now_ms())
        if st is Status.CONFLICT:
            raise AdminError("revoke_id_conflict" if revoke else "grant_id_conflict")
        if st is Status.REJECTED:
            raise AdminError(GRANT_REJECTIONS[detail])
        return {"id": op_id, "user": uid, "asset": asset, "balance": int(detail),
                "replayed": st is Status.EXISTS}

    async def ledger(self, uid: str, cursor: str | None, limit: str | None) -> dict[str, Any]:
        """Newest first; `next_cursor` pages back in time. `cursor` and `limit` are the raw
        query strings: both are validated here, before Redis sees them, and never clamped."""
        lk = keys.user(v.user_id(uid)).ledger
        hi = self.s.ledger_page_max
        count = min(LEDGER_PAGE_DEFAULT, hi) if limit is None else v.query_int(limit, "limit", 1, hi)
        before = None if cursor is None else v.cursor(cursor)
        await require_users(self.redis, user=uid)  # the query is checked first: 400 before 404
        if before == (0, 0):  # the smallest stream id: nothing is older (Redis refuses "(0-0")
            return {"entries": [], "next_cursor": None}
        top = "+" if before is None else f"({before[0]}-{before[1]}"
        # one line more than the page: whether an older one exists (null on the last page)
        rows = await self.redis.xrevrange(lk, max=top, min="-", count=count + 1)
        entries = [
            {"cursor": eid, "transfer_id": f["tid"], "asset": f["asset"], "delta": int(f["delta"]),
             "account": f["account"], "kind": f["kind"], "at_ms": int(f["ts"]), **gift_line(f)}
            for eid, f in rows[:count]
        ]
        nxt = entries[-1]["cursor"] if len(rows) > count else None
        return {"entries": entries, "next_cursor": nxt}

    # -- routes ----------------------------------------------------------------
    async def user_route(self, r: Request) -> Any:
        if r.method == "PUT":
            return await self.put_user(path_user(r), await read_json(r))
        return await self.get_user(path_user(r))

    async def balances_route(self, r: Request) -> Any:
        u = path_user(r)
        await require_users(self.redis, user=u)
        return {"user": u, "balances": await self.balances(u)}

    async def ledger_route(self, r: Request) -> Any:
        return await self.ledger(path_user(r), r.query_params.get("cursor"),
                                 r.query_params.get("limit"))

    async def grant_route(self, r: Request) -> Any:
        return await self.move(await read_json(r), revoke=False)

    async def revoke_route(self, r: Request) -> Any:
        return await self.move(await read_json(r), revoke=True)

    async def bulk_grant(self, item: Any) -> Any:
        return await self.move(item, revoke=False)
