"""Validation of admin API bodies. Pure: returns values or raises AdminError."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from protocol.errors import ADMIN_ERRORS
from protocol.messages import ID_PATTERN
from server.config import FAN_CARDS, Settings, tier_problems
from server.days import day_key
from server.named import NAME
from server.regions.rules import GENDERS

# fullmatch: `$` in ID_PATTERN would also accept a trailing newline under re.match
_ID = re.compile(ID_PATTERN)
_DIGITS = re.compile(r"[0-9]{1,20}")  # ASCII only: `\d` and int() also take other scripts' digits
STREAM_ID_PART_MAX = (1 << 64) - 1  # Redis stream ids are two unsigned 64-bit integers


class AdminError(Exception):
    """A refused admin request: a code of `protocol.errors.ADMIN_ERRORS`, which gives the HTTP
    status and the default message; `detail` replaces the message with a more specific one."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        entry = ADMIN_ERRORS.get(code)
        if entry is None:  # a bug: fail loudly rather than answer with an undocumented code
            raise ValueError(f"{code!r} is not an admin error code (protocol.errors.ADMIN_ERRORS)")
        message = entry.message if detail is None else detail
        super().__init__(message)
        self.status, self.code, self.message = entry.status, code, message


def obj(body: Any, allowed: set[str], required: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AdminError("bad_body")
    unknown = set(body) - allowed
    if unknown:
        raise AdminError("unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    missing = required - set(body)
    if missing:
        raise AdminError("missing_field", f"missing field(s): {', '.join(sorted(missing))}")
    return body


def user_id(value: Any, name: str = "user") -> str:
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise AdminError("bad_field", f"{name} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def integer(value: Any, name: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise AdminError("bad_field", f"{name} must be an integer in [{lo}, {hi}]")
    return value


def amount(value: Any, name: str, amount_max: int) -> int:
    """An amount of an asset: a whole number in [1, amount_max]; a number past the bound is
    `amount_too_large` (at any size: past 2^64 the JSON parser hands over a float)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > amount_max:
        raise AdminError("amount_too_large", f"{name} over GIFTWIRE_AMOUNT_MAX ({amount_max})")
    return integer(value, name, 1, amount_max)


def query_int(value: str, name: str, lo: int, hi: int) -> int:
    """A query-string integer: ASCII digits only, in [lo, hi]; never clamped."""
    if _DIGITS.fullmatch(value) is None or not lo <= int(value) <= hi:
        raise AdminError("bad_field", f"{name} must be an integer in [{lo}, {hi}]")
    return int(value)


def stream_id(value: str) -> tuple[int, int] | None:
    """A stream id `<ms>-<seq>` → its two parts, each in [0, 2^64) as Redis takes them, or
    None (ASCII digits only)."""
    parts = value.split("-")
    if len(parts) != 2 or not all(_DIGITS.fullmatch(p) and int(p) <= STREAM_ID_PART_MAX
                                  for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def cursor(value: str) -> tuple[int, int]:
    """A ledger cursor `<ms>-<seq>` (a stream id) → its two parts, or `bad_cursor`."""
    found = stream_id(value)
    if found is None:
        raise AdminError("bad_cursor")
    return found


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise AdminError("bad_field", f"{name} must be true or false")
    return value


def asset(value: Any, s: Settings) -> str:
    if not isinstance(value, str) or not s.is_asset(value):
        raise AdminError("unknown_asset", f"asset must be one of {', '.join(s.assets)}, "
                         f"{FAN_CARDS[0]}.<creator> or {FAN_CARDS[1]}.<creator>")
    return value


DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)  # `fromisoformat` also takes 2027-W06-6, 20270206


def day(value: Any) -> str:
    """`YYYY-MM-DD` → the `yyyymmdd` day key."""
    try:
        if not DATE.fullmatch(value):
            raise ValueError(value)
        return day_key(date.fromisoformat(value))
    except (TypeError, ValueError):
        raise AdminError("bad_field", f"{value!r} is not a YYYY-MM-DD date") from None


PROFILE_FIELDS = {
    "registered_at_ms": "registered_at_ms",
    "real_name_verified": "real_name",
    "vip": "vip",
    "banned": "banned",
    "confirm_gifts": "confirm",
    "region": "region",
    "gender": "gender",
}


def profile(body: Any, now_ms: int) -> dict[str, str]:
    """A user body → profile hash fields (Redis strings)."""
    d = obj(body, set(PROFILE_FIELDS))
    out: dict[str, str] = {}
    for name, field in PROFILE_FIELDS.items():
        if name not in d:
            continue
        if name == "registered_at_ms":
            out[field] = str(integer(d[name], name, 0, now_ms + 86400_000))
        elif name in ("region", "gender") and d[name] is None:
            out[field] = ""  # no longer known: removed (user_put.lua)
        elif name == "region":  # the platform's region of the account (GIFTWIRE_REGIONS)
            if not isinstance(d[name], str) or not NAME.fullmatch(d[name]):
                raise AdminError("bad_field", "region must be 1-24 of a-z, 0-9 and _")
            out[field] = d[name]
        elif name == "gender":
            if d[name] not in GENDERS:
                raise AdminError("bad_field", f"gender must be one of {', '.join(GENDERS)}")
            out[field] = d[name]
        else:
            out[field] = "1" if boolean(d[name], name) else "0"
    return out


WISH_TIERS_MAX = 16  # tiers one room may have


def wish_tiers(value: Any) -> list[str]:
    """A room's own gift-wish tiers: `["1000:1/1", "10000:2/1", "*:3/1"]`, checked like
    the configured ones."""
    if not isinstance(value, list) or not 1 <= len(value) <= WISH_TIERS_MAX \
            or not all(isinstance(t, str) and len(t) <= 32 for t in value):
        raise AdminError("bad_field", f"wish_tiers must be a list of 1 to {WISH_TIERS_MAX} "
                                      "strings `<viewers below or *>:<num>/<den>`")
    wrong = tier_problems(value)
    if wrong:
        raise AdminError("bad_field", "; ".join(wrong))
    return value
