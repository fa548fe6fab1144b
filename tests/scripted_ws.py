"""A real WebSocket server that a test script plays the server side of, frame by frame.

protocol/js/test_client.mjs drives the JavaScript client against it (tests/test_js_client.py
starts it on 127.0.0.1, port 0). Nothing is simulated: the client dials real TCP connections
and does real WebSocket handshakes; only what the server *says* is scripted, by the test,
through a control connection:

* `/ws` (any query string) takes the client's connections, numbered 0, 1, 2... in the order
  their handshakes arrive (refused ones too). The server sends nothing on its own.
* `/control` (one at a time) takes the test's connection. While it is attached the server
  reports, as JSON text frames, every handshake on `/ws`
  (`{"ev": "conn", "conn": N, "url": "/ws?token=...", "refused": null | status}`), every frame
  a client connection sent (`{"ev": "frame", "conn": N, "text": "..."}`) and the end of each
  connection (`{"ev": "closed", "conn": N, "code": ..., "reason": ...}`: the close code the
  client sent, 1005 for a close frame without one, 1006 with no close frame at all, null for a
  refused handshake). It takes commands, carried out in order, each answered by
  `{"ev": "done", "id": ..., "error": null | "..."}`:
    - `{"cmd": "push", "id": k, "conn": N, "text": "..."}`: send a text frame on connection N;
    - `{"cmd": "close", "id": k, "conn": N, "code": c, "reason": "..."}`: end connection N with
      a close frame carrying code c; c = 1005 sends a close frame with no code (the client
      sees 1005); c = 1006 drops the TCP connection with no close frame (the client sees 1006);
    - `{"cmd": "refuse", "id": k, "count": n, "status": s}`: answer the next n handshakes on
      `/ws` with HTTP status s instead of switching protocols.
  A handshake on `/ws` while no control connection is attached is refused (503).

`python tests/scripted_ws.py` serves on a free port and prints it (to run the script by hand:
`node --experimental-websocket protocol/js/test_client.mjs PORT`).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

NO_STATUS = 1005  # what a client reports for a close frame without a code
ABNORMAL = 1006  # what a client reports for a connection lost with no close frame


class ScriptedServer:
    """One scripted server: `await ScriptedServer.start()`, then `await server.stop()`."""

    def __init__(self) -> None:
        self._server: Server | None = None
        self._control: ServerConnection | None = None
        self._numbers: dict[ServerConnection, int] = {}
        self._conns: dict[int, ServerConnection] = {}
        self._made = 0
        self._refuse: list[int] = []  # statuses for the next handshakes on /ws
        self.port = 0

    @classmethod
    async def start(cls, host: str = "127.0.0.1", port: int = 0) -> ScriptedServer:
        self = cls()
        self._server = await serve(self._handle, host, port, process_request=self._handshake,
                                   ping_interval=None, close_timeout=2, max_size=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close the listening socket and every connection it took (ours, and only ours)."""
        if self._server is not None:
            self._server.close()  # closes the open connections too (1001)
            await self._server.wait_closed()
            self._server = None

    # ---- the handshake -----------------------------------------------------------------------

    async def _handshake(self, conn: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == "/control":
            if self._control is not None:
                return conn.respond(HTTPStatus.CONFLICT, "a control connection is attached\n")
            return None
        if path != "/ws":
            return conn.respond(HTTPStatus.NOT_FOUND, "not found\n")
        n = self._made
        self._made += 1
        status: int | None = None
        if self._control is None:
            status = HTTPStatus.SERVICE_UNAVAILABLE
        elif self._refuse:
            status = self._refuse.pop(0)
        await self._tell({"ev": "conn", "conn": n, "url": request.path, "refused": status})
        if status is not None:
            await self._tell({"ev": "closed", "conn": n, "code": None, "reason": None})
            return conn.respond(status, "refused by the test script\n")
        self._numbers[conn] = n
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        if conn in self._numbers:
            await self._client(conn, self._numbers.pop(conn))
        else:
            await self._controlled_by(conn)

    # ---- a client connection -----------------------------------------------------------------

    async def _client(self, conn: ServerConnection, n: int) -> None:
        self._conns[n] = conn
        try:
            async for frame in conn:
                text = frame if isinstance(frame, str) else frame.decode(errors="replace")
                await self._tell({"ev": "frame", "conn": n, "text": text})
        except ConnectionClosed:
            pass
        finally:
            await conn.wait_closed()
            del self._conns[n]
            await self._tell({"ev": "closed", "conn": n, "code": conn.close_code,
                              "reason": conn.close_reason})

    async def _tell(self, event: dict[str, Any]) -> None:
        control = self._control
        if control is None:
            return
        try:
            await control.send(json.dumps(event))
        except ConnectionClosed:
            pass  # the test script is gone: nobody to tell

    # ---- the control connection --------------------------------------------------------------

    async def _controlled_by(self, control: ServerConnection) -> None:
        self._control = control
        try:
            async for raw in control:
                command = json.loads(raw)
                error: str | None = None
                try:
                    await self._do(command)
                except Exception as err:  # told to the script, which fails the scenario
                    error = f"{type(err).__name__}: {err}"
                await self._tell({"ev": "done", "id": command.get("id"), "error": error})
        except ConnectionClosed:
            pass
        finally:
            self._control = None
            for conn in list(self._conns.values()):  # the script is gone: so are its clients
                conn.transport.abort()

    async def _do(self, command: dict[str, Any]) -> None:
        what = command["cmd"]
        if what == "refuse":
            self._refuse.extend([int(command["status"])] * int(command.get("count", 1)))
            return
        conn = self._conns.get(int(command["conn"]))
        if conn is None:
            raise LookupError(f"connection {command['conn']} is not open")
        if what == "push":
            await conn.send(str(command["text"]))
        elif what == "close":
            code = int(command["code"])
            if code == ABNORMAL:
                conn.transport.abort()  # no close frame: the TCP connection just ends
            elif code == NO_STATUS:
                async with conn.send_context():  # a close frame with an empty body
                    conn.protocol.send_close(None)
            else:
                await conn.close(code, str(command.get("reason", "")))
        else:
            raise ValueError(f"unknown command {what!r}")


async def main() -> None:
    server = await ScriptedServer.start()
    print(server.port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
