"""What the admin API does, one method per operation, shared by the single and
bulk endpoints. Balance changes go through the grant script; the rest are plain
single-owner writes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from server.admin import validate as v
from server.admin.validate import AdminError
from server.config import Settings
from server.gifting.service import GiftService
from server.store import keys

GRANT_ERRORS = {
    "user_unknown": (404, "no such user"),
    "insufficient_balance": (409, "the user's balance is smaller than the amount"),
    "amount_too_large": (400, "the balance would exceed the account bound"),
    "conflict": (409, "this id was used with different parameters"),
}
LEDGER_PAGE_DEFAULT = 50


def now_ms() -> int:
    return int(time.time() * 1000)


class AdminOps:
    def __init__(self, redis: Any, service: GiftService, settings: Settings) -> None:
        self.redis = redis
        self.service = service
        self.s = settings

    async def put_user(self, uid: str, body: Any) -> dict[str, Any]:
        uid = v.user_id(uid)
        fields = v.profile(body, now_ms())
        pk = keys.user(uid).profile
        # registration time is set once, on creation, unless given
        created = await self.redis.hsetnx(pk, "registered_at_ms", fields.pop(
            "registered_at_ms", str(now_ms())))
        if not created and "registered_at_ms" in (body or {}):
            fields["registered_at_ms"] = str(body["registered_at_ms"])
        if fields:
            await self.redis.hset(pk, mapping=fields)
        return {"id": uid, "created": bool(created)}

    async def get_user(self, uid: str) -> dict[str, Any]:
        uk = keys.user(v.user_id(uid))
        p = await self.redis.hgetall(uk.profile)
        if not p:
            raise AdminError(404, "user_unknown", "no such user")
        return {
            "id": uid,
            "registered_at_ms": int(p["registered_at_ms"]),
            "real_name_verified": p.get("real_name") == "1",
            "vip": p.get("vip") == "1",
            "banned": p.get("banned") == "1",
            "confirm_gifts": p.get("confirm") == "1",
            "mentor": p.get("mentor"),
            "free_cards_used": int(p.get("free_used", 0)),
            "balances": await self.balances(uid),
        }

    async def balances(self, uid: str) -> dict[str, int]:
        raw = await self.redis.hgetall(keys.user(v.user_id(uid)).balances)
        return {a: int(n) for a, n in raw.items() if int(n)}

    async def bind_mentor(self, uid: str, body: Any) -> dict[str, Any]:
        d = v.obj(body, {"mentor"}, frozenset({"mentor"}))
        mentor = v.user_id(d["mentor"], "mentor")
        if mentor == uid:
            raise AdminError(400, "bad_field", "a user cannot mentor themselves")
        user = await self.get_user(uid)
        if not await self.redis.exists(keys.user(mentor).profile):
            raise AdminError(404, "user_unknown", "no such mentor")
        if now_ms() - user["registered_at_ms"] >= self.s.newcomer_window_s * 1000:
            raise AdminError(409, "not_newcomer", "only a newcomer can bind a mentor")
        if not await self.redis.hsetnx(keys.user(uid).profile, "mentor", mentor):
            raise AdminError(409, "mentor_already_bound", "this user already has a mentor")
        return {"id": uid, "mentor": mentor}

    async def require_users(self, **users: str) -> None:
        """404 `user_unknown` unless every named user has a profile (one call per key:
        the profiles sit in different cluster slots)."""
        found = await asyncio.gather(*(self.redis.exists(keys.user(u).profile)
                                       for u in users.values()))
        missing = [f"{role} {u}" for (role, u), n in zip(users.items(), found, strict=True) if not n]
        if missing:
            raise AdminError(404, "user_unknown", f"no such user: {', '.join(missing)}")

    async def follow(self, body: Any, on: bool = True) -> dict[str, Any]:
        """PUT checks the edge (no self-follow, both users known); DELETE removes whatever
        is there, so it stays idempotent and can clear edges written before those checks."""
        d = v.obj(body, {"follower", "followee", "since_ms"}, frozenset({"follower", "followee"}))
        follower, followee = v.user_id(d["follower"], "follower"), v.user_id(d["followee"], "followee")
        fk = keys.user(follower).follows
        if not on:
            await self.redis.hdel(fk, followee)
            return {"follower": follower, "followee": followee, "following": False}
        since = v.integer(d.get("since_ms", now_ms()), "since_ms", 0, now_ms() + 86400_000)
        if follower == followee:
            raise AdminError(400, "self_relation", "a user cannot follow themselves")
        await self.require_users(follower=follower, followee=followee)
        await self.redis.hset(fk, followee, since)
        return {"follower": follower, "followee": followee, "since_ms": since}

    async def block(self, body: Any, on: bool = True) -> dict[str, Any]:
        """Checked like `follow` on PUT; DELETE is unchecked and idempotent."""
        d = v.obj(body, {"blocker", "blocked"}, frozenset({"blocker", "blocked"}))
        blocker, blocked = v.user_id(d["blocker"], "blocker"), v.user_id(d["blocked"], "blocked")
        if on:
            if blocker == blocked:
                raise AdminError(400, "self_relation", "a user cannot block themselves")
            await self.require_users(blocker=blocker, blocked=blocked)
        # mirrored on both owners, so each side's Lua step checks its own slot only
        op = "sadd" if on else "srem"
        await getattr(self.redis, op)(keys.user(blocker).blocks, blocked)
        await getattr(self.redis, op)(keys.user(blocked).blocked_by, blocker)
        return {"blocker": blocker, "blocked": blocked, "blocking": on}

    async def move(self, body: Any, revoke: bool) -> dict[str, Any]:
        """A grant (mint → user) or a revocation (user → burn), idempotent by `id`."""
        d = v.obj(body, {"id", "user", "asset", "amount"}, frozenset({"id", "user", "asset", "amount"}))
        op_id = v.user_id(d["id"], "id")
        uid = v.user_id(d["user"])
        asset = v.asset(d["asset"], self.s.assets)
        amount = v.integer(d["amount"], "amount", 1, self.s.amount_max)
        kind = "revoke" if revoke else "grant"
        status, detail = await self.service.grant(
            uid, f"${kind}:{op_id}", asset, -amount if revoke else amount,
            "burn" if revoke else "mint", kind, now_ms())
        if status in ("rejected", "conflict"):
            code = detail if status == "rejected" else f"{kind}_id_conflict"
            http, message = GRANT_ERRORS[detail if status == "rejected" else "conflict"]
            raise AdminError(http, code, message)
        return {"id": op_id, "user": uid, "asset": asset, "balance": int(detail),
                "replayed": status == "exists"}

    async def set_festivals(self, body: Any) -> dict[str, Any]:
        d = v.obj(body, {"days"}, frozenset({"days"}))
        if not isinstance(d["days"], list) or len(d["days"]) > 366 * 5:
            raise AdminError(400, "bad_field", "days must be a list of at most 1830 dates")
        days = sorted({v.day(x) for x in d["days"]})
        if days:  # built aside, then swapped in atomically (RENAME: same slot, works on a cluster)
            await self.redis.delete(keys.FESTIVALS_NEXT)
            await self.redis.sadd(keys.FESTIVALS_NEXT, *days)
            await self.redis.rename(keys.FESTIVALS_NEXT, keys.FESTIVALS)
        else:
            await self.redis.delete(keys.FESTIVALS)
        return await self.get_festivals()

    async def get_festivals(self) -> dict[str, Any]:
        days = sorted(await self.redis.smembers(keys.FESTIVALS))
        return {"days": [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in days]}

    async def ledger(self, uid: str, cursor: str | None, limit: str | None) -> dict[str, Any]:
        """Newest first; `next_cursor` pages back in time. `cursor` and `limit` are the raw
        query strings: both are validated here, before Redis sees them, and never clamped."""
        lk = keys.user(v.user_id(uid)).ledger
        hi = self.s.ledger_page_max
        count = min(LEDGER_PAGE_DEFAULT, hi) if limit is None else v.query_int(limit, "limit", 1, hi)
        before = None if cursor is None else v.cursor(cursor)
        if before == (0, 0):  # the smallest stream id: nothing is older (Redis refuses "(0-0")
            return {"entries": [], "next_cursor": None}
        top = "+" if before is None else f"({before[0]}-{before[1]}"
        rows = await self.redis.xrevrange(lk, max=top, min="-", count=count)
        entries = [
            {"cursor": eid, "transfer_id": f["tid"], "asset": f["asset"], "delta": int(f["delta"]),
             "account": f["account"], "kind": f["kind"], "at_ms": int(f["ts"])}
            for eid, f in rows
        ]
        nxt = entries[-1]["cursor"] if len(entries) == count else None
        return {"entries": entries, "next_cursor": nxt}
