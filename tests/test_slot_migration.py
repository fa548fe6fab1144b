"""Slots of busy users move to another master (CLUSTER SETSLOT … MIGRATING/IMPORTING,
MIGRATE) while gifts flow and clients are subscribed: no event lost or doubled, no transfer
stuck, the audit clean, and live delivery follows the slot to its new owner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from server.store import keys
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, RawConn, metric, run_audit, three_masters

ENV = {"GIFTWIRE_REDIS_CLUSTER": "1", "GIFTWIRE_PARTITIONS": "3",
       "GIFTWIRE_GIFTS_PER_DAY": "1000", "GIFTWIRE_PAIR_GIFTS_PER_DAY": "1000"}
PAIRS = 4
GIFTS = 25  # per sender
REPLY_TIMEOUT_S = 5.0
ATTEMPTS_MAX = 6  # a send whose reply was lost in the move is sent again (same gift id)


@pytest.fixture
def cluster() -> Iterator[list[EmbeddedValkey]]:
    with three_masters() as nodes:
        yield nodes


def clients(nodes: list[EmbeddedValkey]) -> list[redis.Redis]:
    return [redis.Redis(host="127.0.0.1", port=n.port, decode_responses=True) for n in nodes]


def owner(cs: list[redis.Redis], slot: int) -> int:
    """Index of the master that owns `slot` now."""
    table: dict[str, Any] = cs[0].execute_command("CLUSTER NODES")
    ids = [c.execute_command("CLUSTER MYID") for c in cs]
    for info in table.values():
        if any(int(r[0]) <= slot <= int(r[-1]) for r in info["slots"]):  # [lo, hi] or [one]
            return ids.index(info["node_id"])
    raise AssertionError(f"slot {slot} has no owner")


def migrate_slot(nodes: list[EmbeddedValkey], cs: list[redis.Redis], slot: int,
                 batch_keys: int = 10, pause_s: float = 0.0) -> None:
    """Move `slot` to the next master the way an operator (or valkey-cli --cluster reshard)
    does: IMPORTING on the target, MIGRATING on the source, MIGRATE its keys in batches
    (`pause_s` apart: a slow reshard keeps a user's keys split between two nodes), then the
    new owner announced to every master. One slot at a time, as valkey-cli does: moves run at
    once from several threads can leave the masters disagreeing about a slot's owner (their
    config epochs collide), and Valkey then drops that slot's keys."""
    src = owner(cs, slot)
    dst = (src + 1) % len(nodes)
    src_id, dst_id = (cs[i].execute_command("CLUSTER MYID") for i in (src, dst))
    cs[dst].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
    cs[src].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
    for _ in range(1000):  # bounded: a user's slot holds a few dozen keys
        batch = cs[src].execute_command("CLUSTER GETKEYSINSLOT", slot, batch_keys)
        if not batch:
            break
        cs[src].execute_command("MIGRATE", "127.0.0.1", nodes[dst].port, "", 0, 5000, "KEYS", *batch)
        time.sleep(pause_s)
    for i in (dst, src, *(i for i in range(len(nodes)) if i not in (src, dst))):
        cs[i].execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)


def split_slot(nodes: list[EmbeddedValkey], cs: list[redis.Redis], slot: int,
               *moved: str) -> tuple[int, int]:
    """Begin moving `slot` to the next master and MIGRATE only the keys `moved`: the slot is
    left half moved, its keys split between two nodes. (source, target) indices."""
    src = owner(cs, slot)
    dst = (src + 1) % len(nodes)
    src_id, dst_id = (cs[i].execute_command("CLUSTER MYID") for i in (src, dst))
    cs[dst].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
    cs[src].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
    if moved:
        cs[src].execute_command("MIGRATE", "127.0.0.1", nodes[dst].port, "", 0, 5000, "KEYS", *moved)
    return src, dst


