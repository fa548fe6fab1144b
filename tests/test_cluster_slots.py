"""Every Lua call touches one owner's slot: proven on a cluster-mode Valkey, which refuses
any script or command whose keys span slots (CROSSSLOT)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from protocol.client import Client
from server.store import keys
from server.store.embedded import EmbeddedValkey
from tests.support import DAY_MS, Admin, Proc, run_audit, uid


def test_cluster_node_refuses_cross_slot_scripts(fresh_valkey: Callable[..., EmbeddedValkey]) -> None:
    """The guard the next test relies on: a script over two users' keys is refused."""
    cluster_node = fresh_valkey(cluster=True)
    raw = redis.Redis(unix_socket_path=str(cluster_node.socket))
    with pytest.raises(redis.ResponseError, match=r"CROSSSLOT|same slot"):
        raw.eval("return redis.call('GET', KEYS[1])", 2, keys.user("a").balances,
                 keys.user("b").balances)
    raw.close()


async def test_every_step_runs_on_a_cluster_node(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc]) -> None:
    """Every step (grants, gifts, accept, decline, refunds, mentor rewards, audit) runs on a cluster node."""
    # Gifts both instant and offered. A cluster-mode node refuses a call that spans two slots (CROSSSLOT);
    # none does.
    cluster_node = fresh_valkey(cluster=True)
    srv = start("serve", cluster_node.url)
    async with Admin(srv) as admin:
        now = int(time.time() * 1000)
        s, r = await admin.pair(20, sender={"registered_at_ms": now - DAY_MS})
        mentor, picky, banned = uid("m"), uid("p"), uid("b")
        await admin.user(mentor)
        await admin.user(picky, confirm_gifts=True)
        await admin.user(banned, banned=True)
        for other in (picky, banned):
            await admin.follow(s, other)
        await admin.call("PUT", f"/users/{s}/mentor", {"mentor": mentor})
        await admin.call("PUT", "/festivals", {"days": ["2030-01-01"]})
        async with await Client.connect(srv.ws, srv.token(s)) as a, \
                await Client.connect(srv.ws, srv.token(picky)) as p:
            assert (await a.send_gift(r, "note.do", 2))["delivery"] == "instant"
            assert (await a.send_gift(banned, "note.do", 1))["code"] == "recipient_banned"
            await a.send_gift(picky, "note.do", 1)
            offer = await p.next_event("gift.offer")
            assert (await p.request("gift.accept", offer_id=offer["transfer_id"]))["type"] == "gift.received"
            await a.send_gift(picky, "note.do", 1)
            offer = await p.next_event("gift.offer")
            assert (await p.request("gift.decline", offer_id=offer["transfer_id"]))["type"] == "gift.voided"
        await admin.call("POST", "/revocations", {"id": "rv", "user": s, "asset": "note.do", "amount": 1})
        assert await admin.balances(mentor) == {"note.do": 2}
        assert (await admin.call("GET", f"/users/{s}/ledger"))["entries"]
        code, out = await run_audit(cluster_node.url)
        assert code == 0, out
        assert "CROSSSLOT" not in srv.log_path.read_text()
