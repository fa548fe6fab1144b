"""Popularity's rules that need no I/O: targeting, a card use's fingerprint, prices, the
weekly cycle, maturity and the recommender's decaying weight. Pure functions, the clock
passed in."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from typing import Any

import orjson

from protocol.popularity import TAG_PATTERN
from server.config import Settings

PROVINCES_MAX = 34
_TAG = re.compile(TAG_PATTERN)


def targeting_problem(t: Any, s: Settings) -> str | None:
    """The error code of the first field of `targeting` that is wrong, or None. One clear
    code per field: region, age, gender, interests (their bounds `s`'s)."""
    if not isinstance(t, dict) or set(t) - {"region", "age", "gender", "interests"}:
        return "targeting_region" if not isinstance(t, dict) else _unknown(t)
    region = t.get("region")
    if not isinstance(region, dict) or len(region) != 1:
        return "targeting_region"
    if "radius_km" in region:
        r = region["radius_km"]
        if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= 500:
            return "targeting_region"
    elif "provinces" in region:
        ps = region["provinces"]
        if (not isinstance(ps, list) or not 1 <= len(ps) <= PROVINCES_MAX
                or not all(isinstance(x, str) and 1 <= len(x) <= 32 for x in ps)
                or len(set(ps)) != len(ps)):
            return "targeting_region"
    else:
        return "targeting_region"
    age = t.get("age")
    if (not isinstance(age, dict) or set(age) != {"min", "max"}
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in age.values())
            or not 13 <= age["min"] <= age["max"] <= 100):
        return "targeting_age"
    if t.get("gender") not in ("any", "female", "male"):
        return "targeting_gender"
    interests = t.get("interests")
    if not isinstance(interests, dict) or set(interests) - {"core", "extended"}:
        return "targeting_interests"
    core, extended = interests.get("core"), interests.get("extended", [])
    if not (isinstance(core, list) and isinstance(extended, list)
            and s.interest_core_min <= len(core) <= s.interest_core_max
            and len(extended) <= s.interest_extended_max):
        return "targeting_interests"
    tags = core + extended
    if not all(isinstance(x, str) and _TAG.fullmatch(x) for x in tags) or len(set(tags)) != len(tags):
        return "targeting_interests"
    return None


def _unknown(t: dict[str, Any]) -> str:
    """A targeting object with a field we do not know: blame the closest one."""
    extra = sorted(set(t) - {"region", "age", "gender", "interests"})[0]
    for code in ("region", "age", "gender", "interests"):
        if code in extra:
            return f"targeting_{code}"
    return "targeting_region"


def use_fingerprint(d: dict[str, Any]) -> str:
    """A card use's parameters as the client sent them (all but the request id; an absent
    field stays absent, never the default it stands for): an identical retry has the same
    fingerprint, a retry that differs in any field has another (`use_id_conflict`)."""
    sent = {k: v for k, v in d.items() if k != "id"}
    return hashlib.sha256(orjson.dumps(sent, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def refusal_detail(code: str, s: Settings) -> str | None:
    """The message of a refusal whose bound is a setting, naming the configured bound (the
    protocol's table gives the defaults); None for the others."""
    if code == "use_limit":
        return f"today's card uses are used up ({s.card_uses_per_day} a day); more tomorrow"
    if code == "not_enough_followers":
        return f"fan reach needs {s.fan_reach_followers:,} followers"
    if code == "targeting_interests":
        return (f"interests: {s.interest_core_min}–{s.interest_core_max} core tags and at most "
                f"{s.interest_extended_max} extended tags, each 1–24 characters without spaces "
                f"or commas, none repeated")
    if code == "exchange_unit":
        return f"small cards exchange in whole units of {s.exchange_cards}"
    if code == "buy_unit":
        return f"coin buys points in whole yuan of {s.coin_per_yuan} coin"
    return None


def prices(s: Settings) -> dict[str, int]:
    return {card: int(points) for card, _, points in (x.partition(":") for x in s.card_prices)}


def cycle_key(day: date) -> str:
    """The weekly cycle of the creator task: ISO weeks, Monday to Sunday, local days."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def mature_before_ms(now_ms: int, s: Settings) -> int:
    """Accounts registered at or before this are old enough for advanced cards."""
    return now_ms - s.mature_days * 86_400_000


def weight(windows: list[tuple[int, int]], now_ms: int, s: Settings) -> float:
    """The recommender's weight of a content now: each active boost counts 1.0 for its
    full-weight period, then × decay per completed step; boosts add up."""
    decay = float(s.boost_decay)
    total = 0.0
    for start, end in windows:
        if not start <= now_ms < end:
            continue
        past = now_ms - start - s.boost_full_s * 1000
        total += 1.0 if past < 0 else decay ** (past // (s.boost_decay_step_s * 1000) + 1)
    return round(total, 6)
