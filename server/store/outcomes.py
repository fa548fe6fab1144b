"""The one vocabulary of step statuses every Lua script answers with (the first element
of its reply), mapped to Python once. An unknown status is a broken invariant, never
read as a default (redis-py's `_parsers/base.py` maps error replies the same way)."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    APPLIED = "applied"  # this call changed state (moved cards, recorded an outcome)
    EXISTS = "exists"  # done before with the same parameters: the stored result comes back
    CONFLICT = "conflict"  # the id was used with other parameters; nothing changed
    REJECTED = "rejected"  # a rule refused it (a gift step records the refusal)
    NOT_FOUND = "not_found"  # nothing to act on (no such offer, entry no longer pending)
    NOT_DUE = "not_due"  # a timeout asked for too early; nothing changed
    LOST = "lost"  # resolved before by another action: the reply says which
    STALE = "stale"  # the outcome does not follow from the stored state (logged, skipped)


class UnknownStatus(Exception):
    """A script answered with a status outside `Status`: the script and this table drifted."""


_BY_VALUE = {s.value: s for s in Status}


def status(reply: list[str]) -> Status:
    """The status of a script reply, or UnknownStatus."""
    found = _BY_VALUE.get(reply[0]) if reply else None
    if found is None:
        raise UnknownStatus(f"script answered {reply!r}")
    return found
