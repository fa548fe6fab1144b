"""The note economy's operations, each a sequence of single-owner Lua calls: refills and
draws on the stock's slot (`{notes}`), credits and redemptions on the user's slot. Used
by the admin routes and the gateway's requests alike."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from server.config import Settings, note_weights, set_assets, set_reward
from server.store import keys
from server.store.outcomes import Status, UnknownStatus, status
from server.store.scripts import Scripts

RANDOM_BITS = 52  # uniform in [0, 2^52): exact in Lua's doubles, the modulo bias < 2^-29
NONCE_BYTES = 8  # tells one draw of a reward from another
DRAW_KEYS = [keys.NOTE_STOCK, keys.NOTE_PENDING, keys.NOTE_PENDING_AT]


class Refused(Exception):
    """A rule or an id refused the operation; `code` names which (nothing changed)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def odds(weights: dict[str, int], stock: dict[str, int] | None = None) -> dict[str, float]:
    """Each asset's chance for one card: its weight over the total, among the kinds in
    `stock` (all kinds when None). Pure: what `GET /admin/v1/notes` and `notes.odds` publish."""
    live = {a: w for a, w in weights.items() if stock is None or stock.get(a, 0) > 0}
    total = sum(live.values())
    return {a: round(live.get(a, 0) / total, 6) if total else 0.0 for a in weights}


async def take(scripts: Scripts, take_id: str, asset: str, cards: int) -> int:
    """`cards` of `asset` leave the stock for one recipient of an issuance (another module's:
    an enterprise's batch, an order's gift), once per id; the stock left. Refused
    `stock_empty` when it holds fewer: nothing is taken."""
    reply = await scripts["note_take"](keys=[keys.NOTE_STOCK, keys.NOTE_TAKEN],
                                       args=["take", take_id, asset, cards])
    _outcome(reply, "note_take", "issuance_id_conflict")
    return int(reply[1])


async def give_back(scripts: Scripts, take_id: str, asset: str, cards: int) -> None:
    """The cards of a take whose credit was refused go back to the stock (once)."""
    reply = await scripts["note_take"](keys=[keys.NOTE_STOCK, keys.NOTE_TAKEN],
                                       args=["return", take_id, asset, cards])
    _checked(reply, "note_take", Status.APPLIED, Status.EXISTS, Status.NOT_FOUND)


@dataclass(frozen=True)
class Reward:
    drawn: dict[str, int]  # asset → cards, in the order of GIFTWIRE_NOTE_KINDS
    balances: dict[str, int]  # the user's balances of those assets after the credit
    replayed: bool


@dataclass(frozen=True)
class Redemption:
    sets: int
    reward: tuple[str, int]  # asset, amount (all sets)
    balances: dict[str, int]  # the set's assets and the reward's after it
    replayed: bool


def _checked(reply: list[Any], name: str, *allowed: Status) -> Status:
    st = status(reply)
    if st not in allowed:
        raise UnknownStatus(f"{name} answered {reply!r}")
    return st


def _outcome(reply: list[Any], name: str, conflict: str) -> Status:
    """APPLIED or EXISTS; a conflict raises Refused(`conflict`), a refusal its own code."""
    st = _checked(reply, name, Status.APPLIED, Status.EXISTS, Status.CONFLICT, Status.REJECTED)
    if st is Status.CONFLICT:
        raise Refused(conflict)
    if st is Status.REJECTED:
        raise Refused(str(reply[1]))
    return st