def finish_move(nodes: list[EmbeddedValkey], cs: list[redis.Redis], slot: int, src: int,
                dst: int) -> None:
    """The rest of a split slot's keys moved, and its new owner announced to every master."""
    rest = cs[src].execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
    if rest:
        cs[src].execute_command("MIGRATE", "127.0.0.1", nodes[dst].port, "", 0, 5000, "KEYS", *rest)
    dst_id = cs[dst].execute_command("CLUSTER MYID")
    for i in (dst, src, *(i for i in range(len(nodes)) if i not in (src, dst))):
        cs[i].execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)


async def sender_loop(conn: RawConn, recipient: str, confirmed: list[str],
                      pace_s: float = 0.0) -> None:
    """GIFTS sends one after another (`pace_s` apart); a lost reply is answered by sending the
    same gift again."""
    for k in range(GIFTS):
        await asyncio.sleep(pace_s)
        for attempt in range(ATTEMPTS_MAX):
            rid = f"m{k}-{attempt}"
            await conn.send("gift.send", id=rid, gift_id=f"m{k}", to=recipient, asset="note.do",
                            count=1)
            try:
                (reply,) = await conn.wait_for(lambda f, rid=rid: f.get("id") == rid,
                                               timeout_s=REPLY_TIMEOUT_S)
            except TimeoutError:
                continue
            if reply["type"] == "gift.confirmed":
                confirmed.append(reply["transfer_id"])
                break
            assert reply.get("code") != "settlement_failed", reply  # a redirect is retried
            assert reply.get("temporary"), reply  # only a temporary refusal is retried
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"gift m{k} never confirmed")


async def test_slots_move_while_gifts_flow(cluster: list[EmbeddedValkey],
                                           start: Callable[..., Proc]) -> None:
    """Busy users' slots moving mid-flow: each gift confirmed and received once, no seq twice, audit clean."""
    # Every slot of the busy users moves to another master. Nothing is stuck, and a gift after the move
    # arrives live.
    srv = start("serve", cluster[0].url, None, ENV)
    start("worker", cluster[1].url, srv.data_dir, ENV)
    cs = clients(cluster)
    async with Admin(srv) as admin:
        pairs = [await admin.pair(GIFTS + 5) for _ in range(PAIRS)]
        senders = [await RawConn.open(srv, s) for s, _ in pairs]
        watchers = [await RawConn.open(srv, s) for s, _ in pairs]  # a second connection each
        recipients = [await RawConn.open(srv, r) for _, r in pairs]
        confirmed: list[list[str]] = [[] for _ in pairs]
        flow = [asyncio.create_task(sender_loop(c, r, out))
                for c, (_, r), out in zip(senders, pairs, confirmed, strict=True)]
        await asyncio.sleep(0.3)
        slots = sorted({int(cs[0].execute_command("CLUSTER KEYSLOT", keys.user(u).profile))
                        for pair in pairs for u in pair})
        before = {slot: owner(cs, slot) for slot in slots}
        for slot in slots:
            await asyncio.to_thread(migrate_slot, cluster, cs, slot)
            await asyncio.sleep(0.05)
        assert all(owner(cs, slot) != before[slot] for slot in slots)
        await asyncio.gather(*flow)

        for rcv in recipients:  # a gift published during a move arrives by the catch-up
            try:
                await rcv.wait_for(lambda f: f["type"] == "gift.received", count=GIFTS,
                                   timeout_s=10)
            except TimeoutError:
                pass  # the assertions below say which gift is missing
        await asyncio.sleep(0.5)  # and none arrives twice after that
        for (s, r), sent, rcv, snd, watch in zip(pairs, confirmed, recipients, senders, watchers,
                                                 strict=True):
            assert len(set(sent)) == GIFTS
            received = [f["transfer_id"] for f in rcv.frames if f["type"] == "gift.received"]
            assert sorted(received) == sorted(set(sent))  # each once, none lost
            seen_by_watcher = [f for f in watch.frames if f["type"] == "gift.confirmed"]
            assert len(seen_by_watcher) == GIFTS
            for conn in (rcv, snd, watch):
                assert conn.seqs_once()
            assert await admin.balances(r) == {"note.do": GIFTS}
            assert await admin.balances(s) == {"note.do": 5}
        # live delivery after the move: the subscriptions followed the slots
        s, r = pairs[0]
        await senders[0].send("gift.send", id="after", gift_id="after", to=r, asset="note.do",
                              count=1)
        (after,) = await senders[0].wait_for(lambda f: f.get("id") == "after")
        await recipients[0].wait_for(lambda f: f.get("transfer_id") == after["transfer_id"])
        for conn in (*senders, *watchers, *recipients):
            await conn.close()
        page = await admin.call("GET", "/dead-letters")
        assert page["total"] == 0, page
    code, out = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
    assert code == 0 and "(0 in flight)" in out, out


