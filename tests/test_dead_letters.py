"""Poison entries: bounded attempts, a dead-letter stream, metrics, the audit, retry and void."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import redis

from protocol.client import Client
from server.store import keys
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, metric, run_audit

FAST_RETRY = {"GIFTWIRE_CLAIM_IDLE_MS": "100", "GIFTWIRE_SETTLE_ATTEMPTS_MAX": "3"}


def raw_redis(vk: EmbeddedValkey) -> redis.Redis:
    return redis.Redis(unix_socket_path=vk.url.removeprefix("unix://"), decode_responses=True)


async def dead_letters(admin: Admin, total: int, timeout_s: float = 15.0) -> dict[str, Any]:
    """The dead-letter listing once it holds `total` entries (bounded wait)."""
    for _ in range(int(timeout_s / 0.1)):
        page: dict[str, Any] = await admin.call("GET", "/dead-letters")
        if page["total"] == total:
            return page
        await asyncio.sleep(0.1)
    raise TimeoutError(f"dead letters never reached {total}: {page}")


async def test_poison_entry_set_aside_after_bounded_attempts(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """An entry whose script always fails is tried settle_attempts_max times, then dead-lettered."""
    # It is set aside with its error; /metrics counts it, the audit lists it, retry puts it back (and it fails
    # again), void removes it; both are logged, naming the gift.
    srv, vk = own_server(FAST_RETRY)
    async with Admin(srv) as admin:
        s, r = await admin.pair(10)
        # a count no gateway would let through: the sender's step refuses it as a broken invariant
        raw_redis(vk).xadd(keys.settle_stream(0), {"kind": "send", "user": s, "gift_id": "bad1",
                                                   "to": r, "asset": "note.do",
                                                   "count": str(10**20), "room": ""})
        page = await dead_letters(admin, 1)
        (dead,) = page["dead_letters"]
        assert dead["attempts"] == 3 and "bad integer" in dead["error"], dead
        assert dead["fields"]["gift_id"] == "bad1"
        assert raw_redis(vk).xpending(keys.settle_stream(0), keys.SETTLE_GROUP)["pending"] == 0
        assert await metric(srv, "giftwire_dead_lettered_total") == 1
        logged = [orjson.loads(x) for x in srv.log_path.read_text().splitlines()
                  if x.startswith("{")]
        buried = [x for x in logged if "dead-lettered" in x["msg"]]
        assert buried and buried[0]["transfer_id"] == f"{s}:bad1"  # the log names the gift
        # and so does every line on the way there: the step's failure, each attempt
        failing = [x for x in logged if "entry failed" in x["msg"] or "attempt" in x["msg"]]
        assert len(failing) >= 4, failing
        assert all(x.get("transfer_id") == f"{s}:bad1" for x in failing), failing
        code, out = await run_audit(vk.url)
        assert code == 0 and "dead letters: 1" in out and "bad1" not in out and s in out, out

        retried = await admin.call("POST", f"/dead-letters/0/{dead['id']}/retry")
        assert retried["retried"] == dead["id"]
        again = (await dead_letters(admin, 1))["dead_letters"][0]
        assert again["id"] != dead["id"] and again["attempts"] == 3
        voided = await admin.call("POST", f"/dead-letters/0/{again['id']}/void")
        assert voided == {"voided": again["id"], "outcome": "nothing_moved"}
        await dead_letters(admin, 0)
        assert await admin.balances(s) == {"note.do": 10}
        missing = await admin.call("POST", f"/dead-letters/0/{again['id']}/void", ok=False)
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
        # the operator's hands are on the record, each line naming the gift
        logged = [orjson.loads(x) for x in srv.log_path.read_text().splitlines()
                  if x.startswith("{")]
        by_hand = [x for x in logged if "by an operator" in x["msg"]]
        assert [("retried" in x["msg"], x.get("transfer_id")) for x in by_hand] == [
            (True, f"{s}:bad1"), (False, f"{s}:bad1")], by_hand


async def test_malformed_entry_dead_lettered_at_once(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """An entry no worker can read is set aside on the first attempt, not retried."""
    srv, vk = own_server(FAST_RETRY)
    async with Admin(srv) as admin:
        raw_redis(vk).xadd(keys.settle_stream(0), {"kind": "teleport", "user": "x"})
        (dead,) = (await dead_letters(admin, 1))["dead_letters"]
        assert dead["attempts"] == 1 and "malformed" in dead["error"]


async def test_with_the_default_attempts_a_poison_gift_is_answered_before_its_request_times_out(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """With the default attempts, a gift that cannot settle is answered `settlement_failed`, not `timeout`."""
    # With the default GIFTWIRE_SETTLE_ATTEMPTS_MAX, a request timeout a few retry intervals long (the
    # defaults: 60 s and 15 s; here 3.5 s and 1 s) outlasts the tries. With 5 attempts, 4 intervals, the
    # request timed out first and never heard why.
    srv, _ = own_server({"GIFTWIRE_FAULT": "poison_credit", "GIFTWIRE_CLAIM_IDLE_MS": "1000",
                         "GIFTWIRE_REQUEST_TIMEOUT_S": "3.5"})
    async with Admin(srv) as admin:
        s, r = await admin.pair(10)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            reply = await a.send_gift(r, "note.do", 1, gift_id="poison-default", timeout_s=20)
            assert (reply["type"], reply["code"]) == ("error", "settlement_failed"), reply


async def test_gift_stuck_in_escrow_is_refunded_by_void(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Voiding the dead letter of a gift stuck in escrow refunds it with gift.rejected operator_voided."""
    # The recipient step always fails: the sender's request is answered settlement_failed and the cards wait
    # in escrow (the audit shows it); after the void the audit ends clean.
    srv, vk = own_server({**FAST_RETRY, "GIFTWIRE_FAULT": "poison_credit"})
    async with Admin(srv) as admin:
        s, r = await admin.pair(10)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            reply = await a.send_gift(r, "note.do", 4, gift_id="poison-1", timeout_s=20)
            assert (reply["type"], reply["code"], reply["temporary"]) == (
                "error", "settlement_failed", True)
            assert await admin.balances(s) == {"note.do": 6}
            code, out = await run_audit(vk.url)
            assert code == 0 and "(1 in flight)" in out and "dead letters: 1" in out, out
            (dead,) = (await dead_letters(admin, 1))["dead_letters"]
            voided = await admin.call("POST", f"/dead-letters/0/{dead['id']}/void")
            assert voided["outcome"] == "refunded"
            told = await a.next_event("gift.rejected")
            assert (told["code"], told["balance"]) == ("operator_voided", 10)
            # the same gift id sent again is answered from the record, not settled anew
            again = await a.send_gift(r, "note.do", 4, gift_id="poison-1")
            assert (again["type"], again["code"]) == ("gift.rejected", "operator_voided")
        assert await admin.balances(s) == {"note.do": 10}
        assert await admin.balances(r) == {}
        code, out = await run_audit(vk.url)
        assert code == 0 and "(0 in flight)" in out and "dead letters: 0" in out, out


