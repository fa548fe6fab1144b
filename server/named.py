"""Configuration lists of named things with options, `<name>[:<option>[+<option>]]`
(partner apps, regions). Pure: one parser, so both read and refuse alike."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
NAME = re.compile(r"[a-z0-9_]{1,24}")


def parse_named(items: tuple[str, ...], noun: str, most: int, make: Callable[[str], T],
                option: Callable[[T, str], T | str], needs_option: bool = False,
                option_noun: str = "option") -> dict[str, T] | str:
    """Name → the thing `make(name)` with each option applied by `option` (which answers the
    thing, or what is wrong with the option); or what is wrong with the items. An option
    (its name, before any `=`) given twice for one name is refused (which one would hold?),
    and so is a name with none where `needs_option` (it would mean nothing)."""
    out: dict[str, T] = {}
    for item in items:
        name, _, options = item.partition(":")
        if not NAME.fullmatch(name):
            return f"{noun} {name!r} is not 1-24 of a-z, 0-9 and _"
        if name in out:
            return f"{noun} {name!r} is named twice"
        thing = make(name)
        given = [opt for opt in options.split("+") if opt]
        if needs_option and not given:
            return f"{noun} {name!r} names no {option_noun}: give it one, or leave it out"
        seen: set[str] = set()
        for opt in given:
            key = opt.partition("=")[0]
            if key in seen:
                return f"{name}: {key!r} is given twice"
            seen.add(key)
            got = option(thing, opt)
            if isinstance(got, str):
                return f"{name}: {got}"
            thing = got
        out[name] = thing
    if len(out) > most:
        return f"more than {most} {noun}s"
    return out
