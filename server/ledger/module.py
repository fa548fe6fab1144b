"""The ledger: balances, system accounts, grants and revocations, the audit. Its Lua
primitives (`lua/_ledger.lua`) are in every script's prelude."""

from __future__ import annotations

from server.ledger.admin import LedgerAdmin
from server.parts import Parts


def install(p: Parts) -> None:
    p.scripts.load("server.ledger")
    a = LedgerAdmin(p)
    p.admin.add(("GET", "PUT"), "/users/{user}", a.user_route)
    p.admin.add("GET", "/users/{user}/balances", a.balances_route)
    p.admin.add("GET", "/users/{user}/ledger", a.ledger_route)
    p.admin.add("POST", "/grants", a.grant_route)
    p.admin.add("POST", "/revocations", a.revoke_route)
    p.admin.add_bulk("users", a.bulk_user)
    p.admin.add_bulk("grants", a.bulk_grant)
