"""Groups' admin routes: the platform creates groups for creators and sets iron-fan tags;
operators read members, the moderation log, envelopes and the day's metrics."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from protocol.groups import ENTRY_RULES, GROUP_TYPES
from server import days
from server.admin import validate as v
from server.admin.http import read_json
from server.admin.validate import AdminError
from server.groups.view import envelope_view, poll_view
from server.ledger.admin import require_users
from server.parts import Parts
from server.store import keys
from server.store.outcomes import Status, status

MEMBERS_LISTED_MAX = 5000  # members one GET lists (capacity is 500 by default)
MEMBERS_PAGE_DEFAULT = 1000
LOG_LISTED_MAX = 200  # moderation log lines one GET lists
CAPACITY_MAX = 100_000
DAY_ENVELOPES_MAX = 10_000  # envelopes of one day the claim rate reads


def install(p: Parts) -> None:
    s = p.settings

    def group_id(r: Request) -> str:
        return v.user_id(r.path_params["group"], "group")

    async def group(r: Request) -> Any:
        gid = group_id(r)
        g = keys.group(gid)
        if r.method == "PUT":
            d = v.obj(await read_json(r), {"owner", "type", "rule", "capacity", "min_level"},
                      frozenset({"owner", "type", "rule"}))
            owner = v.user_id(d["owner"], "owner")
            if d["type"] not in GROUP_TYPES:
                raise AdminError("bad_field", f"type must be one of {', '.join(GROUP_TYPES)}")
            if d["rule"] not in ENTRY_RULES:
                raise AdminError("bad_field", f"rule must be one of {', '.join(ENTRY_RULES)}")
            capacity = v.integer(d.get("capacity", s.group_capacity), "capacity", 1, CAPACITY_MAX)
            min_level = v.integer(d.get("min_level", 0), "min_level", 0, 100)
            if d["rule"] == "level" and min_level < 1:
                raise AdminError("bad_field", "rule level needs min_level ≥ 1")
            await require_users(p.redis, owner=owner)
            reply = await p.scripts["group_setup"](
                keys=[g.profile, g.members],
                args=[owner, d["type"], d["rule"], capacity, min_level, p.clock.now_ms()])
            if status(reply) is Status.REJECTED:
                raise AdminError("owner_fixed" if reply[1] == "owner_fixed" else "group_full")
        pipe = p.redis.pipeline(transaction=False)
        pipe.hgetall(g.profile)
        pipe.zrange(g.envelopes, 0, -1)
        pipe.zrange(g.polls, 0, -1)
        prof, envs, polls = await pipe.execute()
        if "owner" not in prof:
            raise AdminError("group_unknown")
        return {"group": gid, "owner": prof["owner"], "type": prof["type"], "rule": prof["rule"],
                "capacity": int(prof["capacity"]), "min_level": int(prof.get("min_level", 0)),
                "members": int(prof.get("members", 0)), "gseq": int(prof.get("gseq", 0)),
                "open_envelopes": envs, "open_polls": polls}

    async def require_group(gid: str) -> keys.GroupKeys:
        g = keys.group(gid)
        if not await p.redis.exists(g.profile):
            raise AdminError("group_unknown")
        return g

    async def members(r: Request) -> Any:
        g = await require_group(group_id(r))
        pipe = p.redis.pipeline(transaction=False)
        pipe.hgetall(g.members)
        pipe.hgetall(g.mutes)
        pipe.hgetall(g.applications)
        pipe.smembers(g.removed)
        pipe.hgetall(g.warnings)
        roles, mutes, apps, removed, warnings = await pipe.execute()
        # pages by user id: `after` the last one a page listed, `limit` at a time
        limit = v.query_int(r.query_params.get("limit", str(MEMBERS_PAGE_DEFAULT)), "limit", 1,
                            MEMBERS_LISTED_MAX)
        after = r.query_params.get("after")
        if after is not None:
            v.user_id(after, "after")
        rest = sorted(u for u in roles if after is None or u > after)
        listed = rest[:limit]
        return {"group": g.group, "total": len(roles), "members": [
            {"user": u, "role": roles[u], "muted_until_ms": int(mutes.get(u, 0)),
             "warnings": int(warnings.get(u, 0))} for u in listed],
            "next": listed[-1] if len(rest) > limit else None,
            "applications": sorted(apps)[:MEMBERS_LISTED_MAX],
            "removed": sorted(removed)[:MEMBERS_LISTED_MAX]}

    async def moderation(r: Request) -> Any:
        g = await require_group(group_id(r))
        lines = await p.redis.xrevrange(g.modlog, count=LOG_LISTED_MAX)
        return {"group": g.group, "log": [
            {"actor": f["actor"], "action": f["action"], "user": f["user"],
             "reason": f["reason"], "at_ms": int(f["at_ms"])} for _, f in lines]}

    async def metrics(r: Request) -> Any:
        """The day's metrics, exact: distinct speakers and voters are sets, not estimates."""
        g = await require_group(group_id(r))
        raw = r.query_params.get("day")
        # a YYYY-MM-DD date (or 400 bad_field), else today
        dk = (v.day(raw) if raw is not None
              else days.day_key(days.local_day(p.clock.now_ms(), days.parse_timezone(s.timezone))))
        pipe = p.redis.pipeline(transaction=False)
        pipe.hgetall(g.day(dk))
        pipe.scard(g.speakers(dk))
        pipe.scard(g.voters(dk))
        pipe.hget(g.profile, "members")
        pipe.smembers(g.day_envelopes(dk))
        counters, speakers, voters, members_now, opened = await pipe.execute()
        pipe = p.redis.pipeline(transaction=False)
        for name in sorted(opened)[:DAY_ENVELOPES_MAX]:
            pipe.hmget(g.envelope(name), "shares", "left_shares")
        # the claim rate of the day's envelopes, whenever they were grabbed
        taken = [(int(a), int(a) - int(b)) for a, b in await pipe.execute() if a is not None]
        offered = sum(n for n, _ in taken)
        claimed = sum(c for _, c in taken)
        grabs = int(counters.get("grabs", 0))
        members_now = int(members_now or 0)
        return {"group": g.group, "day": days.iso_day(dk), "active_speakers": speakers,
                "messages": int(counters.get("messages", 0)), "poll_voters": voters,
                "poll_participation": round(voters / members_now, 4) if members_now else 0.0,
                "envelopes": int(counters.get("envelopes", 0)), "shares_offered": offered,
                "grabs": grabs, "shares_claimed": claimed,
                "claim_rate": round(claimed / offered, 4) if offered else 0.0,
                "members": members_now}

    async def envelope(r: Request) -> Any:
        g = await require_group(group_id(r))
        name = r.path_params["envelope"]  # `<sender>:<envelope id>`, as group events name it
        sender, sep, eid = name.partition(":")
        if not sep:
            raise AdminError("bad_field", "envelope must be <sender>:<envelope id>")
        v.user_id(sender, "envelope's sender")
        v.user_id(eid, "envelope id")
        h = await p.redis.hgetall(g.envelope(name))
        if not h or h.get("state") == "void":
            raise AdminError("not_found", "no such envelope in this group")
        grabs = await p.redis.hgetall(g.grabs(name))
        return {**envelope_view(name, h), "refunded": int(h.get("refunded", 0)),
                "grabs": {u: int(x) for u, x in grabs.items()}}

    async def poll(r: Request) -> Any:
        g = await require_group(group_id(r))
        v.user_id(r.path_params["poll"], "poll")  # an id like any other in a path
        h = await p.redis.hgetall(g.poll(r.path_params["poll"]))
        if not h:
            raise AdminError("not_found", "no such poll in this group")
        return poll_view(r.path_params["poll"], h)

    async def iron_fan(r: Request) -> Any:
        """The platform's iron-fan tag: `fan` is an iron fan of `creator` (or no longer)."""
        d = v.obj(await read_json(r), {"fan", "creator", "iron"}, frozenset({"fan", "creator", "iron"}))
        fan, creator = v.user_id(d["fan"], "fan"), v.user_id(d["creator"], "creator")
        iron = v.boolean(d["iron"], "iron")
        if iron and fan == creator:  # (a tag set before this rule can still be removed)
            raise AdminError("self_relation", "a creator cannot be their own iron fan")
        await require_users(p.redis, fan=fan, creator=creator)
        key = keys.user(fan).iron_fan_of
        await (p.redis.sadd(key, creator) if iron else p.redis.srem(key, creator))
        return {"fan": fan, "creator": creator, "iron": iron}

    p.admin.add(("GET", "PUT"), "/groups/{group}", group)
    p.admin.add("GET", "/groups/{group}/members", members)
    p.admin.add("GET", "/groups/{group}/moderation", moderation)
    p.admin.add("GET", "/groups/{group}/metrics", metrics)
    p.admin.add("GET", "/groups/{group}/envelopes/{envelope}", envelope)
    p.admin.add("GET", "/groups/{group}/polls/{poll}", poll)
    p.admin.add("PUT", "/iron-fans", iron_fan)
