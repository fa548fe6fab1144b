"""Flows: what the settlement worker does with each kind of entry.

A flow is a declared sequence of steps, each one Lua script on one owner's slot,
each idempotent by the transfer id, so any worker can re-run an entry from the
start after a crash. The worker runs a batch in rounds (at most one entry per
acting user, so each user's requests keep their order); within a round, each
flow runs step by step across all its entries, one pipelined round trip per step.

    flows.add(GiftFlow(...))          # kind "send": debit → credit → finalize → reward

A flow knows its domain; the worker and this runner know none.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from server.config import Settings
from server.days import today_key
from server.settlement.entries import Envelope
from server.settlement.replies import Replies, held
from server.store.pipeline import TRANSIENT, Call, run_calls
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.worker")


class Item(Protocol):
    """One entry's state while its flow runs; a step sets `done` to skip the rest."""

    done: bool


@dataclass(frozen=True)
class Step:
    script: str
    # the call for an item, or None when this item has nothing to do at this step
    call: Callable[[Any, Any], Call | None]
    # what the reply means for the item (an unknown status raises: that item fails)
    after: Callable[[Any, list[Any], Any], Awaitable[None]]


class Flow(Protocol):
    kind: str
    steps: tuple[Step, ...]

    def decode(self, env: Envelope, fields: dict[str, str]) -> Any:
        """The item of an entry; KeyError or ValueError when it is malformed."""

    async def prepare(self, now_ms: int) -> Any:
        """What every call of one batch shares (the day, a calendar lookup)."""

    async def void(self, item: Any, now_ms: int) -> str:
        """An operator gives up on a dead-lettered entry: undo what can be undone, say what."""


class Flows:
    """Entry kind → flow; an entry of an undeclared kind is malformed, never defaulted."""

    def __init__(self) -> None:
        self._by_kind: dict[str, Flow] = {}

    def add(self, flow: Flow) -> None:
        if flow.kind in self._by_kind:
            raise ValueError(f"two flows for entry kind {flow.kind!r}")
        self._by_kind[flow.kind] = flow

    def add_step(self, kind: str, step: Step, first: bool = False) -> None:
        """Another module's step at the end (or the start) of a flow: rooms quote the price
        of a gift sent in a room before it is paid, and record it after."""
        flow = self.get(kind)
        flow.steps = (step, *flow.steps) if first else (*flow.steps, step)

    def get(self, kind: str) -> Flow:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise ValueError(f"no flow for entry kind {kind!r}") from None

    def kinds(self) -> list[str]:
        return list(self._by_kind)


async def run_steps(flow: Flow, items: list[Item], batch: Any, redis: Any, scripts: Scripts,
                    cluster: bool) -> dict[int, str]:
    """Every step of `flow` for `items`, one pipelined round trip per step. Returns the items
    (by index) whose step failed, with the error; they skip the later steps."""
    failed: dict[int, str] = {}
    for step in flow.steps:
        todo: list[tuple[int, Call]] = []
        for i, item in enumerate(items):
            if i in failed or item.done:
                continue
            call = step.call(item, batch)
            if call is not None:
                todo.append((i, call))
        replies = await run_calls(redis, cluster, scripts[step.script], [c for _, c in todo])
        async with held(redis, cluster):  # the step's refusals and replays: one round trip
            for (i, _), reply in zip(todo, replies, strict=True):
                try:
                    if isinstance(reply, Exception):
                        raise reply
                    await step.after(items[i], reply, batch)
                except TRANSIENT:
                    raise
                except Exception as exc:  # a script error or an unknown status: a broken invariant
                    log.error("%s of a %s entry failed: %r", step.script, flow.kind, exc,
                              extra={"transfer_id": getattr(items[i], "tid", "")})
                    failed[i] = f"{step.script}: {type(exc).__name__}: {exc}"
    return failed


@dataclass(frozen=True)
class Now:
    """A batch's time and the platform's local day (`yyyymmdd`), shared by its calls."""

    now_ms: int
    day: str


class DayFlow:
    """The base of a flow whose batch is `Now` (red envelopes, card uses): its scripts, its
    settings and the replies that are not events."""

    def __init__(self, scripts: Scripts, settings: Settings, replies: Replies) -> None:
        self.scripts = scripts
        self.s = settings
        self.replies = replies

    async def prepare(self, now_ms: int) -> Now:
        return Now(now_ms, today_key(now_ms, self.s.timezone))


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[int], Awaitable[int]]  # given now ms; returns how many items it handled
    every_ms: int
    # on its own task beside the settlement loop: for a job that moves no balance and would
    # otherwise hold every settlement batch up for as long as it runs (the risk engine)
    apart: bool = False


class Periodic:
    """Jobs the workers run on a schedule (offer timeouts now; expiries, refunds later)."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def add(self, name: str, run: Callable[[int], Awaitable[int]], every_ms: int,
            apart: bool = False) -> None:
        if any(j.name == name for j in self.jobs):
            raise ValueError(f"two periodic jobs named {name!r}")
        self.jobs.append(Job(name, run, every_ms, apart))
