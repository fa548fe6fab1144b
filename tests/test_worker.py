"""The settlement worker's loop on real processes: a batch is acknowledged (and deleted from
its stream) with the worker's next read, so nothing it applied stays pending; one worker
holds a partition at a time, so one user's requests settle in order however many workers
run; the partitions are shared out among the live workers and handed on when one stops."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import redis

from protocol.client import Client
from server.app import connect
from server.config import Settings
from server.settlement.leases import Leases
from server.store import keys
from server.store.embedded import EmbeddedValkey
from server.store.scripts import Scripts
from tests.support import Admin, Proc, metric


async def test_applied_batches_leave_the_stream_with_the_next_read(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """60 gifts in small batches confirm once; moments later the settlement stream is empty, none pending."""
    # From 3 senders; entries are acknowledged, then deleted.
    srv, vk = own_server({"GIFTWIRE_WORKER_BATCH_MAX": "4", "GIFTWIRE_GIFTS_PER_DAY": "100",
                          "GIFTWIRE_PAIR_GIFTS_PER_DAY": "100"})
    raw = redis.Redis(unix_socket_path=str(vk.socket), decode_responses=True)
    try:
        async with Admin(srv) as admin:
            pairs = [await admin.pair(30) for _ in range(3)]
            clients = [await Client.connect(srv.ws, srv.token(s)) for s, _ in pairs]
            try:
                replies = await asyncio.gather(*(c.send_gift(r, "note.do", 1, timeout_s=30)
                                                 for _ in range(20)
                                                 for c, (_, r) in zip(clients, pairs, strict=True)))
            finally:
                for c in clients:
                    await c.close()
            assert [x.get("code", x["type"]) for x in replies] == ["gift.confirmed"] * 60
            for _, r in pairs:
                assert await admin.balances(r) == {"note.do": 20}
        stream = keys.settle_stream(0)
        for _ in range(100):  # the last batch's acknowledgement rides the worker's next read
            if raw.xpending(stream, keys.SETTLE_GROUP)["pending"] == 0 and raw.xlen(stream) == 0:
                break
            await asyncio.sleep(0.02)
        assert raw.xpending(stream, keys.SETTLE_GROUP)["pending"] == 0
        assert raw.xlen(stream) == 0
    finally:
        raw.close()


def holders(raw: redis.Redis, partitions: int) -> list[int | None]:
    """The PID of the worker holding each partition's lease (a worker's name carries it)."""
    out: list[int | None] = []
    for p in range(partitions):
        name = raw.get(keys.settle_owner(p))
        out.append(int(str(name).rsplit("-", 2)[1]) if name else None)
    return out


async def seconds_until(check: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until `check()` held (bounded); raises TimeoutError past `timeout_s`."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not check():
        if loop.time() - t0 > timeout_s:
            raise TimeoutError("never held")
        await asyncio.sleep(0.05)
    return loop.time() - t0


async def test_one_users_gifts_settle_in_send_order_with_competing_workers(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """With 3 workers on one partition, each sender's confirmations rise in the order the gifts were sent."""
    # The workers read a gift at a time while 6 senders each send 12 gifts at once. One worker holds the
    # partition; with all three reading it, batches of one gift interleaved across workers and settled a
    # sender's gifts out of order.
    url = fresh_valkey().url
    env = {"GIFTWIRE_WORKER_BATCH_MAX": "1", "GIFTWIRE_GIFTS_PER_DAY": "100",
           "GIFTWIRE_PAIR_GIFTS_PER_DAY": "100"}
    gateway = start("gateway", url, None, env)
    for _ in range(3):
        start("worker", url, gateway.data_dir, env)
    async with Admin(gateway) as admin:
        pairs = [await admin.pair(20) for _ in range(6)]
        clients = [await Client.connect(gateway.ws, gateway.token(s)) for s, _ in pairs]
        try:
            async def burst(c: Client, r: str) -> list[dict[str, object]]:
                sends = [c.send_gift(r, "note.do", 1, gift_id=f"g{k:02}", timeout_s=30)
                         for k in range(12)]
                return list(await asyncio.gather(*sends))

            results = await asyncio.gather(*(burst(c, r) for c, (_, r) in
                                             zip(clients, pairs, strict=True)))
        finally:
            for c in clients:
                await c.close()
    for replies in results:
        assert [x["type"] for x in replies] == ["gift.confirmed"] * 12
        seqs = [int(str(x["seq"])) for x in replies]
        assert seqs == sorted(seqs), seqs  # settled in the order sent


