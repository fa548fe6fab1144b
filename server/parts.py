"""The seams every subsystem plugs into: plain registries, built once per process and
filled by each module's `install(parts)` (the list is `server.modules.MODULES`).

    def install(p: Parts) -> None:
        p.scripts.load("server.gifting")                      # its lua/ folder
        p.requests.add("gift.send", handlers.send, replies)   # a client message
        p.flows.add(GiftFlow(...))                            # a settlement entry kind
        p.periodic.add("offer-timeouts", sweep.run, every_ms) # a scheduled job
        p.admin.add("PUT", "/follows", admin.follow)          # an admin route
        p.gateway.append(setup)                               # per-gateway state and ticker
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from server.clock import Clock
from server.config import Settings
from server.gateway.requests import Requests
from server.ledger.audit import EscrowHolder
from server.settlement.flows import Flows, Periodic
from server.settlement.replies import Replies
from server.store.scripts import Scripts

AdminHandler = Callable[[Request], Awaitable[Any]]  # returns JSON-able; raises AdminError
# called once per gateway process with the Gateway; may return a coroutine function the
# gateway runs as a task for its lifetime (a module's per-gateway state and ticker)
AuditCheck = Callable[[Any, Any], Awaitable[None]]  # (Scripts, AuditResult): records its problems
GatewaySetup = Callable[[Any], Callable[[], Coroutine[Any, Any, None]] | None]
BulkHandler = Callable[[Any], Awaitable[Any]]  # one item of `POST /bulk`
# a step on one user's own slot that brings their balances up to now (user, now ms): run
# before any view of a user's balances, so a view never shows what a module's rules already
# took away (popularity burns expired lots)
BalanceRefresh = Callable[[str, int], Awaitable[None]]


@dataclass(frozen=True)
class AdminRoute:
    methods: tuple[str, ...]
    path: str  # under /admin/v1
    handler: AdminHandler


@dataclass
class AdminRoutes:
    routes: list[AdminRoute] = field(default_factory=list)
    # `POST /bulk` list name → how to apply one item, applied in registration order
    bulk: dict[str, BulkHandler] = field(default_factory=dict)

    def add(self, methods: str | tuple[str, ...], path: str, handler: AdminHandler) -> None:
        ms = (methods,) if isinstance(methods, str) else methods
        if any(r.path == path and set(r.methods) & set(ms) for r in self.routes):
            raise ValueError(f"two admin handlers for {ms} {path}")
        self.routes.append(AdminRoute(ms, path, handler))

    def add_bulk(self, name: str, handler: BulkHandler) -> None:
        if name in self.bulk:
            raise ValueError(f"two bulk handlers for {name!r}")
        self.bulk[name] = handler


@dataclass
class Parts:
    settings: Settings
    redis: Any
    clock: Clock
    scripts: Scripts
    replies: Replies
    # pipelined hot rounds (the worker's batches, the gateway's XADDs), each bounded as a
    # whole: a client without redis-py's per-reply timeout (`store.pipeline.ROUND_S`)
    rounds: Any = None
    requests: Requests = field(default_factory=Requests)
    flows: Flows = field(default_factory=Flows)
    periodic: Periodic = field(default_factory=Periodic)
    admin: AdminRoutes = field(default_factory=AdminRoutes)
    gateway: list[GatewaySetup] = field(default_factory=list)
    # `giftwire audit`: the invariants a module adds to the ledger's, (name, check)
    audits: list[tuple[str, AuditCheck]] = field(default_factory=list)
    # escrow a module holds in flight besides gifts (red envelopes), for the ledger's audit
    escrow_holders: list[EscrowHolder] = field(default_factory=list)
    # assets whose balance a module backs with a structure of its own (popularity's lots):
    # the admin API's grants and revocations refuse them (`asset_not_grantable`)
    managed_assets: set[str] = field(default_factory=set)
    # run before a user's balances are shown (`balance.get`, the admin's user and balances)
    balance_refreshes: list[BalanceRefresh] = field(default_factory=list)
    # who else signs tokens: given the platform's token secret, channel → secret (partner
    # apps); a token one of them signed proves its user on that channel
    signers: list[Callable[[str], dict[str, str]]] = field(default_factory=list)

    async def aclose(self) -> None:
        """Close the Redis clients (both, when the rounds have their own)."""
        if self.rounds is not self.redis:
            await self.rounds.aclose()
        await self.redis.aclose()

    def token_secrets(self, token_secret: str) -> dict[str, str]:
        """Channel → the secret its tokens are signed with: "" the platform's, first."""
        out = {"": token_secret}
        for signer in self.signers:
            out.update(signer(token_secret))
        return out

    async def refresh_balances(self, user: str) -> None:
        """Every module's refresh of `user`'s balances, as of now (each one single-owner)."""
        now = self.clock.now_ms()
        for refresh in self.balance_refreshes:
            await refresh(user, now)


def build(settings: Settings, redis: Any, rounds: Any = None) -> Parts:
    """Every registry filled by every module, checked complete. `rounds`: the client for
    hot pipelined rounds (`redis` if not given)."""
    from server.modules import MODULES

    clock = Clock(redis, settings.test_clock)
    p = Parts(settings, redis, clock, Scripts(redis), Replies(redis, settings.redis_cluster),
              rounds=redis if rounds is None else rounds)
    for module in MODULES:
        module.install(p)
    p.requests.check_complete()
    return p
