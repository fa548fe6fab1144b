"""The invariant audit, run by `giftwire audit` on a live Redis.

Checks, per asset: the sum over all accounts (balances and every slot's system
accounts, escrow included) is zero; no user balance is negative; escrow holds
exactly the gifts in flight. Per gift: the sender's and the recipient's records
agree, so each settled gift was credited exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from server.store import keys

SCAN_COUNT = 1000
PIPE_BATCH = 500
PROBLEMS_MAX = 50
IN_FLIGHT = ("escrowed", "offered")
SENDER_POSTED = ("delivered", "accepted")
RECIPIENT_POSTED = ("delivered", "accepted")


@dataclass
class AuditResult:
    users: int = 0
    transfers: int = 0
    in_flight: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0  # entries set aside for an operator (not a broken invariant)
    dead_listed: list[str] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, invariant: str, detail: str) -> None:
        if len(self.problems[invariant]) < PROBLEMS_MAX:
            self.problems[invariant].append(detail)


async def _hashes(redis: Any, pattern: str) -> dict[str, dict[str, str]]:
    names = [k async for k in redis.scan_iter(match=pattern, count=SCAN_COUNT)]
    out: dict[str, dict[str, str]] = {}
    for i in range(0, len(names), PIPE_BATCH):
        pipe = redis.pipeline(transaction=False)
        for name in names[i : i + PIPE_BATCH]:
            pipe.hgetall(name)
        for name, value in zip(names[i : i + PIPE_BATCH], await pipe.execute(), strict=True):
            out[keys.owner_of(name)] = value
    return out


# escrow that other subsystems hold in flight (red envelopes), per asset, from the
# transfer records of every user slot (user → record id → JSON)
EscrowHolder = Callable[[dict[str, dict[str, str]]], dict[str, int]]


def amount_of(value: str, where: str) -> int:
    """A stored amount, or a ValueError naming where it was (a corrupt or foreign key)."""
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{where} holds {value[:40]!r}, not an integer amount") from None


async def audit(redis: Any, holders: Sequence[EscrowHolder] = ()) -> AuditResult:
    r = AuditResult()
    balances = await _hashes(redis, keys.SCAN_BALANCES)
    system = await _hashes(redis, keys.SCAN_SYSTEM)
    records = await _hashes(redis, keys.SCAN_TRANSFERS)
    r.users = len(set(balances) | set(system) | set(records))

    sums: dict[str, int] = defaultdict(int)
    for user, hb in balances.items():
        for asset, amount in hb.items():
            n = amount_of(amount, f"{keys.user(user).balances} field {asset}")
            sums[asset] += n
            if n < 0:
                r.fail("no_negative_balance", f"{user} holds {n} {asset}")
    escrow: dict[str, int] = defaultdict(int)
    for owner, hs in system.items():
        for account, amount in hs.items():
            _, _, asset = account.partition(":")
            n = amount_of(amount, f"{keys.user(owner).system} field {account}")
            sums[asset] += n
            if account.startswith("escrow:"):
                escrow[asset] += n
    r.totals = dict(sums)
    for asset, total in sorted(sums.items()):
        if total != 0:
            r.fail("sum_zero", f"{asset} sums to {total} over all accounts")

    held: dict[str, int] = defaultdict(int)
    for holder in holders:
        for held_asset, held_amount in holder(records).items():
            held[held_asset] += held_amount
    _check_transfers(r, records, escrow, held)
    await _dead_letters(redis, r)
    return r


async def _dead_letters(redis: Any, r: AuditResult) -> None:
    """Count the dead letters of every partition and list the first few: each is a request
    an operator must retry or void (`/admin/v1/dead-letters`)."""
    async for name in redis.scan_iter(match=keys.SCAN_DEAD_LETTERS, count=SCAN_COUNT):
        r.dead_letters += int(await redis.xlen(name))
        room = PROBLEMS_MAX - len(r.dead_listed)
        if room <= 0:  # XRANGE refuses COUNT 0: the list is full, only count the rest
            continue
        for dead_id, f in await redis.xrange(name, count=room):
            fields = orjson.loads(f["fields"])
            r.dead_listed.append(f"{name} {dead_id}: {fields.get('kind')} by {fields.get('user')} "
                                 f"after {f['attempts']} attempt(s): {f['error'][:200]}")


def _check_transfers(r: AuditResult, records: dict[str, dict[str, str]],
                     escrow: dict[str, int], held: dict[str, int]) -> None:
    in_flight: dict[str, int] = defaultdict(int, held)
    for owner, hx in records.items():
        for tid, raw in hx.items():
            if tid.startswith("$"):
                continue
            sender, _, _ = tid.partition(":")
            rec = orjson.loads(raw)
            if sender != owner:
                if rec["st"] in RECIPIENT_POSTED:
                    theirs = records.get(sender, {}).get(tid)
                    st = orjson.loads(theirs)["st"] if theirs else None
                    if st not in SENDER_POSTED:
                        r.fail("settled_once", f"{tid} credited to {owner}; sender says {st}")
                continue
            r.transfers += 1
            if rec["st"] in IN_FLIGHT:
                r.in_flight += 1
                in_flight[rec["asset"]] += rec["count"]
            if rec["st"] in SENDER_POSTED:
                theirs = records.get(rec["to"], {}).get(tid)
                st = orjson.loads(theirs)["st"] if theirs else None
                if st not in RECIPIENT_POSTED:
                    r.fail("settled_once", f"{tid} debited as {rec['st']}; recipient says {st}")
    for asset in sorted(set(escrow) | set(in_flight)):
        if escrow.get(asset, 0) != in_flight.get(asset, 0):
            r.fail("escrow_matches_in_flight",
                   f"escrow holds {escrow.get(asset, 0)} {asset}, gifts and envelopes "
                   f"in flight {in_flight.get(asset, 0)}")


CORE_INVARIANTS = ("sum_zero", "no_negative_balance", "escrow_matches_in_flight", "settled_once")


def report(r: AuditResult, invariants: tuple[str, ...] = CORE_INVARIANTS) -> str:
    """Each invariant ok or FAIL with its problems (the modules' checks name theirs)."""
    lines = [f"audited {r.users} users, {r.transfers} gifts ({r.in_flight} in flight)"]
    for invariant in (*invariants, *sorted(set(r.problems) - set(invariants))):
        problems = r.problems.get(invariant, [])
        lines.append(f"{'FAIL' if problems else 'ok  '} {invariant}")
        lines.extend(f"     {p}" for p in problems)
    lines.append(f"dead letters: {r.dead_letters} (retry or void them: /admin/v1/dead-letters)")
    lines.extend(f"     {d}" for d in r.dead_listed)
    lines.append("audit passed" if r.ok else "audit FAILED")
    return "\n".join(lines)
