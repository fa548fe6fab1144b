"""Partner apps (SPEC section 1, table 2): their channels, bonuses and signing secrets.
Pure: parsed from configuration, checked at start-up.

`GIFTWIRE_PARTNERS` items are `<channel>` or `<channel>:<bonus>[+<bonus>]`, a bonus being
`points=<N>` (the recipient earns N popularity points per card of a gift delivered from
the channel: 抖音火山版's 获赠方双倍积分 is `points=2`) or `campaign` (both sides join the
channel's joint campaign: 多闪's 触发联合活动资格).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from server.named import NAME, parse_named

CHANNEL = NAME
PARTNERS_MAX = 32  # a token is tried against each partner's secret: a handful, bounded
POINTS_PER_CARD_MAX = 10**6


@dataclass(frozen=True)
class Partner:
    channel: str
    points_per_card: int = 0  # 0: no points bonus
    campaign: bool = False


def _bonus(partner: Partner, bonus: str) -> Partner | str:
    """The partner with one more bonus, or what is wrong with it."""
    name, sep, value = bonus.partition("=")
    if name == "campaign" and not sep:
        return Partner(partner.channel, partner.points_per_card, True)
    if name == "points" and sep and value.isascii() and value.isdigit() \
            and 1 <= int(value) <= POINTS_PER_CARD_MAX:
        return Partner(partner.channel, int(value), partner.campaign)
    return f"bonus {bonus!r} is neither `points=<1..{POINTS_PER_CARD_MAX}>` nor `campaign`"


def parse(items: tuple[str, ...]) -> dict[str, Partner] | str:
    """Channel → partner, or what is wrong with the items."""
    return parse_named(items, "channel", PARTNERS_MAX, Partner, _bonus, option_noun="bonus")


def derived_secret(token_secret: str, channel: str) -> str:
    """A partner's signing secret when none is configured: derived from the platform's, so
    every process agrees without storing it (the platform hands it to the partner; a partner
    cannot derive the platform's secret or another partner's)."""
    mac = hmac.new(token_secret.encode(), f"giftwire-partner:{channel}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def secrets_of(partners: dict[str, Partner], configured: tuple[str, ...],
               token_secret: str) -> dict[str, str]:
    """Channel → the secret its tokens are signed with (`GIFTWIRE_PARTNER_SECRETS` items
    `<channel>=<secret>` win over the derived one)."""
    given = dict(item.split("=", 1) for item in configured)
    out = {c: given.get(c) or derived_secret(token_secret, c) for c in partners}
    # (a configured one equal to a generated token secret is the one start-up cannot see)
    if len(set(out.values()) | {token_secret}) != len(out) + 1:
        raise ValueError("GIFTWIRE_PARTNER_SECRETS: a partner's secret is another's or the "
                         "platform's token secret")
    return out


def secret_problems(partners: dict[str, Partner], configured: tuple[str, ...],
                    token_secret: str = "") -> list[str]:
    """What is wrong with `GIFTWIRE_PARTNER_SECRETS` (never echoing a secret)."""
    out, seen, secrets = [], set(), {token_secret} - {""}
    for i, item in enumerate(configured, 1):
        channel, sep, secret = item.partition("=")
        if not sep or channel not in partners or len(secret) < 16:
            out.append(f"item {i} must be `<channel>=<secret>` for a channel of "
                       "GIFTWIRE_PARTNERS, the secret at least 16 characters")
        elif channel in seen:
            out.append(f"item {i} names {channel!r} a second time")
        elif secret in secrets:  # one secret for two signers: one could sign as the other
            out.append(f"item {i}: the secret of {channel} is another partner's or the "
                       "platform's token secret")
        seen.add(channel)
        secrets.add(secret)
    return out
