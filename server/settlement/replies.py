"""Replies that are not events: a replay's stored answer, a conflict, a refusal.

They go to one request only, on the user's channel as `R<conn>/<n> <json>`; the hub
hands it to that request if it still waits, and to nobody else (a request already
answered drops it). Events are published by the Lua steps themselves.

While a worker reads one step's replies (`held`), the replies wait and go out together
when it is done — one pipelined round trip instead of one per refusal (an envelope rush
refuses hundreds a batch) — still before the next step's scripts run, so no reply is
overtaken by an event a later step publishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from server.store import keys
from server.store.channels import publish
from server.store.pipeline import Round, execute

# (channel, message) held by the task that reads a step's replies; other tasks (a gateway's
# handlers sharing this process) publish at once
_held: ContextVar[list[tuple[str, str]] | None] = ContextVar("held_replies", default=None)


class Replies:
    def __init__(self, redis: Any, cluster: bool) -> None:
        self.redis = redis
        self.cluster = cluster

    async def send(self, user: str, route: str, frame_json: str) -> None:
        if not route:
            return
        channel, message = keys.user(user).channel, f"{keys.REPLY_PREFIX}{route} {frame_json}"
        held = _held.get()
        if held is not None:
            held.append((channel, message))
        else:
            await publish(self.redis, self.cluster, channel, message)


@asynccontextmanager
async def held(redis: Any, cluster: bool) -> AsyncIterator[None]:
    """Replies sent inside go out together at the end (even if the body raised: a reply
    sent is a reply owed)."""
    pending: list[tuple[str, str]] = []
    token = _held.set(pending)
    try:
        yield
    finally:
        _held.reset(token)
        if pending:
            await _publish_all(redis, cluster, pending)


async def _publish_all(redis: Any, cluster: bool, pending: list[tuple[str, str]]) -> None:
    if cluster:  # channels live in many slots: concurrent, each to its own node
        await asyncio.gather(*(publish(redis, True, ch, msg) for ch, msg in pending))
        return
    pipe = Round(redis)
    for channel, message in pending:
        pipe.publish(channel, message)
    await execute(pipe)
