"""Gifting rules that need no I/O. The clock is always passed in."""

from __future__ import annotations

import re

from protocol.messages import ID_PATTERN
from server.days import day_key, local_day, parse_timezone, seconds_to_midnight

# the day functions are the platform's (server/days.py); gifting's callers name them here
__all__ = ["day_key", "festival_cost", "is_valid_id", "local_day", "parse_timezone",
           "seconds_to_midnight", "split_transfer_id", "transfer_id"]

_ID = re.compile(ID_PATTERN)


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
