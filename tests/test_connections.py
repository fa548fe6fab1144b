"""Connections that behave: a rate limit per connection, a connection limit per user, and a
client that stops reading is cut off (4008) without costing anyone else."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol.client import Client
from protocol.errors import close_code
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, metric, uid

OwnServer = Callable[..., tuple[Proc, EmbeddedValkey]]


async def test_rate_limit_and_connection_limit(own_server: OwnServer) -> None:
    """Past its burst a connection gets `rate_limited` and stays open; a user's third connection is 4005."""
    srv, _ = own_server({"GIFTWIRE_REQUESTS_PER_S": "5", "GIFTWIRE_REQUEST_BURST": "5",
                         "GIFTWIRE_CONNECTIONS_PER_USER_MAX": "2"})
    u = uid("u")
    async with await Client.connect(srv.ws, srv.token(u)) as c, \
            await Client.connect(srv.ws, srv.token(u)):
        replies = await asyncio.gather(*(c.request("ping") for _ in range(20)))
        kinds = [r.get("code", r["type"]) for r in replies]
        assert kinds.count("pong") in range(5, 8) and kinds.count("rate_limited") >= 13, kinds
        assert all(r["temporary"] for r in replies if r["type"] == "error")
        await asyncio.sleep(0.5)
        assert (await c.request("ping"))["type"] == "pong"  # tokens come back
        with pytest.raises(ConnectionClosed) as info:
            await Client.connect(srv.ws, srv.token(u))
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == close_code("too_many_connections").code


async def test_logins_at_one_instant_do_not_get_past_the_connection_limit(server: Proc) -> None:
    """30 simultaneous logins of one user: 8 welcomed (GIFTWIRE_CONNECTIONS_PER_USER_MAX), 22 closed 4005."""
    # Each welcomed one is counted before the next login is judged (all 30 got in while joining the hub took a
    # moment).
    u = uid("u")
    sockets = [await connect(server.ws) for _ in range(30)]
    try:
        await asyncio.gather(*(ws.send(f'{{"type":"auth","id":"a","token":"{server.token(u)}"}}')
                               for ws in sockets))

        async def outcome(ws: ClientConnection) -> str:
            try:
                return str(await ws.recv())[:20]
            except ConnectionClosed as closed:
                return f"closed {closed.rcvd.code if closed.rcvd else None}"

        seen = await asyncio.gather(*(outcome(ws) for ws in sockets))
        welcomed = [x for x in seen if '"welcome"' in x]
        assert len(welcomed) == 8 and seen.count("closed 4005") == 22, seen
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_slow_consumer_is_cut_off(own_server: OwnServer) -> None:
    """A client that stops reading while events pile up is cut off (4008, counted); others are served."""
    # Its close frame waits behind the megabytes the client then reads one frame at a time: on a slow
    # machine that took longer than GIFTWIRE_CLOSE_TIMEOUT_S and the socket was dropped without it
    # (a CI run); the server's decision is then read from /metrics.
    srv, _ = own_server({"GIFTWIRE_SEND_QUEUE_MAX_BYTES": "20000"})
    async with Admin(srv) as admin:
        slow, other = uid("slow"), uid("ok")
        await admin.user(slow)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuned window
        sock.connect(("127.0.0.1", srv.port))
        # (no keepalive of its own: a client that reads nothing would time its own pings out
        # before the server's cut on a loaded machine, and this tests the server's cut)
        async with connect(f"{srv.ws}?token={srv.token(slow)}", sock=sock, max_queue=1,
                           ping_interval=None) as ws:
            await ws.recv()  # welcome; from now on this client reads nothing
            for batch in range(7):  # ~6 MB: more than the kernel send buffer (<= 4 MiB)
                await admin.call("POST", "/bulk", {"grants": [
                    {"id": f"flood-{batch}-{i}", "user": slow, "asset": "note.do", "amount": 1}
                    for i in range(5000)]})
            async with await Client.connect(srv.ws, srv.token(other)) as c:
                assert (await c.request("ping"))["type"] == "pong"
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 20)
        if info.value.rcvd is not None:  # (None: dropped after the close timeout)
            assert info.value.rcvd.code == close_code("slow_consumer").code
        cut = 'giftwire_disconnects_total{reason="slow_consumer"}'  # counted once it ended
        for _ in range(100):
            if await metric(srv, cut) == 1:
                break
            await asyncio.sleep(0.1)
        assert await metric(srv, cut) == 1
        assert await admin.balances(slow) == {"note.do": 35000}  # nothing lost but the frames


async def test_the_client_backs_off_from_a_server_that_closes_each_connection_at_once() -> None:
    """The client backs off from a server closing each connection with 4010, then gives up and says so."""
    # 4010 says reconnect, but a server that welcomes and at once closes is not redialled in a tight loop;
    # after its attempts the client stops and `connected()` says it gave up.
    import orjson
    from websockets.asyncio.server import ServerConnection, serve

    from protocol.client import RECONNECT_ATTEMPTS

    opened: list[float] = []

    async def handler(ws: ServerConnection) -> None:
        opened.append(asyncio.get_running_loop().time())
        await ws.send(orjson.dumps({"type": "welcome", "user": "u", "protocol": 1,
                                    "server_time_ms": 1, "seq": 0}).decode())
        await ws.close(4010, "resync")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = await Client.connect(f"ws://127.0.0.1:{port}/ws", "v1.u.1.x", auto_reconnect=True)
        for _ in range(300):  # every quick loss waits longer; after RECONNECT_ATTEMPTS, none
            if len(opened) >= RECONNECT_ATTEMPTS:
                break
            await asyncio.sleep(0.1)
        for _ in range(50):  # (the last loss may still be on its way) said, not a silent stop
            try:
                await client.connected(timeout_s=15)
            except ConnectionError as exc:
                assert "gave up" in str(exc)
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("connected() never said the client gave up")
        await client.close()
    assert len(opened) == RECONNECT_ATTEMPTS, opened
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    assert gaps[-1] > gaps[0] and gaps[-1] > 0.5, gaps  # backed off, not at once


async def test_the_python_client_adds_its_token_after_a_query_the_url_has(server: Proc,
                                                                           admin: Admin) -> None:
    """`Client.connect` on a URL that has a query already appends `&token=…` (it built `?x=1?token=…`)."""
    u = uid("q")
    await admin.user(u)
    async with await Client.connect(f"{server.ws}?x=1", server.token(u), timeout_s=10) as c:
        assert (await c.request("ping"))["type"] == "pong"
