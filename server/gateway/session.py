"""The connection-level requests every deployment serves (`ping`, `auth` after the
handshake, `balance.get`), installed like any subsystem's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol.messages import encode
from server.gateway.connection import Connection
from server.parts import Parts
from server.store import keys

if TYPE_CHECKING:
    from server.gateway.endpoint import Gateway


async def ping(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    conn.push(encode("pong", id=d["id"]).decode())


async def auth(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    gw.error(conn, "already_authenticated", d["id"])


def balance(p: Parts) -> Any:
    """`balance.get`: the balances as of now (the modules' refreshes run first)."""

    async def handle(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
        await p.refresh_balances(conn.user)
        raw = await gw.redis.hgetall(keys.user(conn.user).balances)
        balances = {k: int(v) for k, v in raw.items() if int(v)}
        conn.push(encode("balance", id=d["id"], balances=balances).decode())

    return handle


def install(p: Parts) -> None:
    p.requests.add("ping", ping, ("pong",))
    p.requests.add("auth", auth, ("error",))
    p.requests.add("balance.get", balance(p), ("balance", "error"))
