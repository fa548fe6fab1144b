"""Rooms' audit invariant: each live session's contribution board equals the sum of the
gifts recorded in the room during that session (the records say `<session>|<sender>|<cost>`),
and the rebuild an operator runs when it does not."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from server.ledger.audit import SCAN_COUNT, AuditResult
from server.store import keys

INVARIANT = "board_matches_gifts"


def expected_board(profile: dict[str, str], recorded: dict[str, str]) -> dict[str, int]:
    """The board the recorded gifts of the room's session add up to: the live one, or the
    last one after it ended (its board stays readable until the next starts)."""
    session = profile.get("session", "")
    if not session:
        return {}
    board: dict[str, int] = defaultdict(int)
    for record in recorded.values():
        rec_session, _, rest = record.partition("|")
        sender, _, cost = rest.rpartition("|")
        if rec_session == session:
            board[sender] += int(cost)
    return dict(board)


async def check_boards(redis: Any, r: AuditResult) -> None:
    async for profile_key in redis.scan_iter(match=keys.SCAN_ROOM_PROFILES, count=SCAN_COUNT):
        rk = keys.room(keys.room_of(profile_key))
        profile = await redis.hgetall(rk.profile)
        want = expected_board(profile, await redis.hgetall(rk.recorded))
        have = {u: int(c) for u, c in await redis.zrange(rk.board, 0, -1, withscores=True)}
        if profile.get("live") == "1" and have != want:
            r.fail(INVARIANT, f"room {rk.room}: board {have} but its recorded gifts say {want}")


async def rebuild_board(redis: Any, room: str) -> dict[str, int]:
    """Replace the session's board (the live one, or the last one ended) by what its
    recorded gifts add up to."""
    rk = keys.room(room)
    profile, recorded = await redis.hgetall(rk.profile), await redis.hgetall(rk.recorded)
    if profile.get("live") != "1" and not recorded:
        # an ended session's records expire a while after its last gift; its board stays
        # readable until the next session, so it is kept, not rebuilt into nothing
        return {u: int(c) for u, c in await redis.zrange(rk.board, 0, -1, withscores=True)}
    want = expected_board(profile, recorded)
    pipe = redis.pipeline(transaction=True)  # one slot: the board is swapped atomically
    pipe.delete(rk.board)
    if want:
        pipe.zadd(rk.board, want)
    await pipe.execute()
    return want
