"""Regions' admin routes: the configured policies, a user's pending offers (those held for
approval among them), an approver's decision."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from server.admin import validate as v
from server.admin.http import no_body, path_user, read_json
from server.ledger.admin import require_users
from server.parts import Parts
from server.regions import privacy
from server.regions.approvals import decide
from server.regions.rules import Region
from server.store import keys


def install(p: Parts, regions: dict[str, Region]) -> None:
    async def listing(r: Request) -> Any:
        return {"regions": [{"region": x.region, "approval": x.approval or None, "gdpr": x.gdpr}
                            for x in regions.values()]}

    async def offers(r: Request) -> Any:
        """A user's offers awaiting an answer, soonest to expire first (at most
        GIFTWIRE_OFFERS_PER_USER_MAX): `approval: true` for those held for approval."""
        uid = path_user(r)
        await require_users(p.redis, user=uid)
        held = [orjson.loads(x) for x in await p.redis.hvals(keys.user(uid).offers)]
        held.sort(key=lambda o: (o["expires_at_ms"], o["transfer_id"]))
        return {"user": uid, "offers": [
            {k: o[k] for k in ("transfer_id", "gift_id", "from", "asset", "count",
                                "expires_at_ms", "room", "channel") if k in o}
            | {"approval": bool(o.get("approval"))} for o in held]}

    async def approval(r: Request) -> Any:
        fields = {"recipient", "transfer_id", "approve"}
        d = v.obj(await read_json(r), fields, frozenset(fields))
        recipient = v.user_id(d["recipient"], "recipient")
        tid = d["transfer_id"]
        sender, _, gift_id = tid.partition(":") if isinstance(tid, str) else ("", "", "")
        v.user_id(sender, "transfer_id's sender")  # `<sender>:<gift id>`, as gift.offer gives it
        v.user_id(gift_id, "transfer_id's gift id")
        await require_users(p.redis, user=recipient)
        return await decide(p, recipient, tid, v.boolean(d["approve"], "approve"))

    async def export(r: Request) -> Any:
        return await privacy.export(p, path_user(r))

    async def erasure(r: Request) -> Any:
        user = path_user(r)
        await no_body(r)
        return await privacy.erase(p, user)

    p.admin.add("GET", "/users/{user}/export", export)
    p.admin.add("POST", "/users/{user}/erasure", erasure)
    p.admin.add("GET", "/regions", listing)
    p.admin.add("GET", "/users/{user}/offers", offers)
    p.admin.add("POST", "/approvals", approval)
