"""Enterprise accounts' admin routes (SPEC section 1, table 6): the platform sets an
enterprise's figures; brand marketing issues cards to a list of users; an order paid in a
shop window above a threshold gifts its buyer; user operations issue by fan-club level.
Each credit is a grant from mint on the recipient's slot, idempotent per issuance or order."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from typing import Any

import orjson
from starlette.requests import Request

from server.admin import validate as v
from server.admin.http import path_user, read_json
from server.admin.validate import AdminError
from server.ledger.admin import require_users
from server.ledger.grants import grant
from server.notes.economy import Refused, give_back, take
from server.parts import Parts
from server.store import keys
from server.store.outcomes import Status, status

FLAGS = ("brand_verified", "shop_window", "group_active")  # the platform's word on each
FANS_MAX = 10**10
LISTED_MAX = 100  # users named in a reply's `unknown` / `refused`
CONCURRENCY = 32  # grants in flight for one issuance
LEVEL_MAX = 1000
TIERS_MAX = 16
LEVELS = frozenset(str(n) for n in range(1, LEVEL_MAX + 1))  # a tier's key: no sign, no 0 before


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha1(orjson.dumps(parts)).hexdigest()


def install(p: Parts) -> None:
    s = p.settings

    async def figures(uid: str) -> dict[str, Any]:
        raw = await p.redis.hgetall(keys.user(uid).enterprise)
        f = {k: raw.get(k) == "1" for k in FLAGS}
        fans = int(raw.get("fans", 0))
        gmv, cards = int(raw.get("gmv_fen", 0)), int(raw.get("cards", 0))
        return {"enterprise": uid, **f, "fans": fans,
                "eligible": {"brand_marketing": f["brand_verified"] and fans >= s.brand_fans_min,
                             "ecommerce": f["shop_window"], "user_operations": f["group_active"]},
                "roi": {"orders": int(raw.get("orders", 0)), "gmv_fen": gmv, "cards": cards,
                        "gmv_fen_per_card": gmv // cards if cards else None}}

    async def require(uid: str, service: str) -> None:
        await require_users(p.redis, enterprise=uid)
        if not (await figures(uid))["eligible"][service]:
            raise AdminError("enterprise_not_eligible", {
                "brand_marketing": f"brand marketing needs a verified brand with at least "
                                   f"{s.brand_fans_min} fans",
                "ecommerce": "e-commerce needs the shop window enabled",
                "user_operations": "user operations need the fan groups' activity above the "
                                   "platform's threshold (group_active)"}[service])

    async def account(r: Request) -> Any:
        uid = path_user(r)
        await require_users(p.redis, enterprise=uid)
        if r.method == "PUT":
            d = v.obj(await read_json(r), {*FLAGS, "fans"})
            fields = {k: "1" if v.boolean(d[k], k) else "0" for k in FLAGS if k in d}
            if "fans" in d:
                fields["fans"] = str(v.integer(d["fans"], "fans", 0, FANS_MAX))
            if fields:
                await p.redis.hset(keys.user(uid).enterprise, mapping=fields)
        return await figures(uid)

    def users_of(d: dict[str, Any]) -> list[str]:
        users = d["users"]
        if not isinstance(users, list) or not 1 <= len(users) <= s.issuance_users_max:
            raise AdminError("bad_field", f"users must be a list of 1 to {s.issuance_users_max} ids")
        return sorted({v.user_id(u, "users item") for u in users})

    async def credit(ent: str, iid: str, asset: str, cards_of: dict[str, int], fp: str,
                     kind: str) -> dict[str, Any]:
        """Fix the issuance's plan once (a replay answers the first plan), then give each
        planned user their cards (bounded concurrency): taken from the note-card stock, then
        minted to them; a credit refused gives its cards back to the stock. `complete` once
        every one is credited."""
        ik = [keys.issuance(ent, iid), keys.issuance_plan(ent, iid)]
        claim = await p.scripts["ent_issuance"](
            keys=ik, args=["plan", asset, kind, fp, p.clock.now_ms(),
                           *(x for u, n in sorted(cards_of.items()) for x in (u, n))])
        st = status(claim)
        if st is Status.CONFLICT:
            raise AdminError("issuance_id_conflict")
        flat = claim[1]
        plan = {str(u): int(n) for u, n in zip(flat[0::2], flat[1::2], strict=True)}
        done = set(await p.redis.smembers(keys.issuance_recipients(ent, iid)))
        registered = await enough_stock(asset, {u: n for u, n in plan.items() if u not in done},
                                        "the issuance's plan is kept: refill the stock, then "
                                        "send the same issuance again")
        unknown: list[str] = []
        refused: list[str] = []
        short: list[str] = []
        credited = 0
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(user: str, cards: int) -> None:
            nonlocal credited
            async with sem:
                take_id = f"ent:{ent}:{iid}:{user}"
                if user not in done and user not in registered:  # nothing to take for yet
                    unknown.append(user)
                    return
                if user not in done:  # (credited before: its cards left the stock then)
                    try:
                        await take(p.scripts, take_id, asset, cards)
                    except Refused:  # taken meanwhile (another issuance; or one of this
                        short.append(user)  # plan's own, given back later: tried again below)
                        return
                got, detail = await grant(p.scripts, s, user, f"$ent:{ent}:{iid}", asset, cards,
                                          "mint", "enterprise", p.clock.now_ms())
                if got is Status.APPLIED or got is Status.EXISTS:
                    await p.redis.sadd(keys.issuance_recipients(ent, iid), user)
                    credited += 1
                    return
                await give_back(p.scripts, take_id, asset, cards)  # nobody holds them
                if got is Status.REJECTED and detail == "user_unknown":
                    unknown.append(user)
                else:
                    refused.append(user)  # past the bound (or a grant id used otherwise)

        await asyncio.gather(*(one(u, n) for u, n in plan.items()))
        # a take that met the stock held for a credit since refused (and given back) gets its
        # turn again, one at a time: only what another issuance took is short for good
        again, short[:] = list(short), []
        for user in again:
            await one(user, plan[user])
        complete = not unknown and not refused and not short
        if complete:
            await p.scripts["ent_issuance"](keys=ik, args=["complete"])
        return {"id": iid, "enterprise": ent, "asset": asset, "credited": credited,
                "unknown": sorted(unknown)[:LISTED_MAX], "refused": sorted(refused)[:LISTED_MAX],
                "short": sorted(short)[:LISTED_MAX], "complete": complete,
                "replayed": st is Status.EXISTS}

    async def enough_stock(asset: str, wanted: dict[str, int], then: str) -> set[str]:
        """Refuse at once (`stock_empty`, nothing issued) when the stock holds fewer cards
        than the registered users among `wanted` would take; those users."""
        users = list(wanted)
        pipe = p.redis.pipeline(transaction=False)
        for u in users:
            pipe.hexists(keys.user(u).profile, "registered_at_ms")
        pipe.hget(keys.NOTE_STOCK, asset)
        *known, stock = await pipe.execute()
        registered = {u for u, k in zip(users, known, strict=True) if k}
        need = sum(wanted[u] for u in registered)
        if need > int(stock or 0):
            raise AdminError("stock_empty", f"the note-card stock holds fewer than {need} "
                                            f"{asset}: nothing was issued; {then}")
        return registered

    async def eligible_or_recorded(ent: str, iid: str, service: str) -> None:
        """A recorded issuance completes whatever the figures now (it was eligible then)."""
        if not await p.redis.exists(keys.issuance(ent, iid)):
            await require(ent, service)

    async def brand(r: Request) -> Any:
        """Brand marketing: `cards` of a note card to each of `users`, once per issuance id."""
        ent = path_user(r)
        d = v.obj(await read_json(r), {"id", "asset", "cards", "users"},
                  frozenset({"id", "asset", "cards", "users"}))
        iid, users = v.user_id(d["id"], "id"), users_of(d)
        asset = note_asset(d["asset"])
        cards = v.integer(d["cards"], "cards", 1, s.count_max)
        await eligible_or_recorded(ent, iid, "brand_marketing")
        out = await credit(ent, iid, asset, {u: cards for u in users},
                           _fingerprint(users, cards), "brand")
        return {**out, "cards": cards}

    async def tiered(r: Request) -> Any:
        """User operations: each user gets the cards of the highest tier their fan-club level
        with this enterprise (a creator) reaches; below every tier, nothing."""
        ent = path_user(r)
        d = v.obj(await read_json(r), {"id", "asset", "tiers", "users"},
                  frozenset({"id", "asset", "tiers", "users"}))
        iid, users = v.user_id(d["id"], "id"), users_of(d)
        asset = note_asset(d["asset"])
        raw = d["tiers"]
        if not isinstance(raw, dict) or not 1 <= len(raw) <= TIERS_MAX or not all(
                isinstance(k, str) and k in LEVELS for k in raw):
            raise AdminError("bad_field", f"tiers maps 1 to 16 fan-club levels (1-{LEVEL_MAX}) "
                                          "to cards")
        tiers = sorted((int(k), v.integer(n, "tier cards", 1, s.count_max)) for k, n in raw.items())
        await eligible_or_recorded(ent, iid, "user_operations")
        pipe = p.redis.pipeline(transaction=False)
        for u in users:
            pipe.hget(keys.user(u).like_levels, ent)
            pipe.hexists(keys.user(u).profile, "registered_at_ms")
        got = await pipe.execute()
        levels, registered = [int(x or 0) for x in got[::2]], got[1::2]
        cards_of = {u: max((n for lv, n in tiers if lv <= level), default=0)
                    for u, level in zip(users, levels, strict=True)}
        # (a replay credits the first call's plan: levels reached since change nothing)
        out = await credit(ent, iid, asset, cards_of, _fingerprint(users, tiers), "tiers")
        unknown = {u for u, known in zip(users, registered, strict=True) if not known}
        return {**out, "unknown": sorted({*out["unknown"], *unknown})[:LISTED_MAX],
                "below_tiers": sum(1 for u, n in cards_of.items() if n == 0 and u not in unknown)}

    async def view(r: Request) -> Any:
        """An issuance and who it reached: the recipients' profile breakdown."""
        ent, iid = path_user(r), v.user_id(r.path_params["issuance"], "issuance")
        rec = await p.redis.hgetall(keys.issuance(ent, iid))
        if not rec:
            raise AdminError("not_found", "no such issuance of this enterprise")
        recipients = sorted(await p.redis.smembers(keys.issuance_recipients(ent, iid)))
        pipe = p.redis.pipeline(transaction=False)
        for u in recipients:
            pipe.hmget(keys.user(u).profile, "vip", "real_name", "region", "gender")
        rows = await pipe.execute()
        return {"id": iid, "enterprise": ent, "kind": rec["kind"], "asset": rec["asset"],
                "users": int(rec["users"]), "planned": int(rec["planned"]),
                "credited": len(recipients), "complete": rec.get("complete") == "1",
                "at_ms": int(rec["at_ms"]),
                "breakdown": {"vip": sum(row[0] == "1" for row in rows),
                              "real_name_verified": sum(row[1] == "1" for row in rows),
                              "regions": dict(Counter(row[2] for row in rows if row[2])),
                              "genders": dict(Counter(row[3] for row in rows if row[3]))}}

    async def order(r: Request) -> Any:
        """E-commerce: an order paid in the shop window, counted once in the ROI; at or
        above GIFTWIRE_ORDER_GIFT_MIN_FEN its buyer gets GIFTWIRE_ORDER_GIFT."""
        ent = path_user(r)
        d = v.obj(await read_json(r), {"order", "buyer", "fen"},
                  frozenset({"order", "buyer", "fen"}))
        oid, buyer = v.user_id(d["order"], "order"), v.user_id(d["buyer"], "buyer")
        fen = v.integer(d["fen"], "fen", 1, s.amount_max)
        if not await p.redis.hexists(keys.user(ent).enterprise_orders, oid):
            await require(ent, "ecommerce")  # a counted order completes whatever the figures now
        await require_users(p.redis, buyer=buyer)
        asset, _, n = s.order_gift.rpartition(":")
        cards = int(n) if fen >= s.order_gift_min_fen else 0
        ek = keys.user(ent)
        ok = [ek.enterprise, ek.enterprise_orders]
        claim = await p.scripts["ent_order"](keys=ok, args=["count", oid, buyer, fen, asset, cards])
        st = status(claim)
        if st is Status.CONFLICT:
            raise AdminError("order_id_conflict")
        asset, cards = str(claim[1]), int(claim[2])  # the gift as the first report fixed it
        if cards and claim[3] != "1":  # (a gift granted before takes nothing again)
            take_id = f"eorder:{ent}:{oid}"
            try:
                await take(p.scripts, take_id, asset, cards)
            except Refused:
                raise AdminError("stock_empty", f"the note-card stock holds fewer than {cards} "
                                                f"{asset}: the order is counted; refill the stock, "
                                                f"then report the same order again for its "
                                                f"gift") from None
            got, detail = await grant(p.scripts, s, buyer, f"$eorder:{ent}:{oid}", asset, cards,
                                      "mint", "enterprise", p.clock.now_ms())
            if got is Status.REJECTED:  # counted, its gift not yet: the same report grants it
                await give_back(p.scripts, take_id, asset, cards)
                raise AdminError("amount_too_large" if detail == "amount_too_large"
                                 else "user_unknown")
            await p.scripts["ent_order"](keys=ok, args=["granted", oid, buyer, fen, asset, cards])
        return {"order": oid, "enterprise": ent, "buyer": buyer, "fen": fen,
                "gift": {"asset": asset, "cards": cards} if cards else None,
                "replayed": st is Status.EXISTS}

    def note_asset(value: Any) -> str:
        if not isinstance(value, str) or value not in s.note_assets:
            raise AdminError("unknown_asset", f"an enterprise issues note cards: "
                                              f"{', '.join(s.note_assets)}")
        return value

    p.admin.add(("GET", "PUT"), "/enterprises/{user}", account)
    p.admin.add("POST", "/enterprises/{user}/issuances", brand)
    p.admin.add("POST", "/enterprises/{user}/tiered-issuances", tiered)
    p.admin.add("GET", "/enterprises/{user}/issuances/{issuance}", view)
    p.admin.add("POST", "/enterprises/{user}/orders", order)
