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

    async def refill(self, refill_id: str, asset: str, amount: int,
                     mode: str = "refill") -> tuple[int, bool]:
        """(the asset's stock now, replayed)."""
        reply = await self.scripts["note_stock"](
            keys=[keys.NOTE_STOCK, keys.NOTE_REFILLS],
            args=[refill_id, asset, amount, self.s.amount_max, mode])
        st = _checked(reply, "note_stock", Status.APPLIED, Status.EXISTS, Status.CONFLICT,
                      Status.REJECTED)
        if st is Status.CONFLICT:
            raise Refused("refill_id_conflict")
        if st is Status.REJECTED:
            raise Refused(str(reply[1]))
        return int(reply[1]), st is Status.EXISTS

    async def reward(self, reward_id: str, user: str, cards: int, now_ms: int) -> Reward:
        """A task reward: the draw on the stock's slot, then the credit on the user's. A
        retry after a crash between them credits the same draw; a draw made again after the
        first one lapsed (GIFTWIRE_NOTE_DRAW_TTL_S) goes back to the stock."""
        tid = f"$reward:{reward_id}"
        uk = keys.user(user)
        done = await self.redis.hget(uk.transfers, tid)
        if done is not None:  # credited before: no new draw at all
            rec = orjson.loads(done)
            if sum(rec["drawn"].values()) != cards:
                raise Refused("reward_id_conflict")
            return self._reward(rec, replayed=True)
        if not await self.redis.hexists(uk.profile, "registered_at_ms"):
            raise Refused("user_unknown")  # before the draw: the stock stays untouched
        assets = list(self.weights)
        reply = await self.scripts["note_draw"](
            keys=[keys.NOTE_STOCK, keys.note_draw(reward_id)],
            args=[user, cards, self.s.note_draw_ttl_s, len(assets), *assets,
                  *self.weights.values(), *(secrets.randbits(RANDOM_BITS) for _ in range(cards))])
        st = _checked(reply, "note_draw", Status.APPLIED, Status.EXISTS, Status.CONFLICT,
                      Status.REJECTED)
        if st is Status.CONFLICT:
            raise Refused("reward_id_conflict")
        if st is Status.REJECTED:
            raise Refused(str(reply[1]))
        drawn = self._counts(orjson.loads(reply[1])["drawn"])
        credit = await self.scripts["note_reward"](
            keys=uk.account, args=[tid, now_ms, self.s.amount_max, self.s.events_bound,
                                   *(x for a, n in drawn.items() for x in (a, n))])
        cst = _checked(credit, "note_reward", Status.APPLIED, Status.EXISTS, Status.REJECTED)
        if cst is Status.REJECTED:  # the draw stays this reward's: a retry credits it
            raise Refused(str(credit[1]))
        rec = orjson.loads(credit[1])
        if cst is Status.EXISTS and st is Status.APPLIED and rec["drawn"] != drawn:
            await self._give_back(drawn)  # a fresh draw for a reward credited long ago
        return self._reward(rec, replayed=cst is Status.EXISTS)

    def _counts(self, drawn: list[str]) -> dict[str, int]:
        return {a: drawn.count(a) for a in self.weights if a in drawn}

    @staticmethod
    def _reward(rec: dict[str, Any], replayed: bool) -> Reward:
        return Reward(rec["drawn"], rec["balances"], replayed)

    async def _give_back(self, drawn: dict[str, int]) -> None:
        # refill records are idempotency, not history: the id is this give-back's own
        for asset, n in drawn.items():
            await self.refill(f"$back:{secrets.token_hex(8)}", asset, n, "return")

    async def redeem(self, redemption_id: str, user: str, sets: int, now_ms: int) -> Redemption:
        """`sets` complete sets burned and their reward granted, one call on the user's slot."""
        reply = await self.scripts["note_redeem"](
            keys=keys.user(user).account,
            args=[f"$set:{redemption_id}", sets, self.reward_asset, self.reward_per_set, now_ms,
                  self.s.amount_max, self.s.events_bound, *self.set_assets])
        st = _checked(reply, "note_redeem", Status.APPLIED, Status.EXISTS, Status.CONFLICT,
                      Status.REJECTED)
        if st is Status.CONFLICT:
            raise Refused("redemption_id_conflict")
        if st is Status.REJECTED:
            raise Refused(str(reply[1]))
        rec = orjson.loads(reply[1])
        return Redemption(int(rec["sets"]), (rec["reward"]["asset"], int(rec["reward"]["amount"])),
                          {a: int(n) for a, n in rec["balances"].items()}, st is Status.EXISTS)
