"""Regions (SPEC section 1, table 5): the policies `GIFTWIRE_REGIONS` gives a region.
Pure: parsed from configuration, checked at start-up.

Items are `<region>:<policy>[+<policy>]`. `approval`: every gift to a user of the region
waits for a third party's approval (held as an offer only an approver resolves);
`approval=<sender gender>><recipient gender>` only such gifts (the seed's 中东地区: a man's
gift to a woman needs her guardian's confirmation); `gdpr`: the region's users' data
export and erasure (listed; the admin API serves every user).
"""

from __future__ import annotations

from dataclasses import dataclass

from server.named import NAME, parse_named

REGION = NAME  # as `PUT /admin/v1/users` takes a user's region
GENDERS = ("male", "female", "other")
REGIONS_MAX = 256
EVERY_GIFT = "*"  # the approval rule of a region whose every incoming gift needs approval


@dataclass(frozen=True)
class Region:
    region: str
    approval: str = ""  # "" none, EVERY_GIFT, or `<sender gender>><recipient gender>`
    gdpr: bool = False


def _policy(r: Region, policy: str) -> Region | str:
    name, sep, value = policy.partition("=")
    if name == "gdpr" and not sep:
        return Region(r.region, r.approval, True)
    if name == "approval" and not sep:
        return Region(r.region, EVERY_GIFT, r.gdpr)
    sender, arrow, recipient = value.partition(">")
    if name == "approval" and arrow and sender in GENDERS and recipient in GENDERS:
        return Region(r.region, value, r.gdpr)
    return (f"policy {policy!r} is not `approval`, `approval=<gender>><gender>` (genders "
            f"{', '.join(GENDERS)}) or `gdpr`")


def parse(items: tuple[str, ...]) -> dict[str, Region] | str:
    """Region → its policies, or what is wrong with the items."""
    return parse_named(items, "region", REGIONS_MAX, Region, _policy, needs_option=True,
                       option_noun="policy")


def approvals_arg(regions: dict[str, Region]) -> str:
    """The approval rules as the recipient's step takes them: `;<region>=<rule>;…;` ('' none),
    so the script finds a region's rule with one plain search."""
    rules = [f"{r.region}={r.approval}" for r in regions.values() if r.approval]
    return ";" + ";".join(rules) + ";" if rules else ""
