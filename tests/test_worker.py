"""The settlement worker's loop on a real server: a batch is acknowledged (and deleted from
its stream) with the worker's next read, so nothing it applied stays pending."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis

from protocol.client import Client
from server.store import keys
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc


async def test_applied_batches_leave_the_stream_with_the_next_read(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """60 gifts from 3 senders in small batches: each confirmed once, and moments later the
    settlement stream holds no entry and none is pending (acknowledged, then deleted)."""
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
