"""Gifting's admin routes: the social graph its rules read (follows, blocks), newcomers'
mentors, and the festival calendar."""

from __future__ import annotations

from typing import Any

from redis.exceptions import WatchError
from starlette.requests import Request

from server.admin import validate as v
from server.admin.http import path_user, read_json
from server.admin.validate import AdminError
from server.ledger.admin import require_users
from server.parts import Parts
from server.store import keys

FESTIVAL_DAYS_MAX = 366 * 5  # a calendar five years ahead
BIND_ATTEMPTS = 5  # a mentor binding retried while the profile changes under it


class GiftingAdmin:
    def __init__(self, p: Parts) -> None:
        self.p = p
        self.redis = p.redis
        self.s = p.settings

    async def bind_mentor(self, uid: str, body: Any) -> dict[str, Any]:
        d = v.obj(body, {"mentor"}, frozenset({"mentor"}))
        mentor = v.user_id(d["mentor"], "mentor")
        if mentor == uid:
            raise AdminError("bad_field", "a user cannot mentor themselves")
        registered = await self.redis.hget(keys.user(uid).profile, "registered_at_ms")
        if registered is None:
            raise AdminError("user_unknown")
        if not await self.redis.exists(keys.user(mentor).profile):
            raise AdminError("user_unknown", "no such mentor")
        if self.p.clock.now_ms() - int(registered) >= self.s.newcomer_window_s * 1000:
            raise AdminError("not_newcomer")
        profile = keys.user(uid).profile
        # checked and bound in one transaction: the first gift's finalize sets the mark, and a
        # mentor bound after it would never be rewarded (WATCH: one key, any deployment)
        for _ in range(BIND_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(profile)
                    bound, gifted = await pipe.hmget(profile, "mentor", "mentor_rewarded")
                    if bound:
                        raise AdminError("mentor_already_bound")
                    if gifted == "1":
                        raise AdminError("already_gifted")
                    pipe.multi()
                    pipe.hset(profile, "mentor", mentor)
                    await pipe.execute()
                    return {"id": uid, "mentor": mentor}
                except WatchError:
                    continue  # the profile changed meanwhile (a gift, a binding): look again
        raise AdminError("unavailable", "the user's profile kept changing; try again")

    async def follow(self, body: Any, on: bool = True) -> dict[str, Any]:
        """PUT checks the edge (no self-follow, both users known); DELETE removes whatever
        is there, so it stays idempotent and can clear edges written before those checks."""
        d = v.obj(body, {"follower", "followee", "since_ms"}, frozenset({"follower", "followee"}))
        follower, followee = v.user_id(d["follower"], "follower"), v.user_id(d["followee"], "followee")
        fk = keys.user(follower).follows
        if not on:
            await self.redis.hdel(fk, followee)
            return {"follower": follower, "followee": followee, "following": False}
        now = self.p.clock.now_ms()
        since = v.integer(d.get("since_ms", now), "since_ms", 0, now + 86400_000)
        if follower == followee:
            raise AdminError("self_relation", "a user cannot follow themselves")
        await require_users(self.redis, follower=follower, followee=followee)
        await self.redis.hset(fk, followee, since)
        return {"follower": follower, "followee": followee, "since_ms": since}

    async def block(self, body: Any, on: bool = True) -> dict[str, Any]:
        """Checked like `follow` on PUT; DELETE is unchecked and idempotent."""
        d = v.obj(body, {"blocker", "blocked"}, frozenset({"blocker", "blocked"}))
        blocker, blocked = v.user_id(d["blocker"], "blocker"), v.user_id(d["blocked"], "blocked")
        if on:
            if blocker == blocked:
                raise AdminError("self_relation", "a user cannot block themselves")
            await require_users(self.redis, blocker=blocker, blocked=blocked)
        # mirrored on both owners, so each side's Lua step checks its own slot only
        op = "sadd" if on else "srem"
        await getattr(self.redis, op)(keys.user(blocker).blocks, blocked)
        await getattr(self.redis, op)(keys.user(blocked).blocked_by, blocker)
        return {"blocker": blocker, "blocked": blocked, "blocking": on}

    async def set_festivals(self, body: Any) -> dict[str, Any]:
        d = v.obj(body, {"days"}, frozenset({"days"}))
        if not isinstance(d["days"], list) or len(d["days"]) > FESTIVAL_DAYS_MAX:
            raise AdminError("bad_field", f"days must be a list of at most {FESTIVAL_DAYS_MAX} dates")
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

    # -- routes ----------------------------------------------------------------
    async def mentor_route(self, r: Request) -> Any:
        return await self.bind_mentor(path_user(r), await read_json(r))

    async def follow_route(self, r: Request) -> Any:
        return await self.follow(await read_json(r), r.method == "PUT")

    async def block_route(self, r: Request) -> Any:
        return await self.block(await read_json(r), r.method == "PUT")

    async def festivals_route(self, r: Request) -> Any:
        if r.method == "GET":
            return await self.get_festivals()
        return await self.set_festivals(await read_json(r))


def install(p: Parts) -> None:
    a = GiftingAdmin(p)
    p.admin.add("PUT", "/users/{user}/mentor", a.mentor_route)
    p.admin.add(("PUT", "DELETE"), "/follows", a.follow_route)
    p.admin.add(("PUT", "DELETE"), "/blocks", a.block_route)
    p.admin.add(("GET", "PUT"), "/festivals", a.festivals_route)
    p.admin.add_bulk("follows", a.follow)
    p.admin.add_bulk("blocks", a.block)
