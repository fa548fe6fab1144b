"""After a random concurrent workload `giftwire audit` passes; on broken state it names what broke."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

import redis

from protocol.client import Client
from server.store import keys
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, run_audit, uid

OwnServer = Callable[..., tuple[Proc, EmbeddedValkey]]


async def answer_offers(client: Client, rnd: random.Random, stop: asyncio.Event) -> None:
    """A confirming recipient who accepts or declines every offer."""
    while not stop.is_set():
        try:
            offer = await client.next_event("gift.offer", timeout_s=0.2)
        except TimeoutError:
            continue
        action = "gift.accept" if rnd.random() < 0.6 else "gift.decline"
        await client.request(action, offer_id=offer["transfer_id"])


async def test_random_workload_then_audit(server: Proc, admin: Admin, valkey: EmbeddedValkey) -> None:
    """300 random sends (with replays, offers, bans) over 2 workers; every gift settles once."""
    rnd = random.Random(7)
    users = [uid("w") for _ in range(12)]
    for i, u in enumerate(users):
        await admin.user(u, real_name_verified=i != 0, vip=i % 3 == 0, confirm_gifts=i % 4 == 1,
                         banned=i == 11)
        await admin.grant(u, 40)
    for a in users:
        for b in users:
            if a != b:
                await admin.follow(a, b)
    clients = {u: await Client.connect(server.ws, server.token(u)) for u in users}
    stop = asyncio.Event()
    answerers = [asyncio.create_task(answer_offers(clients[u], random.Random(i), stop))
                 for i, u in enumerate(users) if i % 4 == 1]

    sent: list[tuple[str, str]] = []

    async def one(k: int) -> dict[str, object]:
        sender = rnd.choice(users)
        to = rnd.choice([u for u in users if u != sender])
        gift_id = rnd.choice(sent)[1] if sent and rnd.random() < 0.1 else f"g{k}"
        sent.append((sender, gift_id))
        return await clients[sender].send_gift(to, "note.do", rnd.randint(1, 5), gift_id=gift_id)

    replies = await asyncio.gather(*(one(k) for k in range(300)))
    await asyncio.sleep(1.0)  # let the answerers finish
    stop.set()
    await asyncio.gather(*answerers)

    codes = Counter(str(x.get("code", x["type"])) for x in replies)
    assert codes["gift.confirmed"] > 0 and codes["daily_limit"] > 0, codes
    assert codes["real_name_required"] > 0 and codes["recipient_banned"] > 0, codes
    for c in clients.values():
        seen = [e["transfer_id"] for e in c.events() if e["type"] == "gift.received"]
        assert len(seen) == len(set(seen)), "a gift was received twice"
        await c.close()
    code, out = await run_audit(valkey.url)
    assert code == 0, out


async def test_audit_names_broken_invariants(own_server: OwnServer) -> None:
    """Cards created outside a transfer, or a negative balance, fail the audit by name."""
    srv, vk = own_server()
    async with Admin(srv) as admin:
        s, r = await admin.pair(10)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            await a.send_gift(r, "note.do", 2)
        assert (await run_audit(vk.url))[0] == 0
        raw = redis.Redis(unix_socket_path=str(vk.socket))
        raw.hincrby(keys.user(r).balances, "note.do", 5)
        code, out = await run_audit(vk.url)
        assert code == 1 and "FAIL sum_zero" in out and "note.do sums to 5" in out, out
        raw.hset(keys.user(r).balances, "note.do", -3)
        code, out = await run_audit(vk.url)
        assert code == 1 and "FAIL no_negative_balance" in out, out
        raw.hset(keys.user(r).balances, "note.do", 2)
        raw.hdel(keys.user(r).transfers, f"{s}:" + (await admin.call(
            "GET", f"/users/{s}/ledger"))["entries"][0]["transfer_id"].split(":", 1)[1])
        code, out = await run_audit(vk.url)
        assert code == 1 and "FAIL settled_once" in out, out
        raw.close()


async def test_the_audit_names_a_card_moved_through_escrow_without_a_transfer(
        own_server: OwnServer) -> None:
    """A card moved from one user to another through escrow with no record fails escrow_matches_in_flight."""
    # Each account still sums to zero and the totals of escrow and of gifts in flight agree: only the
    # comparison slot by slot sees it, and names both users.
    srv, vk = own_server()
    async with Admin(srv) as admin:
        s, r = await admin.pair(10)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            await a.send_gift(r, "note.do", 2)
        raw = redis.Redis(unix_socket_path=str(vk.socket))
        raw.hincrby(keys.user(s).balances, "note.do", -1)
        raw.hincrby(keys.user(s).system, "escrow:note.do", 1)
        raw.hincrby(keys.user(r).system, "escrow:note.do", -1)
        raw.hincrby(keys.user(r).balances, "note.do", 1)
        raw.close()
        code, out = await run_audit(vk.url)
        assert code == 1 and "FAIL escrow_matches_in_flight" in out and "ok   sum_zero" in out, out
        assert f"{s}'s escrow holds 3 note.do" in out and f"{r}'s escrow holds -3" in out, out


async def test_the_audit_passes_while_gifts_settle(own_server: OwnServer) -> None:
    """Audits run back to back during 1,000 gifts pass; a balance broken by hand is named alone."""
    # Each user's slot is read at one instant and a disagreeing pair is read again in the steps'
    # order: a gift between its steps is not a broken invariant (it was: sum_zero, escrow and
    # settled_once failed under traffic).
    from server.app import connect
    from server.audits import full_audit

    srv, vk = own_server({"GIFTWIRE_GIFTS_PER_DAY": "1000", "GIFTWIRE_PAIR_GIFTS_PER_DAY": "1000"})
    async with Admin(srv) as admin:
        pairs = [await admin.pair(100, recipient={"confirm_gifts": i % 4 == 0}) for i in range(40)]
        bystander = uid("by")
        await admin.user(bystander)
    clients = {u: await Client.connect(srv.ws, srv.token(u)) for pair in pairs for u in pair}
    stop = asyncio.Event()
    answerers = [asyncio.create_task(answer_offers(clients[r], random.Random(i), stop))
                 for i, (_, r) in enumerate(pairs) if i % 4 == 0]

    async def sender(s: str, r: str) -> None:
        for k in range(25):
            await clients[s].send_gift(r, "note.do", 1 + k % 3, gift_id=f"t{k}")

    traffic = asyncio.gather(*(sender(s, r) for s, r in pairs))
    redis_client = connect(vk.url)
    audits = []
    broken = []  # audits after a bystander's balance was raised by hand, mid-traffic
    broken_yet = False
    try:
        while not traffic.done():
            result, text = await full_audit(redis_client)
            if not broken_yet:
                audits.append((result.ok, result.in_flight, text))
                # broken by hand once audits have passed with gifts in flight
                if len(audits) >= 3 and any(flying for _, flying, _ in audits):
                    await redis_client.hincrby(keys.user(bystander).balances, "note.do", 5)
                    broken_yet = True
            else:
                broken.append(dict(result.problems))
        await traffic
        if broken_yet and not broken:  # the gifts ran out first: the offers still settle
            broken.append(dict((await full_audit(redis_client))[0].problems))
        await asyncio.sleep(1.0)  # the answerers answer the last offers
        stop.set()
        await asyncio.gather(*answerers)
        await redis_client.hincrby(keys.user(bystander).balances, "note.do", -5)
        final, text = await full_audit(redis_client)
    finally:
        await redis_client.aclose()
    for c in clients.values():
        await c.close()
    assert len(audits) >= 3 and any(flying for _, flying, _ in audits), [a[:2] for a in audits]
    assert all(ok for ok, _, _ in audits), next(t for ok, _, t in audits if not ok)
    # under traffic the audit still names what is broken, and only that
    assert broken and all(p == {"sum_zero": ["note.do sums to 5 over all accounts"]}
                          for p in broken), broken
    assert final.ok and final.transfers == 1000, text
