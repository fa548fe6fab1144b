"""Compare uvicorn's WebSocket implementations and per-message-deflate on the echo ceiling.

    python -m loadtest.wscompare     # the figures behind the gateway's WebSocket settings
"""

from __future__ import annotations

import uvloop

from loadtest.ceilings import echo_ceiling

OPTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("websockets-sansio", ("--ws", "websockets-sansio")),
    ("websockets (legacy)", ("--ws", "websockets")),
    ("wsproto", ("--ws", "wsproto")),
    ("websockets-sansio + deflate", ("--ws", "websockets-sansio", "--deflate")),
]


async def main() -> None:
    for name, args in OPTIONS:
        rate = await echo_ceiling(2, 64, 8, 3.0, args)
        print(f"{name:<30} {rate:>10,.0f} echoes/s", flush=True)


if __name__ == "__main__":
    uvloop.run(main())
