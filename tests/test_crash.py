"""A worker killed between the two sides of a transfer: the next worker finishes it, once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import orjson
import redis

from protocol.client import Client
from server.store import keys
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, RawConn, run_audit


async def test_sigkill_between_steps_completes_once(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """SIGKILL after the escrow step: cards wait in escrow, then the next worker delivers each gift once."""
    valkey_only = fresh_valkey()
    url = valkey_only.url
    gateway = start("gateway", url)
    async with Admin(gateway) as admin:
        pairs = [await admin.pair(10) for _ in range(3)]
        senders = [await Client.connect(gateway.ws, gateway.token(s)) for s, _ in pairs]
        # raw frames (the Python client hides a repeated seq): a second copy would show here
        recipients = [await RawConn.open(gateway, r) for _, r in pairs]
        watchers = [await RawConn.open(gateway, s) for s, _ in pairs]
        sends = [asyncio.create_task(c.send_gift(r, "note.do", 4, timeout_s=60))
                 for c, (_, r) in zip(senders, pairs, strict=True)]
        await asyncio.sleep(0.2)

        doomed = start("worker", url, gateway.data_dir, {"GIFTWIRE_FAULT": "kill_after_escrow"})
        assert doomed.wait() == -signal.SIGKILL
        # its log: one JSON object per line, and the line about the gift names the transfer
        lines = [orjson.loads(x) for x in doomed.log_path.read_text().splitlines() if x.strip()]
        assert all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)
        fault = [x for x in lines if "fault injection" in x["msg"]]
        assert fault and fault[0]["transfer_id"].split(":")[0] in {s for s, _ in pairs}
        # the kill came after at least one escrow step and before any credit
        escrowed = sum([await admin.balances(s) == {"note.do": 6} for s, _ in pairs])
        assert escrowed >= 1
        assert [await admin.balances(r) for _, r in pairs] == [{}, {}, {}]
        code, out = await run_audit(url)
        assert code == 0 and f"({escrowed} in flight)" in out, out

        start("worker", url, gateway.data_dir, {"GIFTWIRE_CLAIM_IDLE_MS": "300"})
        replies = await asyncio.gather(*sends)
        assert [x["type"] for x in replies] == ["gift.confirmed"] * 3
        for raw in recipients:
            await raw.wait_for(lambda f: f["type"] == "gift.received")
        await asyncio.sleep(0.5)
        for raw, kind in [*((r, "gift.received") for r in recipients),
                          *((w, "gift.confirmed") for w in watchers)]:
            assert [f["type"] for f in raw.frames[1:]] == [kind] and raw.seqs_once(), raw.frames
            await raw.close()
        for c in senders:
            assert [e for e in c.events() if e["type"] in ("gift.received", "gift.confirmed")] == []
            await c.close()
        for s, r in pairs:
            assert await admin.balances(s) == {"note.do": 6}
            assert await admin.balances(r) == {"note.do": 4}
        code, out = await run_audit(url)
        assert code == 0 and "(0 in flight)" in out, out


async def test_worker_sigterm_finishes_its_batch(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """On SIGTERM mid-burst the worker acks what it took and exits 0; the next settles the rest, each once."""
    # Nothing is left pending; all 100 gifts are confirmed once.
    valkey_only = fresh_valkey()
    url = valkey_only.url
    gateway = start("gateway", url, None, {"GIFTWIRE_GIFTS_PER_DAY": "100",
                                           "GIFTWIRE_PAIR_GIFTS_PER_DAY": "100"})
    async with Admin(gateway) as admin:
        pairs = [await admin.pair(50) for _ in range(4)]
        clients = [await Client.connect(gateway.ws, gateway.token(s)) for s, _ in pairs]
        sends = [asyncio.create_task(c.send_gift(r, "note.do", 1, timeout_s=60))
                 for _ in range(25) for c, (_, r) in zip(clients, pairs, strict=True)]
        worker = start("worker", url, gateway.data_dir, {"GIFTWIRE_WORKER_BATCH_MAX": "8",
                                                        "GIFTWIRE_GIFTS_PER_DAY": "100",
                                                        "GIFTWIRE_PAIR_GIFTS_PER_DAY": "100"})
        await asyncio.sleep(0.05)
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
        raw = redis.Redis(unix_socket_path=str(valkey_only.socket), decode_responses=True)
        assert raw.xpending(keys.settle_stream(0), keys.SETTLE_GROUP)["pending"] == 0
        raw.close()
        start("worker", url, gateway.data_dir, {"GIFTWIRE_GIFTS_PER_DAY": "100",
                                                 "GIFTWIRE_PAIR_GIFTS_PER_DAY": "100"})
        replies = await asyncio.gather(*sends)
        assert [x["type"] for x in replies] == ["gift.confirmed"] * 100
        for _, r in pairs:
            assert await admin.balances(r) == {"note.do": 25}
        for c in clients:
            await c.close()
