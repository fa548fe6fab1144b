"""Chaos, bounded: gifts through 2 gateways and 3 workers on a 3-partition settlement stream
while a gateway and two workers (one mid-transfer) are SIGKILLed and replaced. Clients
reconnect with resume and retry unanswered sends with the same gift id. Every accepted gift
resolves exactly once, every client sees each of its events exactly once and in order, and
the audit passes."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from protocol.client import Client
from server.store.embedded import EmbeddedValkey, start_cluster
from tests.support import Admin, Proc, run_audit, short_tmpdir, uid

FAST_CLAIM = {"GIFTWIRE_CLAIM_IDLE_MS": "800", "GIFTWIRE_GIFTS_PER_DAY": "30", "GIFTWIRE_PARTITIONS": "3",
              "GIFTWIRE_VIP_BONUS_GIFTS": "0", "GIFTWIRE_PAIR_GIFTS_PER_DAY": "10"}
SENDS = 32  # per sender: 30 allowed a day, 2 refused



class User:
    """One user's client, which survives gateway deaths by reconnecting with resume."""

    def __init__(self, name: str, gateways: list[Proc]) -> None:
        self.name = name
        self.gateways = gateways
        self.seqs: list[int] = []
        self.received: list[str] = []
        self.client: Client | None = None

    def url(self) -> str:
        alive = [g for g in self.gateways if g.proc and g.proc.poll() is None]
        return random.choice(alive or self.gateways).ws

    def on_event(self, msg: dict[str, object]) -> None:
        if msg["type"] == "gift.received":
            self.received.append(str(msg["transfer_id"]))

    async def connect(self) -> None:
        g = self.gateways[0]
        self.client = await Client.connect(self.url(), g.token(self.name), on_event=self.on_event,
                                           on_seq=self.seqs.append, since=0,
                                           auto_reconnect=True, urls=self.url)

    async def ensure(self) -> Client:
        """The client reconnects by itself; wait for it, and check it resumed."""
        assert self.client is not None
        await self.client.connected()
        assert self.client.welcome["recovered"] is True  # it resumes: since= is always sent
        return self.client

    async def send_until_answered(self, to: str, gift_id: str, deadline: float) -> dict[str, object]:
        while time.monotonic() < deadline:
            client = await self.ensure()
            try:
                return await client.send_gift(to, "note.do", 1, gift_id=gift_id, timeout_s=3)
            except (ConnectionError, TimeoutError, OSError):
                await asyncio.sleep(0.1)  # the gateway died or the worker is being replaced
        raise AssertionError(f"{self.name}:{gift_id} never answered")


@pytest.fixture(params=["one-server", "3-master-cluster"])
def backend(request: pytest.FixtureRequest, fresh_valkey: Callable[..., EmbeddedValkey]
            ) -> Iterator[tuple[str, dict[str, str]]]:
    """The Redis under test and the settings that go with it."""
    if request.param == "one-server":
        yield fresh_valkey().url, {}
        return
    nodes = start_cluster(3, short_tmpdir())
    yield nodes[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"}
    for node in nodes:
        node.stop()


async def test_chaos_kills_and_restarts(backend: tuple[str, dict[str, str]],
                                        start: Callable[..., Proc]) -> None:
    """SIGKILL a gateway and a worker mid-workload; nothing is lost, doubled or reordered."""
    url, extra = backend
    FAST = {**FAST_CLAIM, **extra}
    g1 = start("gateway", url, None, FAST)
    g2 = start("gateway", url, g1.data_dir, FAST)
    # this one SIGKILLs itself right after the escrow step of the first gift it takes; started
    # first, it holds a partition before the others share them out, so it takes one for sure
    doomed = start("worker", url, g1.data_dir, {**FAST, "GIFTWIRE_FAULT": "kill_after_escrow"})
    await asyncio.sleep(1.5)  # alone, it takes the partitions; the others get theirs from it
    w1 = start("worker", url, g1.data_dir, FAST)
    start("worker", url, g1.data_dir, FAST)
    gateways = [g1, g2]
    admin = Admin(g2)
    rnd = random.Random(11)
    senders = [uid("cs") for _ in range(8)]
    recipients = [uid("cr") for _ in range(6)]
    try:
        for s in senders:
            await admin.user(s, real_name_verified=True)
            await admin.grant(s, 100)
        for r in recipients:
            await admin.user(r)
        await admin.call("POST", "/bulk", {"follows": [
            {"follower": s, "followee": r, "since_ms": 0} for s in senders for r in recipients]})
        users = {n: User(n, gateways) for n in senders + recipients}
        for u in users.values():
            await u.connect()

        deadline = time.monotonic() + 60
        replies: dict[str, dict[str, object]] = {}

        async def sender(name: str) -> None:
            for k in range(SENDS):
                to = recipients[(senders.index(name) + k) % len(recipients)]
                replies[f"{name}:g{k}"] = await users[name].send_until_answered(to, f"g{k}", deadline)
                await asyncio.sleep(rnd.uniform(0.01, 0.05))

        async def chaos() -> None:
            await asyncio.sleep(0.5)
            w1.signal(signal.SIGKILL)
            g1.signal(signal.SIGKILL)
            await asyncio.sleep(1.0)
            gateways[0] = start("gateway", url, g1.data_dir, FAST)
            start("worker", url, g1.data_dir, FAST)

        await asyncio.gather(chaos(), *(sender(s) for s in senders))

        confirmed = {t for t, x in replies.items() if x["type"] == "gift.confirmed"}
        assert len(confirmed) == 8 * 30, {t: x.get("code") for t, x in replies.items()}
        assert {x["code"] for x in replies.values() if x["type"] == "gift.rejected"} == {"daily_limit"}
        assert sum(u.client.reconnects for u in users.values() if u.client) > 0, \
            "the chaos missed every client"

        settle_by = time.monotonic() + 20
        while time.monotonic() < settle_by:
            got = [t for r in recipients for t in users[r].received]
            if len(got) >= len(confirmed):
                break
            for r in recipients:
                await users[r].ensure()
            await asyncio.sleep(0.2)
        got = [t for r in recipients for t in users[r].received]
        assert sorted(got) == sorted(confirmed)  # each accepted gift delivered exactly once
        for u in users.values():
            assert u.seqs == list(range(1, len(u.seqs) + 1)), (u.name, u.seqs)
            # the client drops a repeated seq: the server sent none (none dropped, none twice)
            assert u.client is not None and u.client.duplicates == 0, u.name
        for s in senders:
            assert await admin.balances(s) == {"note.do": 70}
        code, out = await run_audit(url, extra)
        assert code == 0 and "(0 in flight)" in out, out
        assert doomed.wait() == -signal.SIGKILL, "the doomed worker took no gift"
        logs = "".join(p.read_text() for p in g1.data_dir.glob("worker-*.log"))
        assert "took over" in logs, "nobody finished the transfer the dead worker began"
    finally:
        for u in users.values():
            if u.client:
                await u.client.close()
        await admin.close()
