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
# the sender's records while its slot's escrow holds the gift's cards (debited, not refunded)
SENDER_HOLDS = ("escrowed", "offered", "delivered", "accepted")
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
    # pairs of records that disagreed in the slots' reads: (kind, transfer, owner, other side)
    suspects: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, invariant: str, detail: str) -> None:
        if len(self.problems[invariant]) < PROBLEMS_MAX:
            self.problems[invariant].append(detail)


async def _owners(redis: Any) -> list[str]:
    found: set[str] = set()
    for pattern in (keys.SCAN_BALANCES, keys.SCAN_SYSTEM, keys.SCAN_TRANSFERS):
        found.update([keys.owner_of(k) async for k in redis.scan_iter(match=pattern,
                                                                      count=SCAN_COUNT)])
    return sorted(found)


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


async def read_slots(scripts: Any, slots: list[list[str]],
                     how: Sequence[str] = ()) -> list[list[dict[str, str]]]:
    """Each slot's keys read at one instant (one `audit_read` call per slot, pipelined):
    under traffic, what one slot's Lua calls keep equal stays equal in what is read. `how`
    says how to read each key of a slot (`hash`, the default, or `zset`: member → score)."""
    if not slots:
        return []
    read, args = scripts["audit_read"], list(how)
    out = [[_pairs(h) for h in await read(keys=slots[0], args=args)]]  # (loads the library)
    for i in range(1, len(slots), PIPE_BATCH):
        pipe = scripts.redis.pipeline(transaction=False)
        for names in slots[i : i + PIPE_BATCH]:
            await read(keys=names, args=args, client=pipe)
        out += [[_pairs(h) for h in reply] for reply in await pipe.execute()]
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


async def audit(scripts: Any, holders: Sequence[EscrowHolder] = ()) -> AuditResult:
    """The ledger's invariants on a live Redis: each user's slot is read at one instant, and
    a pair of records that disagree is read again in the order the steps write them, so a
    gift between its steps is never taken for a broken one."""
    r, redis = AuditResult(), scripts.redis
    owners = await _owners(redis)
    slots = [[uk.balances, uk.system, uk.transfers] for uk in map(keys.user, owners)]
    balances: dict[str, dict[str, str]] = {}
    system: dict[str, dict[str, str]] = {}
    records: dict[str, dict[str, str]] = {}
    for owner, (hb, hs, hx) in zip(owners, await read_slots(scripts, slots), strict=True):
        balances[owner], system[owner], records[owner] = hb, hs, hx
    r.users = len(owners)

    sums: dict[str, int] = defaultdict(int)
    for user, hb in balances.items():
        for asset, amount in hb.items():
            n = amount_of(amount, f"{keys.user(user).balances} field {asset}")
            sums[asset] += n
            if n < 0:
                r.fail("no_negative_balance", f"{user} holds {n} {asset}")
    escrow: dict[str, dict[str, int]] = {}  # owner → asset → its slot's escrow
    for owner, hs in system.items():
        for account, amount in hs.items():
            _, _, asset = account.partition(":")
            n = amount_of(amount, f"{keys.user(owner).system} field {account}")
            sums[asset] += n
            if account.startswith("escrow:") and n:
                escrow.setdefault(owner, {})[asset] = n
    r.totals = dict(sums)
    for asset, total in sorted(sums.items()):
        if total != 0:
            r.fail("sum_zero", f"{asset} sums to {total} over all accounts")

    held: dict[str, dict[str, int]] = {}  # owner → asset → what other subsystems hold there
    for owner, hx in records.items():
        for holder in holders:
            for held_asset, held_amount in holder({owner: hx}).items():
                if held_amount:
                    mine = held.setdefault(owner, {})
                    mine[held_asset] = mine.get(held_asset, 0) + held_amount
    _check_transfers(r, records, await _gifts(redis, records), escrow, held)
    await _recheck_pairs(redis, r)
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
                     gifts: dict[str, tuple[str, int]], escrow: dict[str, dict[str, int]],
                     held: dict[str, dict[str, int]]) -> None:
    # Escrow against what the records say it holds, slot by slot (each read at one instant,
    # so exact under traffic too): a sender's slot holds a gift's cards from its debit until
    # a refund (while the sender's record is escrowed, offered, delivered or accepted), the
    # recipient's slot gives them out when it credits them (its record delivered or
    # accepted); other subsystems add what their records hold there (`held`).
    in_flight: dict[str, dict[str, int]] = {o: dict(h) for o, h in held.items()}

    def add(owner: str, asset: str, n: int) -> None:
        mine = in_flight.setdefault(owner, {})
        mine[asset] = mine.get(asset, 0) + n

    for owner, hx in records.items():
        for tid, raw in hx.items():
            if tid.startswith("$"):
                continue
            sender, _, _ = tid.partition(":")
            rec = orjson.loads(raw)
            if sender != owner:
                if rec["st"] in RECIPIENT_POSTED:
                    if tid in gifts:
                        asset, count = gifts[tid]
                        add(owner, asset, -count)
                        theirs = records.get(sender, {}).get(tid)
                        st = orjson.loads(theirs)["st"] if theirs else None
                        if st not in SENDER_HOLDS:  # (read again below, in the steps' order)
                            r.suspects.append(("credited", tid, owner, sender))
                    else:
                        r.fail("settled_once", f"{tid} credited to {owner}; the sender has "
                                               f"no record of it")
                continue
            r.transfers += 1
            if rec["st"] in IN_FLIGHT:
                r.in_flight += 1
            if rec["st"] in SENDER_HOLDS:
                add(owner, rec["asset"], rec["count"])
            if rec["st"] in SENDER_POSTED:
                theirs = records.get(rec["to"], {}).get(tid)
                st = orjson.loads(theirs)["st"] if theirs else None
                if st not in RECIPIENT_POSTED:
                    r.suspects.append(("debited", tid, owner, rec["to"]))
    for owner in sorted(set(escrow) | set(in_flight)):
        holds, flying = escrow.get(owner, {}), in_flight.get(owner, {})
        for asset in sorted(set(holds) | set(flying)):
            if holds.get(asset, 0) != flying.get(asset, 0):
                r.fail("escrow_matches_in_flight",
                       f"{owner}'s escrow holds {holds.get(asset, 0)} {asset}, its gifts and "
                       f"envelopes in flight say {flying.get(asset, 0)}")


