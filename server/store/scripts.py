"""Loads the Lua scripts: the files are the source of truth.

Each script is sent with the shared prelude (`gifting/lua/_lib.lua`) and a
`REJECT` table generated from `protocol.errors`, so rejection messages are
defined once. redis-py's Script reloads a script on NOSCRIPT (e.g. after a
Redis restart), so callers never see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from protocol.errors import REJECTIONS


def _lua_string(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _reject_table() -> str:
    rows = ", ".join(
        f"{c.code} = {{{_lua_string(c.message)}, {'true' if c.temporary else 'false'}}}"
        for c in REJECTIONS.values()
    )
    return f"local REJECT = {{{rows}}}\n"


def _read(package: str, name: str) -> str:
    return resources.files(package).joinpath("lua").joinpath(name).read_text()


def source(package: str, name: str) -> str:
    """The full text sent to Redis for one script."""
    return _reject_table() + _read("server.gifting", "_lib.lua") + _read(package, name)


@dataclass
class Scripts:
    send_debit: Any
    recv_credit: Any
    send_finalize: Any
    offer_resolve: Any
    grant: Any
    dead_letter: Any


def register(redis: Any) -> Scripts:
    """Register every script on a client (`redis.asyncio.Redis` or cluster client)."""

    def reg(package: str, name: str) -> Any:
        return redis.register_script(source(package, name))

    return Scripts(
        send_debit=reg("server.gifting", "send_debit.lua"),
        recv_credit=reg("server.gifting", "recv_credit.lua"),
        send_finalize=reg("server.gifting", "send_finalize.lua"),
        offer_resolve=reg("server.gifting", "offer_resolve.lua"),
        grant=reg("server.ledger", "grant.lua"),
        dead_letter=redis.register_script(_read("server.settlement", "dead_letter.lua")),
    )