async def test_a_slow_reshard_is_waited_for_never_dead_lettered(
        cluster: list[EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """Gifts during a slow reshard are waited for: no `settlement_failed`, no dead letter, each once."""
    # The recipients' slots move one after another as `valkey-cli --cluster reshard` moves them, but slowly
    # (three keys at a time, 0.4 s apart); the steps meet ASK and TRYAGAIN for seconds. Each gift is confirmed
    # and received once, audit clean.
    srv = start("serve", cluster[0].url, None, ENV)
    start("worker", cluster[1].url, srv.data_dir, ENV)
    cs = clients(cluster)
    async with Admin(srv) as admin:
        pairs = [await admin.pair(GIFTS + 5) for _ in range(PAIRS)]
        senders = [await RawConn.open(srv, s) for s, _ in pairs]
        recipients = [await RawConn.open(srv, r) for _, r in pairs]
        confirmed: list[list[str]] = [[] for _ in pairs]
        flow = [asyncio.create_task(sender_loop(c, r, out, pace_s=0.2))
                for c, (_, r), out in zip(senders, pairs, confirmed, strict=True)]
        slots = sorted({int(cs[0].execute_command("CLUSTER KEYSLOT", keys.user(r).profile))
                        for _, r in pairs})
        before = {slot: owner(cs, slot) for slot in slots}
        for slot in slots:
            await asyncio.to_thread(migrate_slot, cluster, cs, slot, 3, 0.4)
        assert all(owner(cs, slot) != before[slot] for slot in slots)
        await asyncio.gather(*flow)
        for rcv, sent in zip(recipients, confirmed, strict=True):
            await rcv.wait_for(lambda f: f["type"] == "gift.received", count=GIFTS, timeout_s=20)
            received = [f["transfer_id"] for f in rcv.frames if f["type"] == "gift.received"]
            assert sorted(received) == sorted(set(sent)) and len(set(sent)) == GIFTS
            assert rcv.seqs_once()
        for conn in (*senders, *recipients):
            await conn.close()
        page = await admin.call("GET", "/dead-letters")
        assert page["total"] == 0, page
    code, out = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
    assert code == 0 and "(0 in flight)" in out, out


async def test_a_step_on_a_half_moved_slot_waits_for_the_move(cluster: list[EmbeddedValkey],
                                                              start: Callable[..., Proc]) -> None:
    """A gift to a slot half moved for 3 s waits for the move and settles, not dead-lettered."""
    # Some keys are on each master: the step gets TRYAGAIN until redis-py gives up (`TTL exhausted`); the gift
    # does not fail its attempts (2, 200 ms apart here) into the dead letters. Past
    # GIFTWIRE_SETTLE_STALL_ALERT_S (1 s here) the wait is an error in the log and in
    # `giftwire_settlement_stalled_seconds`, which is 0 again once the gift settles.
    env = {**ENV, "GIFTWIRE_CLAIM_IDLE_MS": "200", "GIFTWIRE_SETTLE_ATTEMPTS_MAX": "2",
           "GIFTWIRE_SETTLE_STALL_ALERT_S": "1"}
    srv = start("serve", cluster[0].url, None, env)
    cs = clients(cluster)
    async with Admin(srv) as admin:
        s, r = await admin.pair(10)
        slot = int(cs[0].execute_command("CLUSTER KEYSLOT", keys.user(r).profile))
        src = owner(cs, slot)
        dst = (src + 1) % len(cluster)
        src_id, dst_id = (cs[i].execute_command("CLUSTER MYID") for i in (src, dst))
        cs[dst].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        cs[src].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        held = cs[src].execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
        half = held[: max(1, len(held) // 2)]
        cs[src].execute_command("MIGRATE", "127.0.0.1", cluster[dst].port, "", 0, 5000, "KEYS", *half)
        conn = await RawConn.open(srv, s)
        await conn.send("gift.send", id="h1", gift_id="h1", to=r, asset="note.do", count=1)
        await asyncio.sleep(3)  # the recipient's step meets the split slot all along
        assert await metric(srv, "giftwire_settlement_stalled_seconds") >= 1
        assert "settlement stalled for" in srv.log_path.read_text()
        rest = cs[src].execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
        if rest:
            cs[src].execute_command("MIGRATE", "127.0.0.1", cluster[dst].port, "", 0, 5000, "KEYS",
                                    *rest)
        for i in (dst, src, *(i for i in range(len(cluster)) if i not in (src, dst))):
            cs[i].execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        (reply,) = await conn.wait_for(lambda f: f.get("id") == "h1", timeout_s=30)
        assert reply["type"] == "gift.confirmed", reply
        await conn.close()
        assert (await admin.call("GET", "/dead-letters"))["total"] == 0
        assert await admin.balances(r) == {"note.do": 1}
        assert await metric(srv, "giftwire_settlement_stalled_seconds") == 0
        assert "settlement resumed after" in srv.log_path.read_text()
    code, out = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
    assert code == 0 and "(0 in flight)" in out, out


async def test_a_moving_users_risk_signals_fail_alone(cluster: list[EmbeddedValkey],
                                                     start: Callable[..., Proc]) -> None:
    """While one user's slot is half moved, another user's burst is still judged: banned in time."""
    # One user's failing call used to fail the engine's whole batch: every user's signals in it went
    # unjudged and uncounted for as long as the slot was split.
    env = {**ENV, "GIFTWIRE_RISK_ENABLED": "1", "GIFTWIRE_BOT_ACTIONS_PER_S": "3",
           "GIFTWIRE_BOT_WINDOW_S": "1", "GIFTWIRE_RISK_TICK_MS": "50",
           "GIFTWIRE_RISK_ENGINE_TICK_MS": "50"}
    srv = start("serve", cluster[0].url, None, env)
    cs = clients(cluster)
    async with Admin(srv) as admin:
        mover, bot = f"mv{time.time_ns() % 10**9}", f"bt{time.time_ns() % 10**9}"
        for u in (mover, bot):
            await admin.user(u)
        cm, cb = await RawConn.open(srv, mover), await RawConn.open(srv, bot)

        async def act(conn: RawConn, n: int, gap_s: float, tag: str) -> None:
            for i in range(n):
                await conn.send("gift.send", id=f"{tag}{i}", gift_id=f"{tag}{i}", to="nobody-at-all",
                                asset="note.do", count=1)
                await asyncio.sleep(gap_s)

        await act(cm, 2, 0.6, "w")  # slowly: its recorded and judged actions exist, no ban
        uk = keys.user(mover)
        slot = int(cs[0].execute_command("CLUSTER KEYSLOT", uk.risk_actions))
        src = owner(cs, slot)
        for _ in range(100):
            if cs[src].exists(uk.risk_actions, uk.risk_judged) == 2:
                break
            await asyncio.sleep(0.1)
        assert cs[src].exists(uk.risk_actions, uk.risk_judged) == 2
        # split: its two risk keys on two masters, so each call on them gets TRYAGAIN
        src, dst = split_slot(cluster, cs, slot, uk.risk_judged)
        try:
            # the mover in every batch the engine reads (its signals flushed every 50 ms)
            await asyncio.gather(act(cm, 120, 0.025, "m"), act(cb, 20, 0.1, "b"))
            notices = await cb.wait_for(lambda f: f["type"] == "risk.notice", timeout_s=10)
            # judged while the slot was split
            assert (notices[0]["action"], notices[0]["reason"]) == ("banned", "automation_rate")
        finally:
            finish_move(cluster, cs, slot, src, dst)
        for conn in (cm, cb):
            await conn.close()


async def test_a_decision_lifted_unheard_is_read_again_after_the_users_slot_moves(
        cluster: list[EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """A lift the gateway never heard (published mid-move) is read again once it follows the slot."""
    # The gateway's cached view comes from the user's channel, which is not in the log: after it
    # follows the channel to the slot's new owner it reads the user's decisions again, so a lift it
    # missed no longer keeps refusing their gifts until they reconnect.
    env = {**ENV, "GIFTWIRE_RISK_ENABLED": "1"}
    srv = start("serve", cluster[0].url, None, env)
    cs = clients(cluster)
    async with Admin(srv) as admin:
        s, r = await admin.pair(5)
        uk = keys.user(s)
        slot = int(cs[0].execute_command("CLUSTER KEYSLOT", uk.profile))
        far = int(time.time() * 1000) + 86_400_000
        cs[owner(cs, slot)].hset(uk.profile, "risk_restricted_until", far)  # read on connect
        conn = await RawConn.open(srv, s)
        await conn.send("gift.send", id="g0", gift_id="g0", to=r, asset="note.do", count=1)
        (refused,) = await conn.wait_for(lambda f: f.get("id") == "g0")
        assert refused["code"] == "risk_restricted"
        cs[owner(cs, slot)].hdel(uk.profile, "risk_restricted_until")  # lifted, never told
        migrate_slot(cluster, cs, slot)
        deadline = time.monotonic() + 15
        for i in range(1, 1000):
            await conn.send("gift.send", id=f"g{i}", gift_id=f"g{i}", to=r, asset="note.do",
                            count=1)
            (got,) = await conn.wait_for(lambda f, rid=f"g{i}": f.get("id") == rid)
            if got["type"] == "gift.confirmed":
                break
            assert got.get("code") in ("risk_restricted", "unavailable"), got
            assert time.monotonic() < deadline, "the lift was never read again"
            await asyncio.sleep(0.3)
        await conn.close()


async def test_a_moving_partition_shows_only_itself_unheld(cluster: list[EmbeddedValkey],
                                                          start: Callable[..., Proc]) -> None:
    """While one settlement partition's slot is half moved, the other partitions stay shown held."""
    # The gateway's sample of every partition was one pipeline: the moving slot failed it, and every
    # partition's `giftwire_partition_held` read 0 (page someone) though workers held them all.
    srv = start("serve", cluster[0].url, None, ENV)
    cs = clients(cluster)

    async def held(p: int) -> float:
        return await metric(srv, f'giftwire_partition_held{{partition="{p}"}}')

    for _ in range(100):
        if all([await held(p) == 1 for p in range(3)]):
            break
        await asyncio.sleep(0.1)
    stream = keys.settle_stream(1)
    slot = int(cs[0].execute_command("CLUSTER KEYSLOT", stream))
    src, dst = split_slot(cluster, cs, slot, stream)
    try:
        for _ in range(8):  # two seconds of samples (every 250 ms)
            assert (await held(0), await held(2)) == (1, 1)
            await asyncio.sleep(0.25)
    finally:
        finish_move(cluster, cs, slot, src, dst)


async def test_the_audit_during_a_slot_move_says_so_and_gives_no_verdict(
        cluster: list[EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """`giftwire audit` meeting a half-moved user slot exits 2 saying a slot is moving: no verdict."""
    srv = start("serve", cluster[0].url, None, ENV)
    cs = clients(cluster)
    async with Admin(srv) as admin:
        s, _ = await admin.pair(5)
        uk = keys.user(s)
        slot = int(cs[0].execute_command("CLUSTER KEYSLOT", uk.balances))
        src, dst = split_slot(cluster, cs, slot, uk.balances)
        try:
            code, out = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
            assert code == 2 and "while a slot is moving" in out, out
        finally:
            finish_move(cluster, cs, slot, src, dst)
        code, out = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
        assert code == 0, out
