"""The periodic job that ends gift wishes whose end time passed (on the movable clock)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from server.parts import Parts
from server.store import keys
from server.store.outcomes import Status, status

WISH_ENDS_BATCH_MAX = 256  # wishes ended per run


def end_due(p: Parts) -> Callable[[int], Awaitable[int]]:
    async def run(now_ms: int) -> int:
        due = await p.redis.zrangebyscore(keys.WISHES_DUE, "-inf", now_ms, start=0,
                                          num=WISH_ENDS_BATCH_MAX)
        for room in due:
            rk = keys.room(room)
            reply = await p.scripts["room_wish"](
                keys=[rk.profile, rk.channel],
                args=["", "expire", "", 1, 0, now_ms, p.settings.publish_mode])
            if status(reply) is Status.NOT_DUE:  # a later wish of the room: its own end time
                await p.redis.zadd(keys.WISHES_DUE, {room: int(reply[2])})
            else:  # ended now, closed before, no timed wish, or the room is gone
                await p.redis.zrem(keys.WISHES_DUE, room)
        return len(due)

    return run