async def _gifts(redis: Any, records: dict[str, dict[str, str]]) -> dict[str, tuple[str, int]]:
    """Each gift's asset and count (a recipient's record of a delivered gift keeps neither:
    the sender's says them), from the slots' reads, or read now for a gift whose sender's
    slot was read before its debit (the debit ran before the credit the recipient's shows)."""
    gifts: dict[str, tuple[str, int]] = {}
    wanted: list[tuple[str, str]] = []
    for owner, hx in records.items():
        for tid, raw in hx.items():
            if tid.startswith("$"):
                continue
            sender, _, _ = tid.partition(":")
            rec = orjson.loads(raw)
            if sender == owner and "asset" in rec:  # (one refused at its debit has none)
                gifts[tid] = (str(rec["asset"]), int(rec["count"]))
            elif sender != owner and rec["st"] in RECIPIENT_POSTED:
                wanted.append((sender, tid))
    for sender, tid in wanted:
        if tid not in gifts:
            raw = await redis.hget(keys.user(sender).transfers, tid)
            rec = orjson.loads(raw) if raw is not None else {}
            if "asset" in rec:
                gifts[tid] = (str(rec["asset"]), int(rec["count"]))
    return gifts


async def _recheck_pairs(redis: Any, r: AuditResult) -> None:
    """A pair of records that disagreed, read again now in the order the steps write them:
    the sender's side first when it said posted (its last step runs after the recipient's),
    the recipient's first when it said credited (the sender's debit ran before it). Only a
    disagreement that survives that is a broken gift."""
    for kind, tid, owner, other in r.suspects:
        # the suspect's own side (`owner`: the one that said posted or credited) first
        mine = await redis.hget(keys.user(owner).transfers, tid)
        theirs = await redis.hget(keys.user(other).transfers, tid)
        st = orjson.loads(mine)["st"] if mine else None
        their_st = orjson.loads(theirs)["st"] if theirs else None
        if kind == "debited":
            if st in SENDER_POSTED and their_st not in RECIPIENT_POSTED:
                r.fail("settled_once", f"{tid} debited as {st}; recipient says {their_st}")
        elif st in RECIPIENT_POSTED and their_st not in SENDER_HOLDS:
            r.fail("settled_once", f"{tid} credited to {owner}; sender says {their_st}")

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
