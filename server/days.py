"""The platform's local days, which every daily rule counts in (daily limits, sign-ins,
tasks, streaks, metrics). Pure: the clock is passed in."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

_OFFSET = re.compile(r"^(?:UTC)?([+-])([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?$")


def parse_timezone(name: str) -> tzinfo:
    """An IANA zone (`Asia/Shanghai`) or a fixed offset (`+08:00`, `-03:30:15`)."""
    m = _OFFSET.match(name)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        if int(m.group(3)) > 59 or int(m.group(4) or 0) > 59:
            raise ValueError(f"bad offset {name!r}")
        seconds = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + int(m.group(4) or 0)
        return timezone(sign * timedelta(seconds=seconds))
    return ZoneInfo(name)


def local_day(now_ms: int, tz: tzinfo) -> date:
    """The platform's calendar day at `now_ms`; daily counters roll over at its midnight."""
    return datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(tz).date()


def day_key(day: date) -> str:
    """`yyyymmdd`, the year in four digits (strftime's %Y drops leading zeros before 1000)."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def iso_day(day_key: str) -> str:
    """A day key (`yyyymmdd`) as the API spells days everywhere (`YYYY-MM-DD`)."""
    return f"{day_key[:4]}-{day_key[4:6]}-{day_key[6:]}"


def today_key(now_ms: int, timezone_name: str) -> str:
    """The `yyyymmdd` key of the platform's day at `now_ms`."""
    return day_key(local_day(now_ms, parse_timezone(timezone_name)))


def seconds_to_midnight(now_ms: int, tz: tzinfo) -> float:
    now = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(tz)
    nxt = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tz)
    return (nxt - now).total_seconds()


def next_midnight_ms(now_ms: int, tz: tzinfo) -> int:
    """The ms of the platform's next midnight after `now_ms` (exact: a midnight is a whole
    second, so no float rounding reaches the ms)."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(tz)
    nxt = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tz)
    return round(nxt.timestamp()) * 1000
