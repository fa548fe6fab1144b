"""Gifting rules that need no I/O. The clock is always passed in."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from protocol.messages import ID_PATTERN

_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):(\d{2})(?::(\d{2}))?$")
_ID = re.compile(ID_PATTERN)


def parse_timezone(name: str) -> tzinfo:
    """An IANA zone (`Asia/Shanghai`) or a fixed offset (`+08:00`, `-03:30:15`)."""
    m = _OFFSET.match(name)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        seconds = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + int(m.group(4) or 0)
        return timezone(sign * timedelta(seconds=seconds))
    return ZoneInfo(name)


def local_day(now_ms: int, tz: tzinfo) -> date:
    """The platform's calendar day at `now_ms`; daily counters roll over at its midnight."""
    return datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(tz).date()


def day_key(day: date) -> str:
    return day.strftime("%Y%m%d")


def seconds_to_midnight(now_ms: int, tz: tzinfo) -> float:
    now = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(tz)
    nxt = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tz)
    return (nxt - now).total_seconds()


def festival_cost(count: int, num: int, den: int) -> int:
    """Festival price: ceil(count × num/den) in integers (1.2× is 6/5)."""
    return (count * num + den - 1) // den


def is_valid_id(value: str) -> bool:
    return bool(_ID.fullmatch(value))  # `$` would let a final newline by


def transfer_id(sender: str, gift_id: str) -> str:
    """Gift ids are the sender's own namespace; the transfer id is global."""
    return f"{sender}:{gift_id}"


def split_transfer_id(tid: str) -> tuple[str, str]:
    sender, _, gift_id = tid.partition(":")
    return sender, gift_id
