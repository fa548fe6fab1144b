"""Bad input gets a clear error and never costs other users; auth failures close with their code."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from protocol.client import Client
from protocol.errors import ERRORS, close_code
from server.gateway.auth import make_token
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc

OwnServer = Callable[..., tuple[Proc, EmbeddedValkey]]


def malformed(i: int) -> str | bytes:
    rnd = random.Random(i)
    choices: list[str | bytes] = [
        "{not json",
        "[]",
        "null",
        '{"type": "nope", "id": "x1"}',
        '{"type": "gift.send", "id": "x2"}',
        '{"type": "gift.send", "id": "x3", "gift_id": "g", "to": "b", "asset": "note.do", "count": -5}',
        '{"type": "gift.send", "id": "x4", "gift_id": "g", "to": "b", "asset": "note.do", "count": 1e300}',
        '{"type": "ping", "id": "x5", "extra": true}',
        '{"type": "ping", "id": {"nested": 1}}',
        '{"type": "auth", "id": "x6", "token": "v1.a.1.b"}',
        "x" * 5000,
        bytes(rnd.randrange(256) for _ in range(32)),
        "",
    ]
    return choices[i % len(choices)]


async def test_hundreds_of_malformed_frames(server: Proc, admin: Admin) -> None:
    """300 bad frames each get an error reply with a known code; others keep being served."""
    s, r = await admin.pair(10)
    async with await Client.connect(server.ws, server.token(s)) as bad, \
            await Client.connect(server.ws, server.token(r)) as good:
        for i in range(300):
            await bad.send_raw(malformed(i))
        errors = [await bad.next_event("error") for _ in range(300)]
        assert {e["code"] for e in errors} <= set(ERRORS)
        assert {"bad_json", "unknown_type", "missing_field", "bad_field", "unknown_field",
                "frame_too_large", "binary_frame", "already_authenticated"} <= {e["code"] for e in errors}
        assert all(e["message"] for e in errors)
        assert (await good.request("ping"))["type"] == "pong"
        assert (await bad.request("ping"))["type"] == "pong"  # still open
        assert (await bad.send_gift(r, "note.do", 1))["type"] == "gift.confirmed"


async def expect_close(url: str, first: str | None = None) -> int:
    async with connect(url) as ws:
        if first is not None:
            await ws.send(first)
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


async def test_forged_expired_and_missing_tokens(server: Proc) -> None:
    """Forged, expired and missing tokens are refused with their documented close codes."""
    forged = make_token("not-the-secret", "alice", int(time.time()) + 60)
    expired = server.token("alice", ttl_s=-1)
    assert await expect_close(f"{server.ws}?token={forged}") == close_code("auth_invalid").code
    assert await expect_close(f"{server.ws}?token={expired}") == close_code("auth_expired").code
    auth_expired = orjson.dumps({"type": "auth", "id": "a", "token": expired}).decode()
    assert await expect_close(server.ws, auth_expired) == close_code("auth_expired").code
    ping = orjson.dumps({"type": "ping", "id": "p"}).decode()
    assert await expect_close(server.ws, ping) == close_code("auth_required").code


async def test_abuse_closes_and_silence_times_out(own_server: OwnServer) -> None:
    """Past the bad-frame budget the connection closes 4009 after all owed errors; no auth in time is 4004."""
    # The bad frames are sent without reading: none of their errors is overtaken by the close.
    srv, _ = own_server({"GIFTWIRE_BAD_FRAMES_MAX": "300", "GIFTWIRE_AUTH_TIMEOUT_S": "0.5"})
    async with Admin(srv) as admin:
        await admin.user("abuser")
        async with connect(f"{srv.ws}?token={srv.token('abuser')}") as ws:
            await ws.recv()  # welcome
            for i in range(301):
                await ws.send(f'{{"type":"ping","id":"b{i}","x":1}}')
            answered = []
            with pytest.raises(ConnectionClosed) as info:
                for _ in range(400):
                    answered.append(orjson.loads(await asyncio.wait_for(ws.recv(), 5))["id"])
        assert info.value.rcvd is not None and info.value.rcvd.code == close_code("abuse").code
        assert answered == [f"b{i}" for i in range(301)]
        assert await expect_close(srv.ws) == close_code("auth_timeout").code


async def test_transport_limit_closes_with_1009(server: Proc) -> None:
    """A message over the transport limit (64 KiB) closes the connection with 1009."""
    async with connect(f"{server.ws}?token={server.token('big')}", max_size=None) as ws:
        await ws.recv()
        await ws.send("x" * 70000)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
