"""Paging the risk cases, newest first. Cases are ranked by the ms they were opened, and an IP
cluster's cases all share one (the gift that tripped the rule), so the cursor names the last
case a page gave, not only its ms: `<opened ms>:<case>`, opaque to clients. The next page
starts at that ms, inclusive, after that case among the cases of the same ms (Valkey orders
equal scores by member: newest first means the higher ids first), so a page that ends inside
a tie loses nothing and repeats nothing."""

from __future__ import annotations

import re
from typing import Any

import orjson

from server.admin.validate import AdminError
from server.store import keys

PAGE_DEFAULT, PAGE_MAX = 50, 500
CASE_ID_MAX = 200  # longer than any case id the engine makes (`<reason>-<user>-<ms>`)
_CURSOR = re.compile(rf"([0-9]{{1,19}}):(.{{1,{CASE_ID_MAX}}})")
TIE_PROBES_MAX = 64  # a vanished cursor case is found among its ms's cases by bisection


def encode_cursor(opened_ms: int, case: str) -> str:
    return f"{opened_ms}:{case}"


def parse_cursor(raw: str) -> tuple[int, str]:
    """A `next_cursor` back into (opened ms, case); anything else is `bad_field`."""
    m = _CURSOR.fullmatch(raw)
    if m is None:
        raise AdminError("bad_field", "cursor must be a next_cursor the previous page gave")
    return int(m[1]), m[2]


async def page(redis: Any, limit: int, cursor: tuple[int, str] | None) -> dict[str, Any]:
    """Up to `limit` cases after the cursor (from the newest without one), and the cursor of
    the next page (None on the last)."""
    top, offset = "+inf", 0
    if cursor is not None:
        top, offset = str(cursor[0]), await after_in_tie(redis, *cursor)
    ids = await redis.zrevrangebyscore(keys.RISK_CASES, top, "-inf", start=offset, num=limit + 1,
                                       withscores=True)
    got = ids[:limit]
    records = await redis.mget([keys.risk_case(c) for c, _ in got]) if got else []
    last = got[-1] if got and len(ids) > limit else None
    return {"cases": [orjson.loads(x) for x in records if x],
            "next_cursor": encode_cursor(int(last[1]), last[0]) if last else None}


async def after_in_tie(redis: Any, opened_ms: int, case: str) -> int:
    """How many of the cases opened at `opened_ms` come before `case` or are it: the offset,
    within that ms, of the next page. Counted from the tie's own start, so cases opened
    later (higher scores) between two pages shift nothing."""
    pipe = redis.pipeline(transaction=True)  # one slot: `{risk}`; one consistent view
    pipe.zscore(keys.RISK_CASES, case)
    pipe.zrevrank(keys.RISK_CASES, case)
    pipe.zcount(keys.RISK_CASES, f"({opened_ms}", "+inf")
    pipe.zcount(keys.RISK_CASES, opened_ms, opened_ms)
    score, rank, above, tie = await pipe.execute()
    if score is not None and int(score) == opened_ms and rank is not None:
        return int(rank) - int(above) + 1
    # the case is gone (trimmed, or never was): the first of the tie that sorts below it
    lo, hi = 0, int(tie)
    for _ in range(TIE_PROBES_MAX):
        if lo >= hi:
            break
        mid = (lo + hi) // 2
        member = await redis.zrevrangebyscore(keys.RISK_CASES, opened_ms, opened_ms, start=mid,
                                              num=1)
        if not member:  # the tie shrank under us: go on from what is known
            break
        if member[0] > case:  # higher ids come first (Python compares strings as Valkey does)
            lo = mid + 1
        else:
            hi = mid
    return lo
