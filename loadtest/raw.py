"""A bare protocol client for the risk scenarios: it can claim a device (a v2 token) and an
address (`X-Forwarded-For`, believed when the harness's loopback peer is one of the target's
`GIFTWIRE_TRUSTED_PROXIES`), which `protocol.client.Client` cannot. Replies are matched by
request id; everything else goes to `on_event`. Frames are parsed, not checked against the
protocol (that is the tests' job)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.gateway.auth import make_token

EventHandler = Callable[[dict[str, Any]], None]
TOKEN_TTL_S = 6 * 3600


def token(secret: str, user: str, device: str | None = None) -> str:
    """A token for `user`, v2 with `device` when given."""
    return make_token(secret, user, int(time.time()) + TOKEN_TTL_S, device)


class Refused(Exception):
    """The server closed the connection instead of welcoming it (e.g. 4011 device_banned)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"refused: {code} {reason}")
        self.code = code
        self.reason = reason


class Raw:
    def __init__(self, ws: ClientConnection, on_event: EventHandler | None) -> None:
        self.ws = ws
        self.on_event = on_event
        self.ids = itertools.count(1)
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, ws_url: str, tok: str, ip: str | None = None,
                   on_event: EventHandler | None = None, timeout_s: float = 60.0) -> Raw:
        """Connect, wait for `welcome`; raises `Refused` when the server closes instead."""
        headers = {"X-Forwarded-For": ip} if ip else None
        ws = await connect(f"{ws_url}?token={tok}", additional_headers=headers, compression=None,
                           open_timeout=timeout_s, ping_interval=None, max_queue=None)
        try:
            first = orjson.loads(await asyncio.wait_for(ws.recv(), timeout_s))
        except ConnectionClosed as exc:
            await ws.close()
            rcvd = exc.rcvd
            raise Refused(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
        except BaseException:
            await ws.close()
            raise
        if first.get("type") != "welcome":
            await ws.close()
            raise Refused(None, f"first frame {first}")
        return cls(ws, on_event)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                msg = orjson.loads(frame)
                fut = self.waiting.pop(msg.get("id", ""), None) if "id" in msg else None
                if fut is not None:
                    if not fut.done():
                        fut.set_result(msg)
                elif self.on_event is not None:
                    self.on_event(msg)
        except ConnectionClosed:
            pass
        finally:
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))
            self.waiting.clear()

    async def request(self, type_: str, timeout_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send a request, wait for the reply that echoes its id."""
        rid = f"r{next(self.ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        try:
            await self.ws.send(orjson.dumps({"type": type_, "id": rid, **fields}).decode())
        except ConnectionClosed as exc:
            self.waiting.pop(rid, None)
            raise ConnectionError("connection closed") from exc
        try:
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self.waiting.pop(rid, None)

    async def gift(self, to: str, gift_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        return await self.request("gift.send", timeout_s, gift_id=gift_id, to=to, asset="note.do",
                                  count=1)

    async def close(self) -> None:
        await self.ws.close()
        try:
            await asyncio.wait_for(self.reader, 5)
        except (TimeoutError, asyncio.CancelledError):
            self.reader.cancel()


def outcome(reply: dict[str, Any]) -> str:
    """`gift.confirmed`, or an error's code."""
    return str(reply.get("code", reply.get("type", "?")))