async def test_partitions_are_shared_out_and_a_stopping_worker_hands_them_on_at_once(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """Workers share 4 partitions; a stopping worker hands its own on at once, not when its leases lapse."""
    # A lone worker holds all four; a second gets two of them; when the first stops, the second holds all four
    # at its next beat, and gifts of every partition settle again.
    vk = fresh_valkey()
    raw = redis.Redis(unix_socket_path=str(vk.socket), decode_responses=True)
    lease_s = 6.0  # a beat every 2 s
    env = {"GIFTWIRE_PARTITIONS": "4", "GIFTWIRE_PARTITION_LEASE_MS": str(int(lease_s * 1000)),
           "GIFTWIRE_GIFTS_PER_DAY": "100", "GIFTWIRE_PAIR_GIFTS_PER_DAY": "100"}
    try:
        gateway = start("gateway", vk.url, None, env)
        await asyncio.sleep(0.5)  # the gateway samples every 250 ms
        held = [f'giftwire_partition_held{{partition="{p}"}}' for p in range(4)]
        assert [await metric(gateway, h) for h in held] == [0] * 4  # no worker: nothing settles
        first = start("worker", vk.url, gateway.data_dir, env)
        await seconds_until(lambda: holders(raw, 4) == [first.pid] * 4, 5)
        await asyncio.sleep(0.5)
        assert [await metric(gateway, h) for h in held] == [1] * 4
        second = start("worker", vk.url, gateway.data_dir, env)
        await seconds_until(lambda: sorted(map(str, holders(raw, 4))) ==
                    sorted(map(str, [first.pid] * 2 + [second.pid] * 2)), 3 * lease_s)
        first.terminate()
        assert first.wait() == 0
        took = await seconds_until(lambda: holders(raw, 4) == [second.pid] * 4, lease_s)
        assert took < lease_s * 2 / 3  # released at once, taken at the next beat (≤ 2 s)
        async with Admin(gateway) as admin:
            pairs = [await admin.pair(5) for _ in range(8)]  # senders over the partitions
            for s, r in pairs:
                async with await Client.connect(gateway.ws, gateway.token(s)) as c:
                    assert (await c.send_gift(r, "note.do", 1, timeout_s=10))["type"] == \
                        "gift.confirmed"
        parts = {keys.partition_of(s, 4) for s, _ in pairs}
        assert len(parts) > 1, parts  # (8 random senders all in one partition: 1 in 2,000)
    finally:
        raw.close()


async def test_a_dead_workers_pending_gift_settles_before_its_senders_next_one(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """A gift stranded by a SIGKILLed worker settles before its sender's next gift: in order, each once."""
    # The dead worker keeps its lease until it lapses; the sender's next gift waits behind the stranded one,
    # and the next worker settles the stranded gift first.
    url = fresh_valkey().url
    env = {"GIFTWIRE_PARTITION_LEASE_MS": "1000"}
    gateway = start("gateway", url, None, env)
    async with Admin(gateway) as admin:
        s, r = await admin.pair(10)
        async with await Client.connect(gateway.ws, gateway.token(s)) as c:
            first = asyncio.create_task(c.send_gift(r, "note.do", 1, gift_id="a", timeout_s=30))
            await asyncio.sleep(0.2)  # queued (the waits below block this loop)
            doomed = start("worker", url, gateway.data_dir, {**env, "GIFTWIRE_FAULT": "kill_after_escrow"})
            assert doomed.wait() == -signal.SIGKILL
            assert await admin.balances(s) == {"note.do": 9}  # in escrow, not yet credited
            second = asyncio.create_task(c.send_gift(r, "note.do", 2, gift_id="b", timeout_s=30))
            await asyncio.sleep(0.1)  # queued behind the stranded one
            start("worker", url, gateway.data_dir, env)  # claim_idle_ms stays 15 s: the lease decides
            a, b = await first, await second
        assert (a["type"], b["type"]) == ("gift.confirmed", "gift.confirmed")
        assert a["seq"] < b["seq"]  # the stranded gift settled first
        assert await admin.balances(r) == {"note.do": 3}


async def test_a_lease_granted_unknowingly_is_read_and_a_stop_releases_every_one(
        fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """A lease whose grant reply was lost is taken at the next beat; leaving releases every lease held."""
    # The next beat takes the partition (pending entries first) instead of renewing it unread for ever.
    # Leaving releases every lease in the worker's name, known or not, and drops it from the live workers.
    vk = fresh_valkey()
    r = connect(vk.url)
    try:
        scripts = Scripts(r)
        scripts.load("server.settlement")
        leases = Leases(r, scripts, Settings(redis_url=vk.url, partitions=3), "w-lost")
        await r.set(keys.settle_owner(0), "w-lost", px=60_000)  # granted; the reply was lost
        await r.set(keys.settle_owner(2), "w-other", px=60_000)
        await leases.tend()
        assert leases.owned == {0, 1} and leases.taken == {0, 1}  # pending entries first
        assert leases.readable() == []
        leases.taken.clear()
        assert leases.readable() == [0, 1]
        await r.set(keys.settle_owner(2), "w-lost", px=60_000)  # another one it does not know
        await leases.leave()
        assert [await r.get(keys.settle_owner(p)) for p in range(3)] == [None, None, None]
        assert await r.zrange(keys.SETTLE_WORKERS, 0, -1) == []
    finally:
        await r.aclose()


async def test_a_hung_redis_is_a_stall_even_when_the_leases_lapse(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """A Valkey hung past a lease is reported as a settlement stall, not idleness, then as resumed."""
    # SIGSTOP for longer than a lease: the worker holds partitions it cannot renew, reads and settles nothing,
    # and says so as a stall past GIFTWIRE_SETTLE_STALL_ALERT_S (1 s here); once Valkey answers again it says
    # settlement resumed.
    vk = fresh_valkey()
    worker = start("worker", vk.url, None, {"GIFTWIRE_SETTLE_STALL_ALERT_S": "1"})
    assert vk.process is not None
    await asyncio.sleep(0.5)  # its leases taken and renewed once
    vk.process.send_signal(signal.SIGSTOP)
    try:
        # each call to a hung Valkey takes its 5 s timeout to fail; the 3 s lease lapses
        for _ in range(250):
            if "settlement stalled for" in worker.log_path.read_text():
                break
            await asyncio.sleep(0.1)
    finally:
        vk.process.send_signal(signal.SIGCONT)
    assert "settlement stalled for" in worker.log_path.read_text()
    for _ in range(150):
        if "settlement resumed after" in worker.log_path.read_text():
            break
        await asyncio.sleep(0.1)
    assert "settlement resumed after" in worker.log_path.read_text(), worker.log_path.read_text()
