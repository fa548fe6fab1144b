"""Partner apps' admin routes: the partners and their bonuses, a joint campaign's members."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from server.admin import validate as v
from server.admin.validate import AdminError
from server.partners.rules import CHANNEL, Partner
from server.parts import Parts
from server.store import keys

MEMBERS_PAGE_DEFAULT = 100
MEMBERS_PAGE_MAX = 1000
OFFSET_MAX = 10**12  # far past any campaign; keeps the query integer bounded


def install(p: Parts, partners: dict[str, Partner]) -> None:
    async def listing(r: Request) -> Any:
        out = []
        for c, partner in partners.items():
            members = await p.redis.zcard(keys.partner_campaign(c)) if partner.campaign else 0
            out.append({"channel": c, "points_per_card": partner.points_per_card,
                        "campaign": partner.campaign, "campaign_members": members})
        return {"partners": out}

    async def campaign(r: Request) -> Any:
        channel = r.path_params["channel"]
        if not CHANNEL.fullmatch(channel):
            raise AdminError("bad_field", "a channel is 1-24 of a-z, 0-9 and _")
        if channel not in partners or not partners[channel].campaign:
            raise AdminError("not_found", "no partner with a campaign by that channel")
        q = r.query_params
        limit = v.query_int(q.get("limit", str(MEMBERS_PAGE_DEFAULT)), "limit", 1, MEMBERS_PAGE_MAX)
        start = v.query_int(q.get("after", "0"), "after", 0, OFFSET_MAX)
        k = keys.partner_campaign(channel)
        # members only ever join, oldest first: an offset pages them stably
        pipe = p.redis.pipeline(transaction=True)  # the page and its total, one reading
        pipe.zrange(k, start, start + limit, withscores=True)
        pipe.zcard(k)
        rows, total = await pipe.execute()
        listed = rows[:limit]
        return {"channel": channel, "total": total,
                "members": [{"user": u, "joined_at_ms": int(ms)} for u, ms in listed],
                "next": start + limit if len(rows) > limit else None}

    p.admin.add("GET", "/partners", listing)
    p.admin.add("GET", "/partners/{channel}/campaign", campaign)
