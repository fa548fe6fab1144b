"""A bounded frame fuzz against a real server: every request with a readable id gets exactly
one reply, frames without one get exactly one id-less error, no seq comes twice, and the
cards are all still there."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from protocol.errors import should_reconnect
from tests.support import Admin, Proc, RawConn, uid

FRAMES = 600  # under the bad-frame budget (1,000 per 10 s), so the connection stays open
SEED = 20261123


def fuzz_frames(rng: random.Random, recipient: str) -> list[tuple[str | bytes, bool]]:
    """(frame, whether its reply carries an id); ids are unique so replies map to frames."""
    gift_ids = [f"fz{i}" for i in range(6)]  # few, so sends collide: replays and conflicts
    out: list[tuple[str | bytes, bool]] = []
    for i in range(FRAMES):
        rid = f"f{i}"
        pick = rng.randrange(10)
        frame: Any
        if pick == 0:
            out.append(("".join(rng.choice("{}[]\":,ab1 \\") for _ in range(rng.randrange(1, 40))),
                        False))
            continue
        if pick == 1:
            out.append((bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16))), False))
            continue
        if pick == 2:
            frame = rng.choice([1, "x", [], None, [{"type": "ping", "id": rid}]])
            out.append((orjson.dumps(frame).decode(), False))
            continue
        if pick == 3:  # an unreadable id: the error cannot name the request
            frame = {"type": "ping", "id": rng.choice(["", "a b", "x" * 65, 7, "é"])}
            out.append((orjson.dumps(frame).decode(), False))
            continue
        frame = rng.choice([
            {"type": "ping", "id": rid},
            {"type": "balance.get", "id": rid},
            {"type": "nope", "id": rid},
            {"type": "gift.send", "id": rid, "gift_id": rng.choice(gift_ids), "to": recipient,
             "asset": "note.do", "count": rng.randrange(1, 4)},
            {"type": "gift.send", "id": rid, "gift_id": rng.choice(gift_ids), "to": recipient,
             "asset": rng.choice(["note.do", "coin", "note.zz"]), "count": rng.choice([0, -1, 10**18, "3"])},
            {"type": "gift.send", "id": rid, "gift_id": "g", "to": recipient, "asset": "note.do"},
            {"type": "gift.accept", "id": rid, "offer_id": f"{recipient}:{rng.randrange(99)}"},
            {"type": "gift.decline", "id": rid, "offer_id": "no-colon"},
            {"type": "auth", "id": rid, "token": "v1.x.1.y"},
            {"type": "ping", "id": rid, "extra": True},
        ])
        out.append((orjson.dumps(frame).decode(), True))
    return out


async def test_frame_fuzz_one_reply_per_request(server: Proc, admin: Admin) -> None:
    """600 mixed frames from two connections of one user: one reply per readable id, no seq twice."""
    # Garbage, binary, wrong shapes and colliding gift ids, sent without waiting. Each reply describes its own
    # request; each unreadable frame gets one id-less error.
    s, r = await admin.pair(20)
    frames = fuzz_frames(random.Random(SEED), r)
    conns = [await RawConn.open(server, s), await RawConn.open(server, s)]
    watcher = await RawConn.open(server, r)
    sent: dict[str, dict[str, Any]] = {}
    for i, (frame, has_id) in enumerate(frames):
        await conns[i % 2].ws.send(frame)
        if has_id:
            sent[f"f{i}"] = {"conn": i % 2, **orjson.loads(frame)}
    for rid, req in sent.items():  # bounded: each wait_for has its own timeout
        await conns[req["conn"]].wait_for(lambda f, rid=rid: f.get("id") == rid, timeout_s=30)
    await asyncio.sleep(0.5)
    for k, conn in enumerate(conns):
        replies = [f for f in conn.frames if "id" in f]
        assert sorted(f["id"] for f in replies) == sorted(x for x, q in sent.items() if q["conn"] == k)
        idless = [f for f in conn.frames if f["type"] == "error" and "id" not in f]
        assert len(idless) == sum(not has_id for i, (_, has_id) in enumerate(frames) if i % 2 == k)
        assert conn.seqs_once()
    assert watcher.seqs_once()
    # each confirmation describes its own request; a conflict names a request that differs
    replies = [f for c in conns for f in c.frames if "id" in f]
    recorded: dict[str, int] = {}
    for f in (f for f in replies if f["type"] == "gift.confirmed"):
        req = sent[f["id"]]
        assert (f["gift_id"], f["count"], f["to"]) == (req["gift_id"], req["count"], req["to"])
        assert recorded.setdefault(f["gift_id"], f["count"]) == f["count"]
    # the recorded parameters of a gift id are those of every request not told conflict
    # (confirmed or rejected by a rule: a rejection is recorded too)
    settled = [(f, sent[f["id"]]) for f in replies
               if f["type"] in ("gift.confirmed", "gift.rejected") and sent[f["id"]]["type"] == "gift.send"]
    won: dict[str, set[int]] = {}
    for f, req in settled:
        if f.get("code") != "gift_id_conflict":
            won.setdefault(req["gift_id"], set()).add(req["count"])
    assert all(len(counts) == 1 for counts in won.values()), won
    conflicts = [(f, req) for f, req in settled if f.get("code") == "gift_id_conflict"]
    assert conflicts, "the fuzz sent no colliding gift id: the check below would be empty"
    for f, req in conflicts:
        assert req["count"] not in won[req["gift_id"]], (f, req)
    # a gift either moved or did not: every card is in one of the two balances
    moved = sum((await admin.balances(r)).values())
    assert sum((await admin.balances(s)).values()) + moved == 20
    assert sum(recorded.values()) == moved
    for conn in (*conns, watcher):
        await conn.close()


async def test_invalid_utf8_closes_with_1007(server: Proc) -> None:
    """A non-UTF-8 text frame closes the connection with 1007, a code the close-code table lists as final."""
    async with connect(f"{server.ws}?token={server.token(uid())}", compression=None) as ws:
        await ws.recv()  # welcome
        # websockets refuses to send bad UTF-8 as text; hand-build the frame: FIN + text, masked
        payload = b"\xff\xfe"
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        ws.transport.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1007
    assert not should_reconnect(1007)
