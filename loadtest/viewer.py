"""A lean WebSocket viewer for the broadcast scenarios (the room and ceiling (d)).

Ten thousand viewers share the two cores with the server they measure. Through the
`websockets` client a received frame costs a reader task's wake-up, an assembler and a
`recv()` future, so the harness, not the server, set the room's lag (it fell behind at
~28k frames/s). This viewer is an `asyncio.Protocol`: it parses the RFC 6455 frames of a
`data_received` chunk in place and hands each text frame's payload to a callback, and it
sends the few requests a viewer makes (`room.join`) as masked text frames. Both the room
scenario and ceiling (d) read through it, so their ratio compares the servers alone.
Client side only: no extensions, no fragmented sends, no TLS (loopback).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import struct
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

FrameHandler = Callable[[bytes], None]
HEADER_MAX = 64 * 1024  # a handshake reply longer than this is not one
FRAME_MAX = 16 << 20  # a frame longer than this is a broken stream (the gateway's are < 1 MiB)
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame: clients must mask (RFC 6455 §5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + body


class Viewer(asyncio.Protocol):
    """One connection: `await Viewer.open(url, on_frame)`; every text frame's payload goes
    to `on_frame` unless it answers a `request` (matched by its `id`)."""

    def __init__(self, on_frame: FrameHandler) -> None:
        self.on_frame = on_frame
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.upgraded = False
        self.want_welcome = True
        self.close_sent = False
        self.fragments: list[bytes] = []
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)

    @classmethod
    async def open(cls, url: str, on_frame: FrameHandler, timeout_s: float = 60.0,
                   welcome: bool = True) -> Viewer:
        """Connect and upgrade; with `welcome`, wait for the gateway's welcome (it is not
        passed on). Raises ConnectionError when the server refuses."""
        u = urlsplit(url)
        loop = asyncio.get_running_loop()
        _, viewer = await asyncio.wait_for(
            loop.create_connection(lambda: cls(on_frame), u.hostname or "127.0.0.1", u.port or 80), timeout_s)
        viewer.want_welcome = welcome
        key = base64.b64encode(os.urandom(16)).decode()
        target = u.path + (f"?{u.query}" if u.query else "")
        assert viewer.transport is not None
        viewer.transport.write(
            f"GET {target} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        status = await asyncio.wait_for(viewer.handshake, timeout_s)
        line = status.split(b"\r\n", 1)[0]
        if b" 101 " not in line:
            viewer.abort()
            raise ConnectionError(f"upgrade refused: {line!r}")
        if welcome:
            first = orjson.loads(await asyncio.wait_for(viewer.first, timeout_s))
            if first.get("type") != "welcome":
                viewer.abort()
                raise ConnectionError(f"expected welcome, got {first}")
        return viewer

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        for opening in (self.handshake, self.first):
            if not opening.done():
                opening.set_exception(ConnectionError("connection closed"))
                opening.exception()  # retrieved: nobody may be waiting
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                if len(buf) > HEADER_MAX:
                    self.abort()
                return
            self.handshake.set_result(buf[:end])
            if b" 101 " not in buf[:buf.find(b"\r\n")]:  # refused: the rest is no frame
                self.buf = b""
                return
            self.upgraded = True
            buf = buf[end + 4:]
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
                if length > FRAME_MAX:  # no server of ours sends that: a broken stream
                    self.abort()
                    return
            if n - pos < head + length:
                break
            payload = buf[pos + head:pos + head + length]
            pos += head + length
            self.frame(b0 & 0x80, b0 & 0x0F, payload)
        self.buf = buf[pos:]

    def frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == OP_CONT or (opcode in (OP_TEXT, OP_BINARY) and not fin):
            self.fragments.append(payload)
            if not fin:
                return
            payload, self.fragments = b"".join(self.fragments), []
            opcode = OP_TEXT
        if opcode in (OP_TEXT, OP_BINARY):
            if self.waiting and b'"id"' in payload:
                msg = orjson.loads(payload)
                fut = self.waiting.pop(str(msg.get("id")), None)
                if fut is not None:
                    if not fut.done():
                        fut.set_result(msg)
                    return
            if not self.first.done():  # the welcome, when the caller waits for it
                self.first.set_result(payload)
                if self.want_welcome:
                    return
            self.on_frame(payload)
        elif opcode == OP_PING:
            self.write(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            if not self.close_sent:  # the server's close: answer it once (RFC 6455 §5.5.1)
                self.write(OP_CLOSE, payload[:2])
            self.abort()

    # -- what a viewer does -------------------------------------------------------------
    def write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked_frame(opcode, payload))

    async def request(self, type_: str, timeout_s: float = 60.0, **fields: Any) -> dict[str, Any]:
        """Send `{"type", "id", **fields}` and wait for the reply echoing its id."""
        request_id = f"v{next(self.ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = fut
        self.write(OP_TEXT, orjson.dumps({"type": type_, "id": request_id, **fields}))
        try:
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self.waiting.pop(request_id, None)

    async def close(self, timeout_s: float = 5.0) -> None:
        """A normal close (1000); the transport goes when the server answers or at the
        timeout."""
        self.write(OP_CLOSE, struct.pack("!H", 1000))
        self.close_sent = True
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout_s)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()
