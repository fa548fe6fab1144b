"""A gateway's side of the risk engine: a cached view of the decisions about its users
(read when they connect, updated the moment a decision changes through their own channel),
checked in memory before every gated request, and the action signals buffered and
written once per tick to the partitioned risk streams. A clean request costs nothing."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from server.lifetime import stop_if_cancelled
from server.metrics import REGISTRY, Counter
from server.risk import signals
from server.risk.rules import ACTIONS, REFUSES
from server.store import keys

if TYPE_CHECKING:
    from server.gateway.connection import Connection
    from server.gateway.endpoint import Gateway

log = logging.getLogger("giftwire.risk")
SIGNALS_PER_TICK_MAX = 50_000  # signals one tick carries; beyond, they are dropped (counted)
SIGNALS_DROPPED = REGISTRY.add(Counter("giftwire_risk_signals_dropped_total",
                                       "action signals not written (a tick's bound, or Redis down)"))
REFUSED = REGISTRY.add(Counter("giftwire_risk_refused_total",
                               "requests refused by a risk decision, by decision"))


@dataclass
class State:
    restricted_until: int = 0
    frozen_until: int = 0
    banned: bool = False

    def decision(self, now_ms: int) -> str | None:
        if self.banned:
            return "banned"
        if self.frozen_until > now_ms:
            return "frozen"
        if self.restricted_until > now_ms:
            return "restricted"
        return None


class RiskGate:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.s = gw.s
        self.view: dict[str, State] = {}  # only users under a decision are kept
        self.signals: list[dict[str, str]] = []
        gw.connect_checks.append(self.on_connect)
        gw.recover_hooks.append(self.refresh)
        gw.guards.append(self.guard)
        gw.hub.risk_sink = self.on_state

    async def on_connect(self, conn: Connection) -> str | None:
        """A blacklisted device may not connect; the user's decisions are cached."""
        pipe = self.gw.redis.pipeline(transaction=False)
        pipe.hmget(keys.user(conn.user).profile, "risk_restricted_until", "risk_frozen_until",
                   "risk_banned")
        if conn.device:
            pipe.exists(keys.device_ban(conn.device))
        got = await pipe.execute()
        if conn.device and got[1]:
            return "device_banned"
        restricted, frozen, banned = got[0]
        self.remember(conn.user, State(int(restricted or 0), int(frozen or 0), banned == "1"))
        self.signal(conn, "connect", "")
        return None

    async def refresh(self, user: str) -> None:
        """The user's decisions read again: a lift (or a decision) published while their
        channel's slot moved never reached this gateway, and a lift missed would keep
        refusing them here until they reconnect."""
        got = await self.gw.redis.hmget(keys.user(user).profile, "risk_restricted_until",
                                        "risk_frozen_until", "risk_banned")
        restricted, frozen, banned = got
        self.remember(user, State(int(restricted or 0), int(frozen or 0), banned == "1"))

    def remember(self, user: str, state: State) -> None:
        if state.banned or state.restricted_until or state.frozen_until:
            self.view[user] = state
        else:
            self.view.pop(user, None)

    def on_state(self, channel: str, state_json: str) -> None:
        if "{u:" not in channel:
            return
        s = orjson.loads(state_json)
        self.remember(keys.owner_of(channel),
                      State(int(s["restricted_until"]), int(s["frozen_until"]), bool(s["banned"])))

    def guard(self, conn: Connection, msg_type: str, data: dict[str, Any]) -> str | None:
        action = ACTIONS.get(msg_type)
        if action is None:
            return None
        state = self.view.get(conn.user)
        if state is not None:
            decision = state.decision(self.gw.clock.now_ms())
            if decision is None:
                del self.view[conn.user]  # it ran out: the view keeps decisions in force only
            elif action in REFUSES[decision]:
                REFUSED.inc(decision=decision)
                return f"risk_{decision}"
        self.signal(conn, action, str(data.get("to", "")) if action == "gift" else "")
        return None

    def signal(self, conn: Connection, kind: str, recipient: str) -> None:
        if len(self.signals) >= SIGNALS_PER_TICK_MAX:
            SIGNALS_DROPPED.inc()
            return
        self.signals.append({"kind": kind, "user": conn.user, "device": conn.device,
                             "ip": conn.ip, "to": recipient, "at_ms": str(self.gw.clock.now_ms())})

    async def run(self) -> None:
        """Each tick, the buffered signals go to their partitions in one pipelined call."""
        while True:
            await asyncio.sleep(self.s.risk_tick_ms / 1000)
            await self.flush()
            stop_if_cancelled()

    async def flush(self) -> None:
        if not self.signals:
            return
        batch, self.signals = self.signals, []
        parts: dict[int, list[dict[str, str]]] = {}
        for sig in batch:
            parts.setdefault(keys.partition_of(sig["user"], self.s.partitions), []).append(sig)
        pipe = self.gw.redis.pipeline(transaction=False)
        for partition, sigs in parts.items():
            for entry in signals.encode(sigs):
                pipe.xadd(keys.risk_stream(partition), entry,
                          maxlen=self.s.risk_stream_max, approximate=True)
        try:
            await pipe.execute()
        except RedisError:
            SIGNALS_DROPPED.inc(len(batch))
            log.warning("risk signals not written", exc_info=True)
