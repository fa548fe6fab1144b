"""Publishing to a user's (or a gateway's) channel: PUBLISH on one Redis, SPUBLISH on a
cluster, where a sharded channel lives in its owner's slot and is not broadcast to every node."""

from __future__ import annotations

from typing import Any


async def publish(redis: Any, sharded: bool, channel: str, message: str) -> None:
    if sharded:
        await redis.spublish(channel, message)
    else:
        await redis.publish(channel, message)
