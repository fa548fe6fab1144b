"""The platform backend's HTTP API, under `/admin/v1`, behind a bearer admin key.

Every subsystem adds its routes to `parts.admin` (see `server.parts`); this module
mounts them behind the key and the error wrapper, and runs `POST /bulk` over the
item kinds the subsystems registered. JSON in and out; every error is
`{"error": {"code": ..., "message": ...}}` with a code of `protocol.errors.ADMIN_ERRORS`.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisClusterException, RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.admin import validate as v
from server.admin.http import error_response, json_response, read_json, storage_error
from server.admin.validate import AdminError
from server.parts import AdminHandler, Parts

PREFIX = "/admin/v1"
BULK_CONCURRENCY = 64
BULK_ERRORS_MAX = 100


def wrap(handler: AdminHandler, admin_key: str) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        # (an auth scheme's name is case-insensitive, RFC 9110 §11.1; the key is not)
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.encode(), admin_key.encode()):
            return error_response("unauthorized")
        try:
            if b"%2f" in request.scope.get("raw_path", b"").lower():
                # decoded before routing, so `a%2Fmentor` would address another resource
                raise AdminError("bad_field", "a path segment cannot hold an encoded /")
            return json_response(await handler(request))
        except AdminError as exc:
            return error_response(exc.code, exc.message)
        except RedisError as exc:
            return storage_error(exc)
        except (RedisClusterException, TimeoutError):  # a cluster out of reach, a hung round
            return error_response("unavailable")
    return run


def mount(p: Parts, admin_key: str) -> list[Route]:
    """One Route per path (so a wrong method's 405 lists every allowed one)."""

    async def bulk(r: Request) -> Any:
        return await run_bulk(p, await read_json(r))

    by_path: dict[str, dict[str, AdminHandler]] = {}
    for route in p.admin.routes:
        for method in route.methods:
            by_path.setdefault(route.path, {})[method] = route.handler
    by_path.setdefault("/bulk", {})["POST"] = bulk
    routes = []
    for path, handlers in by_path.items():

        async def dispatch(r: Request, handlers: dict[str, AdminHandler] = handlers) -> Any:
            if r.method == "HEAD":  # Starlette lists HEAD on every GET route: the GET's
                # answer (handlers branch on the method), whose body uvicorn leaves out
                return await handlers["GET"](Request({**r.scope, "method": "GET"}, r.receive))
            return await handlers[r.method](r)

        routes.append(Route(PREFIX + path, wrap(dispatch, admin_key), methods=list(handlers)))
    return routes


async def run_bulk(p: Parts, body: Any) -> dict[str, Any]:
    """Apply each registered kind in turn (users first); report per-kind counts and the
    first errors with their index. Each item is idempotent, so a retry is safe."""
    kinds = list(p.admin.bulk)
    if not isinstance(body, dict):
        raise AdminError("bad_body", f"bulk takes {', '.join(kinds)} lists")
    v.obj(body, set(kinds))  # an unknown kind is `unknown_field`, as in every other body
    lists = {k: body.get(k, []) for k in kinds}
    if not all(isinstance(x, list) for x in lists.values()):
        raise AdminError("bad_field", f"{', '.join(kinds)} must be lists")
    total = sum(len(x) for x in lists.values())
    if total > p.settings.bulk_items_max:
        raise AdminError("too_many_items", f"at most {p.settings.bulk_items_max} items")
    result: dict[str, Any] = {"errors": []}
    sem = asyncio.Semaphore(BULK_CONCURRENCY)

    async def one(kind: str, index: int, item: Any) -> dict[str, Any] | None:
        """None when applied, else its error (items run at once: they end in any order)."""
        async with sem:
            try:
                await p.admin.bulk[kind](item)
                return None
            except AdminError as exc:
                return {"kind": kind, "index": index, "code": exc.code, "message": exc.message}

    for kind, items in lists.items():
        outcomes = await asyncio.gather(*(one(kind, i, item) for i, item in enumerate(items)))
        failed = [e for e in outcomes if e is not None]  # in index order, as gathered
        result[kind] = len(items) - len(failed)
        result["errors"] += failed[:BULK_ERRORS_MAX - len(result["errors"])]
    return result
