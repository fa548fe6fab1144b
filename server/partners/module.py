"""Partner apps (SPEC section 1, table 2, seed 002's 跨平台协同赠送): a partner's users
connect with tokens the partner signs with its own secret, their gifts carry its channel,
and the channel's bonuses apply once a gift is the recipient's. Where things are:

    rules.py               partners, bonuses and secrets from configuration (pure)
    bonus.py               the bonus steps after a gift (points, the joint campaign)
    admin.py               the partners, a campaign's members
    lua/partner_join.lua   where a gift's two sides join the channel's joint campaign

The channel itself travels with the gift: the gateway's auth (server/gateway/auth.py)
names it, gifting's steps record and show it.
"""

from __future__ import annotations

from server.gifting.flow import KIND as GIFT
from server.gifting.offers import ACCEPT
from server.partners import admin, bonus
from server.partners.rules import Partner, parse, secrets_of
from server.parts import Parts


def partners_of(p: Parts) -> dict[str, Partner]:
    parsed = parse(p.settings.partners)
    assert not isinstance(parsed, str), parsed  # refused at start-up (server.config.problems)
    return parsed


def install(p: Parts) -> None:
    p.scripts.load("server.partners")
    partners = partners_of(p)
    for kind in (GIFT, ACCEPT):  # a gift delivered now, or an offer accepted later
        # only the bonuses some partner has: a gift flow without partners keeps its rounds
        if any(x.points_per_card for x in partners.values()):
            p.flows.add_step(kind, bonus.points_step(p.settings, partners, p.redis,
                                                     p.clock.now_ms))
        if any(x.campaign for x in partners.values()):
            p.flows.add_step(kind, bonus.campaign_step(partners, p.clock.now_ms))
    admin.install(p, partners)
    # their users' tokens: signed with each partner's secret, which names the channel
    p.signers.append(lambda token_secret: secrets_of(partners, p.settings.partner_secrets,
                                                     token_secret))
