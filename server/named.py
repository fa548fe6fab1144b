"""Configuration lists of named things with options, `<name>[:<option>[+<option>]]`
(partner apps, regions). Pure: one parser, so both read and refuse alike."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
NAME = re.compile(r"[a-z0-9_]{1,24}")


def parse_named(items: tuple[str, ...], noun: str, most: int, make: Callable[[str], T],
                option: Callable[[T, str], T | str]) -> dict[str, T] | str:
    """Name → the thing `make(name)` with each option applied by `option` (which answers the
    thing, or what is wrong with the option); or what is wrong with the items."""
    out: dict[str, T] = {}
    for item in items:
        name, _, options = item.partition(":")
        if not NAME.fullmatch(name):
            return f"{noun} {name!r} is not 1-24 of a-z, 0-9 and _"
        if name in out:
            return f"{noun} {name!r} is named twice"
        thing = make(name)
        for opt in filter(None, options.split("+")):
            got = option(thing, opt)
            if isinstance(got, str):
                return f"{name}: {got}"
            thing = got
        out[name] = thing
    if len(out) > most:
        return f"more than {most} {noun}s"
    return out
