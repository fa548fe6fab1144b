"""Replies that are not events: a replay's stored answer, a conflict, a refusal.

They go to one request only, on the user's channel as `R<conn>/<n> <json>`; the hub
hands it to that request if it still waits, and to nobody else (a request already
answered drops it). Events are published by the Lua steps themselves.
"""

from __future__ import annotations

from typing import Any

from server.store import keys
from server.store.channels import publish


class Replies:
    def __init__(self, redis: Any, cluster: bool) -> None:
        self.redis = redis
        self.cluster = cluster

    async def send(self, user: str, route: str, frame_json: str) -> None:
        if route:
            await publish(self.redis, self.cluster, keys.user(user).channel,
                          f"{keys.REPLY_PREFIX}{route} {frame_json}")