async def test_a_request_sent_again_while_its_dead_letter_waits_is_not_run_again(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """Resending a dead-lettered gift is answered `settlement_failed` at once; no second dead letter."""
    # Once voided, the same gift id answers `operator_voided`; voiding again is 404, and a void of a gift
    # settled before says `already_<state>`.
    srv, vk = own_server({**FAST_RETRY, "GIFTWIRE_FAULT": "poison_credit"})
    async with Admin(srv) as admin:
        s, r = await admin.pair(10)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            first = await a.send_gift(r, "note.do", 2, gift_id="poison-again", timeout_s=20)
            assert first.get("code") == "settlement_failed", first
            (dead,) = (await dead_letters(admin, 1))["dead_letters"]
            for _ in range(2):
                again = await a.send_gift(r, "note.do", 2, gift_id="poison-again", timeout_s=5)
                assert (again["type"], again["code"]) == ("error", "settlement_failed"), again
            await asyncio.sleep(0.5)  # past the retry interval: nothing was left to re-run
            page = await dead_letters(admin, 1)
            assert [d["id"] for d in page["dead_letters"]] == [dead["id"]]
            assert await metric(srv, "giftwire_dead_lettered_total") == 1
            # two operators at once (a void racing a retry): one acts, the other is told
            both = await asyncio.gather(
                admin.call("POST", f"/dead-letters/0/{dead['id']}/void", ok=False),
                admin.call("POST", f"/dead-letters/0/{dead['id']}/retry", ok=False))
            acted = [x for x in both if x.status_code == 200]
            assert len(acted) == 1, [x.json() for x in both]
            other = next(x for x in both if x.status_code != 200)
            assert (other.status_code, other.json()["error"]["code"]) in (
                (409, "dead_letter_busy"), (404, "not_found")), other.json()
            if "voided" not in acted[0].json():  # the retry won: it fails into a new dead letter
                (dead,) = (await dead_letters(admin, 1))["dead_letters"]
                acted = [await admin.call("POST", f"/dead-letters/0/{dead['id']}/void", ok=False)]
            assert acted[0].json()["outcome"] == "refunded"
            after = await a.send_gift(r, "note.do", 2, gift_id="poison-again")
            assert (after["type"], after["code"]) == ("gift.rejected", "operator_voided")
        flow_void = await admin.call("POST", f"/dead-letters/0/{dead['id']}/void", ok=False)
        assert flow_void.status_code == 404
        assert await admin.balances(s) == {"note.do": 10}
        # an entry of a gift settled before, voided by hand: it did nothing, and says so
        raw_redis(vk).xadd(keys.dead_letters(0), {"entry": "0-1", "error": "x", "attempts": "1",
                                                   "at": "0", "fields": orjson.dumps(
            {"kind": "send", "user": s, "gift_id": "poison-again", "to": r, "asset": "note.do",
             "count": "2", "room": ""}).decode()})
        (stale,) = (await dead_letters(admin, 1))["dead_letters"]
        done = await admin.call("POST", f"/dead-letters/0/{stale['id']}/void")
        assert done["outcome"] == "already_refunded"
        assert await admin.balances(s) == {"note.do": 10}


async def test_a_failing_entry_holds_back_the_same_users_later_requests(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """A user's later gift waits until their earlier, failing one is set aside; another user's is not held."""
    # A user's requests settle in order.
    srv, _ = own_server({**FAST_RETRY, "GIFTWIRE_FAULT": "poison_credit"})
    async with Admin(srv) as admin:
        s, r = await admin.pair(10)
        s2, r2 = await admin.pair(10)
        async with await Client.connect(srv.ws, srv.token(s)) as a, \
                await Client.connect(srv.ws, srv.token(s2)) as b:
            first = asyncio.create_task(a.send_gift(r, "note.do", 1, gift_id="poison-2", timeout_s=20))
            await asyncio.sleep(0.05)  # its first attempt fails in a batch of its own
            second = asyncio.create_task(a.send_gift(r, "note.do", 2, gift_id="fine-2", timeout_s=20))
            other = await b.send_gift(r2, "note.do", 3)
            assert other["type"] == "gift.confirmed" and not first.done() and not second.done()
            settled = await second
            assert first.done()  # the later request settled only after the earlier was set aside
            failed = await first
            assert (failed["type"], failed["code"]) == ("error", "settlement_failed")
            assert settled["type"] == "gift.confirmed"
            assert settled["seq"] > 0 and a.last_seq == settled["seq"]
        assert await admin.balances(r) == {"note.do": 2}


async def test_a_failed_entry_holds_back_no_entry_of_another_partition_with_its_id(
        own_server: Callable[..., tuple[Proc, EmbeddedValkey]]) -> None:
    """An entry failing in one partition does not hold back the other partition's entry with the same id."""
    # Two partitions' streams give out the same ids; the other entry settles and is acknowledged.
    srv, vk = own_server({**FAST_RETRY, "GIFTWIRE_PARTITIONS": "2"})
    async with Admin(srv) as admin:
        while True:  # a sender on partition 1 (users map to partitions by a hash)
            s, r = await admin.pair(10)
            if keys.partition_of(s, 2) == 1:
                break
        same = "99999999999999-1"  # (ahead of any id the gateway's appends got)
        raw = raw_redis(vk)
        both = raw.pipeline(transaction=True)  # one MULTI: the worker reads them in one batch
        both.xadd(keys.settle_stream(0), {"kind": "teleport", "user": "x"}, id=same)
        both.xadd(keys.settle_stream(1), {"kind": "send", "user": s, "gift_id": "twin", "to": r,
                                          "asset": "note.do", "count": "2", "room": ""}, id=same)
        both.execute()
        (dead,) = (await dead_letters(admin, 1))["dead_letters"]
        assert "malformed" in dead["error"]
        for _ in range(100):  # settled (its record says so) and acknowledged
            if (raw.hget(keys.user(s).transfers, f"{s}:twin") is not None
                    and raw.xpending(keys.settle_stream(1), keys.SETTLE_GROUP)["pending"] == 0):
                break
            await asyncio.sleep(0.1)
        assert raw.xpending(keys.settle_stream(1), keys.SETTLE_GROUP)["pending"] == 0
        record = raw.hget(keys.user(s).transfers, f"{s}:twin")
        assert await admin.balances(r) == {"note.do": 2}, record
        assert "settlement loop failed" not in srv.log_path.read_text()
