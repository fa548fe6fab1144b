"""Ceilings (c) and (d): a plain WebSocket echo and a plain broadcast of one
pre-encoded frame, on the same Starlette/uvicorn stack and settings as the gateway.

    python -m loadtest.echo_server   # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from loadtest.target import LOAD_PROFILE
from server.bench import handshake_limits, uvicorn_config

FRAME = ('{"type":"gift.received","transfer_id":"bench:0","gift_id":"0","from":"bench",'
         '"asset":"note.do","count":1,"balance":1,"seq":1}')
subscribers: set[WebSocket] = set()


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


async def subscribe(ws: WebSocket) -> None:
    await ws.accept()
    subscribers.add(ws)
    try:
        while True:
            await ws.receive_text()
    except WebSocketDisconnect:
        subscribers.discard(ws)


async def blast(request: Request) -> JSONResponse:
    """Send the pre-encoded frame `rounds` times to every subscriber."""
    rounds = min(int(request.query_params.get("rounds", "1")), 1000)
    started = time.time()
    targets = list(subscribers)
    for _ in range(rounds):
        for ws in targets:
            await ws.send_text(FRAME)
        await asyncio.sleep(0)
    return JSONResponse({"started": started, "sent": rounds * len(targets),
                         "server_s": time.time() - started})


async def count(_: Request) -> JSONResponse:
    return JSONResponse({"subscribers": len(subscribers)})


app = Starlette(routes=[WebSocketRoute("/echo", echo), WebSocketRoute("/sub", subscribe),
                        Route("/blast", blast, methods=["POST"]), Route("/count", count)])


async def main(ws_impl: str | None, deflate: bool) -> None:
    # the target's share of handshakes per address: the load generators all connect from here
    share = int(LOAD_PROFILE["GIFTWIRE_HANDSHAKES_PER_ADDRESS_MAX"])
    config = uvicorn_config(app, "127.0.0.1", 0, handshake=handshake_limits(
        handshakes_per_address_max=share))
    if ws_impl:  # for comparing implementations; the default is the gateway's
        config.ws = ws_impl
    config.ws_per_message_deflate = deflate
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no started event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    await task


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--ws", help="uvicorn WebSocket implementation (default: the gateway's)")
    p.add_argument("--deflate", action="store_true", help="turn per-message-deflate on")
    args = p.parse_args()
    uvloop.run(main(args.ws, args.deflate))
    sys.exit(0)