class Economy:
    def __init__(self, scripts: Scripts, s: Settings, redis: Any) -> None:
        self.scripts, self.s, self.redis = scripts, s, redis
        self.weights = note_weights(s)
        self.set_assets = set_assets(s)
        self.reward_asset, self.reward_per_set = set_reward(s)

    async def stock(self) -> dict[str, tuple[int, int]]:
        """Each note asset's (cards left, cards drawn so far)."""
        raw = await self.redis.hgetall(keys.NOTE_STOCK)
        return {a: (int(raw.get(a, 0)), int(raw.get(f"issued:{a}", 0))) for a in self.weights}

    async def kinds(self) -> list[dict[str, Any]]:
        """Every note card as published: weight, odds, odds with the kinds out of stock left
        out, cards left and drawn (the admin view; `notes.get` shows part of it)."""
        stock = await self.stock()
        now = odds(self.weights, {a: left for a, (left, _) in stock.items()})
        return [{"asset": a, "weight": self.weights[a], "odds": chance, "odds_now": now[a],
                 "stock": stock[a][0], "drawn": stock[a][1]}
                for a, chance in odds(self.weights).items()]

    async def refill(self, refill_id: str, asset: str, amount: int) -> tuple[int, bool]:
        """(the asset's stock now, replayed)."""
        reply = await self.scripts["note_stock"](
            keys=[keys.NOTE_STOCK, keys.NOTE_REFILLS],
            args=[refill_id, asset, amount, self.s.amount_max])
        st = _outcome(reply, "note_stock", "refill_id_conflict")
        return int(reply[1]), st is Status.EXISTS

    async def reward(self, reward_id: str, user: str, cards: int, now_ms: int) -> Reward:
        """A task reward, idempotent by (user, id): the draw on the stock's slot, the credit
        on the user's, then the draw settled on the stock's slot. A retry after a crash
        between them credits the pending draw; a draw that lost a race to another one
        already credited goes back to the stock (and the sweep returns forgotten ones)."""
        tid = f"$reward:{reward_id}"
        uk = keys.user(user)
        pipe = self.redis.pipeline(transaction=False)  # one round trip: both on the user's slot
        pipe.hget(uk.transfers, tid)
        pipe.hexists(uk.profile, "registered_at_ms")
        done, registered = await pipe.execute()
        if done is not None:  # credited before: no new draw at all
            return self._replay(orjson.loads(done), cards)
        if not registered:
            raise Refused("user_unknown")  # before the draw: the stock stays untouched
        assets = list(self.weights)
        reply = await self.scripts["note_draw"](
            keys=DRAW_KEYS,
            args=[user, reward_id, cards, secrets.token_hex(NONCE_BYTES), now_ms, len(assets),
                  *assets, *self.weights.values(),
                  *(secrets.randbits(RANDOM_BITS) for _ in range(cards))])
        _outcome(reply, "note_draw", "reward_id_conflict")
        d = orjson.loads(reply[1])
        drawn = self._counts(d["drawn"])
        credit = await self.scripts["note_reward"](
            keys=uk.account, args=[tid, d["nonce"], now_ms, self.s.amount_max, self.s.events_bound,
                                   *(x for a, n in drawn.items() for x in (a, n))])
        cst = _checked(credit, "note_reward", Status.APPLIED, Status.EXISTS, Status.REJECTED)
        if cst is Status.REJECTED:  # the draw stays pending: the same reward again credits it
            raise Refused(str(credit[1]))
        rec = orjson.loads(credit[1])
        # credited with this draw (now or by a racing retry): settled; with another: given back
        await self.settle(user, reward_id, d["nonce"], "done" if rec["nonce"] == d["nonce"] else "return")
        if cst is Status.EXISTS:
            return self._replay(rec, cards)
        return Reward(rec["drawn"], rec["balances"], replayed=False)

    async def settle(self, user: str, reward_id: str, nonce: str, mode: str) -> None:
        await self.scripts["note_settle"](keys=DRAW_KEYS, args=[user, reward_id, nonce, mode])

    async def sweep(self, now_ms: int) -> int:
        """Settle draws pending longer than GIFTWIRE_NOTE_DRAW_TTL_S (their reward was never
        retried after a crash or a refusal): credited ones are done, the others go back to
        the stock. At most `sweep_batch_max` a run; returns how many."""
        due = await self.redis.zrangebyscore(keys.NOTE_PENDING_AT, "-inf",
                                             now_ms - self.s.note_draw_ttl_s * 1000,
                                             start=0, num=self.s.sweep_batch_max)
        for field in due:
            raw = await self.redis.hget(keys.NOTE_PENDING, field)
            if raw is None:  # settled meanwhile
                await self.redis.zrem(keys.NOTE_PENDING_AT, field)
                continue
            d = orjson.loads(raw)
            rec = await self.redis.hget(keys.user(d["user"]).transfers, f"$reward:{d['reward']}")
            credited = rec is not None and orjson.loads(rec).get("nonce") == d["nonce"]
            await self.settle(d["user"], d["reward"], d["nonce"], "done" if credited else "return")
        return len(due)

    def _counts(self, drawn: list[str]) -> dict[str, int]:
        """Asset → cards, in the order of the kinds (a kind no longer configured last)."""
        order = [*self.weights, *sorted(set(drawn) - set(self.weights))]
        return {a: drawn.count(a) for a in order if a in drawn}

    @staticmethod
    def _replay(rec: dict[str, Any], cards: int) -> Reward:
        if sum(rec["drawn"].values()) != cards:
            raise Refused("reward_id_conflict")
        return Reward(rec["drawn"], rec["balances"], replayed=True)

    async def redeem(self, redemption_id: str, user: str, sets: int, now_ms: int) -> Redemption:
        """`sets` complete sets burned and their reward granted, one call on the user's slot."""
        reply = await self.scripts["note_redeem"](
            keys=keys.user(user).account,
            args=[f"$set:{redemption_id}", sets, self.reward_asset, self.reward_per_set, now_ms,
                  self.s.amount_max, self.s.events_bound, *self.set_assets])
        st = _outcome(reply, "note_redeem", "redemption_id_conflict")
        rec = orjson.loads(reply[1])
        return Redemption(int(rec["sets"]), (rec["reward"]["asset"], int(rec["reward"]["amount"])),
                          {a: int(n) for a, n in rec["balances"].items()}, st is Status.EXISTS)
