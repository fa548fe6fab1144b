"""Rooms' audit invariant: each live session's contribution board equals the sum of the
gifts recorded in the room during that session (the records say `<session>|<sender>|<cost>`),
and the rebuild an operator runs when it does not."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from server.ledger.audit import SCAN_COUNT, AuditResult, read_slots
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


async def check_boards(scripts: Any, r: AuditResult) -> None:
    rooms = [keys.room(keys.room_of(k)) async for k in scripts.redis.scan_iter(
        match=keys.SCAN_ROOM_PROFILES, count=SCAN_COUNT)]
    slots = [[rk.profile, rk.recorded, rk.board] for rk in rooms]
    read = await read_slots(scripts, slots, ("hash", "hash", "zset"))
    for rk, (profile, recorded, board) in zip(rooms, read, strict=True):
        want = expected_board(profile, recorded)
        have = {u: int(float(c)) for u, c in board.items()}
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
