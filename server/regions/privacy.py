"""A user's data, exported or erased (GDPR, SPEC table 5). The export reads every key of
the user's slot as it is (each bounded); the erasure is one call on that slot
(`lua/user_erase.lua`)."""

from __future__ import annotations

from typing import Any

import orjson

from server.admin.validate import AdminError
from server.parts import Parts
from server.store import keys
from server.store.channels import publish
from server.store.outcomes import Status, UnknownStatus, status

EXPORT_ITEMS_MAX = 10_000  # per key: a hash's fields, a stream's newest entries


def _personal(uk: keys.UserKeys) -> dict[str, str]:
    """The user's keys that hold data about the person, by the name the export gives them
    (the erasure deletes them all)."""
    return {"follows": uk.follows, "blocks": uk.blocks, "blocked_by": uk.blocked_by,
            "likes": uk.like_totals, "fan_levels": uk.like_levels, "recent_likes": uk.like_recent,
            "like_tasks": uk.like_tasks, "iron_fan_of": uk.iron_fan_of,
            "risk_actions": uk.risk_actions, "risk_judged_actions": uk.risk_judged,
            "popularity_lots": uk.lots,
            "popularity_lot_points": uk.lot_points, "popularity": uk.popularity,
            "card_uses": uk.card_uses, "enterprise": uk.enterprise,
            "enterprise_orders": uk.enterprise_orders, "events": uk.events}


def _decoded(value: str) -> Any:
    """A stored JSON record as the object it is, anything else as stored."""
    if value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


async def _read(redis: Any, key: str) -> tuple[Any, bool]:
    """A key's content, whatever its type, bounded; and whether more was left out."""
    kind = await redis.type(key)
    if kind == "hash":
        out: dict[str, Any] = {}
        async for field, value in redis.hscan_iter(key, count=1000):
            if len(out) == EXPORT_ITEMS_MAX:
                return out, True
            out[field] = _decoded(value)
        return out, False
    if kind == "set":
        members = sorted(await redis.smembers(key))
        return members[:EXPORT_ITEMS_MAX], len(members) > EXPORT_ITEMS_MAX
    if kind == "zset":
        rows = await redis.zrange(key, 0, EXPORT_ITEMS_MAX, withscores=True)
        return [[m, int(s)] for m, s in rows[:EXPORT_ITEMS_MAX]], len(rows) > EXPORT_ITEMS_MAX
    if kind == "list":
        items = await redis.lrange(key, 0, EXPORT_ITEMS_MAX)
        return items[:EXPORT_ITEMS_MAX], len(items) > EXPORT_ITEMS_MAX
    if kind == "stream":  # the newest, oldest first
        rows = await redis.xrevrange(key, count=EXPORT_ITEMS_MAX + 1)
        kept = [{"id": i, **{k: _decoded(v) for k, v in f.items()}}
                for i, f in reversed(rows[:EXPORT_ITEMS_MAX])]
        return kept, len(rows) > EXPORT_ITEMS_MAX
    return None, False  # none


async def export(p: Parts, user: str) -> dict[str, Any]:
    uk = keys.user(user)
    if not await p.redis.hexists(uk.profile, "registered_at_ms"):
        raise AdminError("user_unknown")
    await p.refresh_balances(user)  # as of now: expired popularity lots burned first
    named = {"profile": uk.profile, "balances": uk.balances, "offers": uk.offers,
             **_personal(uk), "transfers": uk.transfers, "ledger": uk.ledger}
    out: dict[str, Any] = {"user": user, "exported_at_ms": p.clock.now_ms()}
    truncated = []
    for name, key in named.items():
        out[name], more = await _read(p.redis, key)
        if more:
            truncated.append(name)
    out["balances"] = {a: int(n) for a, n in (out["balances"] or {}).items()}
    out["truncated"] = truncated
    return out


async def erase(p: Parts, user: str) -> dict[str, Any]:
    uk = keys.user(user)
    reply = await p.scripts["user_erase"](
        keys=[uk.profile, uk.balances, uk.offers, uk.erased, *_personal(uk).values()],
        args=[p.clock.now_ms()])
    st = status(reply)
    if st is Status.REJECTED:
        code = str(reply[1])
        if code == "user_unknown":
            raise AdminError("user_unknown")
        if code == "balance_not_zero":
            raise AdminError("balance_not_zero")
        if code == "gifts_in_flight":
            raise AdminError("gifts_in_flight")
        raise UnknownStatus(f"user_erase refused with {code!r}")
    if st is not Status.APPLIED and st is not Status.EXISTS:
        raise UnknownStatus(f"user_erase answered {reply!r}")
    # its live connections end now, on every gateway (a new one is refused at connect)
    await publish(p.redis, p.settings.redis_cluster, uk.channel, f"{keys.CLOSE_PREFIX}account_erased")
    return {"user": user, "erased_at_ms": int(reply[1]), "replayed": st is Status.EXISTS,
            "kept": ["ledger", "transfers", "system_accounts"]}
