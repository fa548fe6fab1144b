"""Popularity's admin routes: what the platform reports (accounts' category and
followers, on-topic posts, purchases, violations, fraud findings, a boost's figures) and
what the recommender reads (a content's boost weight now)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from server import days
from server.admin import validate as v
from server.admin.http import read_json
from server.admin.validate import AdminError
from server.ledger.admin import require_users
from server.parts import Parts
from server.popularity import rules
from server.popularity.flows import note_lots, user_keys
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status

FEN_MAX = 10**12


def install(p: Parts) -> None:
    s = p.settings

    def today() -> Any:
        return days.local_day(p.clock.now_ms(), days.parse_timezone(s.timezone))

    async def account(r: Request) -> Any:
        """The platform's figures about an account: its content category (垂类) and followers."""
        uid = v.user_id(r.path_params["user"])
        uk = keys.user(uid)
        if r.method == "PUT":
            d = v.obj(await read_json(r), {"category", "followers"})
        if not await p.redis.hexists(uk.profile, "registered_at_ms"):
            raise AdminError("user_unknown")
        if r.method == "PUT":
            fields: dict[str, Any] = {}
            if "category" in d:
                fields["category"] = v.user_id(d["category"], "category")
            if "followers" in d:
                fields["followers"] = v.integer(d["followers"], "followers", 0, 10**10)
            if fields:
                await p.redis.hset(uk.popularity, mapping=fields)
        reply = await p.scripts["pop_read"](keys=user_keys(uid), args=[p.clock.now_ms(), s.events_bound])
        state = await p.redis.hgetall(uk.popularity)
        uses = await p.redis.hgetall(uk.card_uses)
        view = orjson.loads(reply[1])
        view.pop("type", None)
        return {"user": uid, **view, "category": state.get("category"),
                "followers": int(state.get("followers", 0)),
                "uses_today": int(state.get(f"uses:{days.day_key(today())}", 0)),
                "uses": {u: {k: rec[k] for k in ("st", "card", "content", "price", "starts", "ends")}
                         for u, rec in ((u, orjson.loads(x)) for u, x in sorted(uses.items())[:200])}}

    async def post(r: Request) -> Any:
        """An on-topic post of a creator (idempotent by post id): the 6th of a weekly cycle
        grants the task's points once."""
        d = v.obj(await read_json(r), {"id", "user"}, frozenset({"id", "user"}))
        pid, uid, now = v.user_id(d["id"], "id"), v.user_id(d["user"]), p.clock.now_ms()
        cycle = rules.cycle_key(today())
        reply = await p.scripts["pop_post"](
            keys=user_keys(uid),
            args=[pid, cycle, s.task_posts, s.task_points, now,
                  s.points_lot_ttl_s * 1000, s.events_bound])
        if status(reply) is Status.REJECTED:
            raise AdminError("user_unknown")
        if int(reply[2]):  # the task's lot
            await note_lots(p.redis, uid, now)
        return {"id": pid, "user": uid, "cycle": str(reply[3]) or cycle,  # a replay: as first
                "posts": int(reply[1]), "granted": int(reply[2])}

    async def purchase(r: Request) -> Any:
        """A payment (idempotent by order id, platform-wide): points = fen × 8 // 100, whole
        points. Two single-owner steps: the order's slot records (user, fen) once (another
        user or amount: 409), then the user's slot grants the lot once, so a retry after a
        crash between them completes the grant."""
        d = v.obj(await read_json(r), {"order", "user", "fen"}, frozenset({"order", "user", "fen"}))
        order, uid = v.user_id(d["order"], "order"), v.user_id(d["user"])
        fen = v.integer(d["fen"], "fen", 1, FEN_MAX)
        points = fen * s.points_per_yuan // 100
        if points < 1:
            raise AdminError("bad_field", "the payment buys less than one point")
        if not await p.redis.hexists(keys.user(uid).profile, "registered_at_ms"):
            raise AdminError("user_unknown")  # before the order is taken: it stays free
        claim = await p.scripts["order_claim"](keys=[keys.purchase_order(order)],
                                               args=[uid, fen, points, ""])
        st = status(claim)
        if st is Status.CONFLICT:
            raise AdminError("order_id_conflict")
        if st is not Status.APPLIED and st is not Status.EXISTS:
            raise UnknownStatus(f"order_claim answered {claim!r}")
        points = int(claim[1])  # as first recorded: a retry grants what the order bought then
        reply = await p.scripts["pop_grant"](
            keys=user_keys(uid), args=[f"$pp:{order}", points, "purchase", p.clock.now_ms(),
                                       s.points_lot_ttl_s * 1000, s.events_bound, "",
                                       s.amount_max])
        st = status(reply)
        if st is Status.CONFLICT:  # granted before the order had its own record: the claim
            # this call made is taken back, so the right report can still replay
            await p.scripts["order_claim"](keys=[keys.purchase_order(order)],
                                           args=[uid, fen, points, "release"])
            raise AdminError("order_id_conflict")
        if st is Status.REJECTED:
            if reply[1] == "amount_too_large":  # nothing granted; the order stays this
                # user's payment (releasing it could race a retry that was granted), and the
                # same report again is granted once the points leave room for it
                raise AdminError("amount_too_large", f"the user's points would pass "
                                                     f"GIFTWIRE_AMOUNT_MAX ({s.amount_max})")
            raise AdminError("user_unknown")
        await note_lots(p.redis, uid, p.clock.now_ms())
        return {"order": order, "user": uid, "points": points, "applied": st is Status.APPLIED}

    async def violation(r: Request) -> Any:
        d = v.obj(await read_json(r), {"id", "user"}, frozenset({"id", "user"}))
        vid, uid = v.user_id(d["id"], "id"), v.user_id(d["user"])
        reply = await p.scripts["pop_violation"](keys=user_keys(uid),
                                                 args=[vid, p.clock.now_ms(), s.events_bound])
        if status(reply) is Status.REJECTED:
            raise AdminError("user_unknown")
        return {"id": vid, "user": uid, "burned": int(reply[1])}

    async def freeze(r: Request) -> Any:
        d = v.obj(await read_json(r), {"user", "frozen"}, frozenset({"user", "frozen"}))
        uid, frozen = v.user_id(d["user"]), v.boolean(d["frozen"], "frozen")
        reply = await p.scripts["pop_freeze"](
            keys=user_keys(uid), args=["freeze" if frozen else "lift", p.clock.now_ms(), s.events_bound,
                                       s.points_lot_ttl_s * 1000])
        if status(reply) is Status.REJECTED:
            raise AdminError("user_unknown")
        if not frozen:  # the lots expire again (the sweep leaves frozen users alone)
            await note_lots(p.redis, uid, p.clock.now_ms())
        return {"user": uid, "frozen": frozen}

    async def figures(r: Request) -> Any:
        """A boost's figures (rates in basis points): the owner sees them, with warnings."""
        d = v.obj(await read_json(r), {"user", "use", "completion_bp", "interaction_bp",
                                       "followers_per_hour", "bounce_bp"},
                  frozenset({"user", "use", "completion_bp", "interaction_bp",
                             "followers_per_hour", "bounce_bp"}))
        uid, use = v.user_id(d["user"]), v.user_id(d["use"], "use")
        rates = [v.integer(d[f], f, 0, 10_000) for f in ("completion_bp", "interaction_bp")]
        per_hour = v.integer(d["followers_per_hour"], "followers_per_hour", 0, 10**9)
        bounce = v.integer(d["bounce_bp"], "bounce_bp", 0, 10_000)
        await require_users(p.redis, user=uid)  # an unknown user, not an unknown use
        reply = await p.scripts["pop_figures"](
            keys=user_keys(uid), args=[use, *rates, per_hour, bounce, s.warn_completion_bp,
                                       s.warn_interaction_bp, s.warn_bounce_bp, s.events_bound])
        if status(reply) is Status.REJECTED:
            raise AdminError("not_found", "no such card use of this user (or it never boosted: "
                                         "refused or cancelled)")
        return {"user": uid, "use": use, "warnings": orjson.loads(reply[1]) or []}

    async def boost(r: Request) -> Any:
        """What the recommender asks per candidate: the content's boost weight now."""
        cid = v.user_id(r.path_params["content"], "content")
        windows = await p.redis.hgetall(keys.content_boosts(cid))
        now = p.clock.now_ms()
        spans: dict[str, tuple[int, int]] = {}
        for m, w in windows.items():
            a, _, b = w.partition(":")
            spans[m] = (int(a), int(b))
        active = [{"use": m, "starts_at_ms": a, "ends_at_ms": b} for m, (a, b) in sorted(spans.items())
                  if a <= now < b]
        return {"content": cid, "weight": rules.weight(list(spans.values()), now, s),
                "active": active, "at_ms": now}

    p.admin.add(("GET", "PUT"), "/popularity/accounts/{user}", account)
    p.admin.add("POST", "/popularity/posts", post)
    p.admin.add("POST", "/popularity/purchases", purchase)
    p.admin.add("POST", "/popularity/violations", violation)
    p.admin.add("POST", "/popularity/freezes", freeze)
    p.admin.add("POST", "/popularity/figures", figures)
    p.admin.add("GET", "/content/{content}/boost", boost)
