"""Enterprise accounts (SPEC section 1, table 6, seed 002's 企业号专属赠送通道): brand
marketing (batch issuance to a list of users, with who it reached), e-commerce (an order
paid in a shop window above a threshold gifts its buyer; the ROI), user operations (cards
by fan-club level). Where things are:

    admin.py               the routes: figures and eligibility, issuances, orders
    lua/ent_issuance.lua   where an issuance is recorded once (its id, what it issues)
    lua/ent_order.lua      where an order counts once in the enterprise's ROI

Each credit is the ledger's grant (server/ledger/lua/grant.lua, reason `enterprise`) on
the recipient's slot, idempotent per issuance or order.
"""

from __future__ import annotations

from server.enterprise import admin
from server.parts import Parts


def install(p: Parts) -> None:
    p.scripts.load("server.enterprise")
    admin.install(p)
