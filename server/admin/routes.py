"""The platform backend's HTTP API, under `/admin/v1`, behind a bearer admin key.

JSON in and out; every error is `{"error": {"code": ..., "message": ...}}`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.exceptions import DataError, RedisError, ResponseError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.admin import validate as v
from server.admin.ops import AdminOps
from server.admin.validate import AdminError
from server.settlement.dead_letters import DeadLetterError, DeadLetters

log = logging.getLogger("giftwire")

BODY_MAX_BYTES = 8 << 20
BULK_CONCURRENCY = 64
BULK_ERRORS_MAX = 100
DEAD_LETTERS_PAGE_MAX = 1000  # dead letters in one listing
# plain ResponseErrors that report the server's state, not a refused command: retryable
_TRANSIENT_REPLIES = ("BUSY ", "MISCONF ", "NOREPLICAS ")

Handler = Callable[[Request], Awaitable[Any]]


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def error_response(status: int, code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


async def read_json(request: Request) -> Any:
    body = await request.body()
    if len(body) > BODY_MAX_BYTES:
        raise AdminError(413, "body_too_large", f"the body exceeds {BODY_MAX_BYTES} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AdminError(400, "bad_json", "the body is not valid JSON") from None


def storage_error(exc: RedisError) -> Response:
    """Storage trouble is 503 `unavailable` (retry later). A command Redis refused
    outright (a plain ResponseError: bad argument, wrong type, script error) or one the
    client could not encode can't succeed on retry: it is a bug (input that validation
    should have stopped), so it is a logged 500 `internal`."""
    refused = type(exc) is ResponseError and not str(exc).startswith(_TRANSIENT_REPLIES)
    if refused or isinstance(exc, DataError):
        log.error("admin request refused by storage: %s", exc, exc_info=exc)
        return error_response(500, "internal", "the server failed on this request; "
                              "retrying will not help")
    return error_response(503, "unavailable", "storage is unavailable; retry later")


def path_user(request: Request) -> str:
    return v.user_id(request.path_params["user"])


def routes(ops: AdminOps, admin_key: str) -> list[Route]:
    def endpoint(handler: Handler, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            if not hmac.compare_digest(auth.encode(), f"Bearer {admin_key}".encode()):
                return error_response(401, "unauthorized", "a valid admin key is required")
            try:
                if b"%2f" in request.scope.get("raw_path", b"").lower():
                    # decoded before routing, so `a%2Fmentor` would address another resource
                    raise AdminError(400, "bad_field", "a path segment cannot hold an encoded /")
                return json_response(await handler(request), status)
            except AdminError as exc:
                return error_response(exc.status, exc.code, exc.message)
            except RedisError as exc:
                return storage_error(exc)
        return run

    async def user(r: Request) -> Any:
        if r.method == "PUT":
            return await ops.put_user(path_user(r), await read_json(r))
        return await ops.get_user(path_user(r))

    async def balances(r: Request) -> Any:
        u = path_user(r)
        return {"user": u, "balances": await ops.balances(u)}

    async def ledger(r: Request) -> Any:
        return await ops.ledger(path_user(r), r.query_params.get("cursor"),
                                r.query_params.get("limit"))

    async def mentor(r: Request) -> Any:
        return await ops.bind_mentor(path_user(r), await read_json(r))

    async def follow(r: Request) -> Any:
        return await ops.follow(await read_json(r), r.method == "PUT")

    async def block(r: Request) -> Any:
        return await ops.block(await read_json(r), r.method == "PUT")

    async def grant(r: Request) -> Any:
        return await ops.move(await read_json(r), revoke=False)

    async def revoke(r: Request) -> Any:
        return await ops.move(await read_json(r), revoke=True)

    async def festivals(r: Request) -> Any:
        if r.method == "GET":
            return await ops.get_festivals()
        return await ops.set_festivals(await read_json(r))

    async def bulk(r: Request) -> Any:
        return await run_bulk(ops, await read_json(r))

    dead = DeadLetters(ops.redis, ops.service, ops.s)

    async def dead_letters(r: Request) -> Any:
        limit = v.query_int(r.query_params.get("limit", "100"), "limit", 1, DEAD_LETTERS_PAGE_MAX)
        return {"dead_letters": await dead.list(limit), "total": await dead.count()}

    async def dead_letter_action(r: Request) -> Any:
        partition = v.query_int(r.path_params["partition"], "partition", 0, ops.s.partitions - 1)
        dead_id = r.path_params["id"]
        v.cursor(dead_id)  # a stream id, like a ledger cursor
        try:
            if r.path_params["action"] == "retry":
                return await dead.retry(partition, dead_id)
            if r.path_params["action"] == "void":
                return await dead.void(partition, dead_id, int(time.time() * 1000))
        except DeadLetterError as exc:
            raise AdminError(404, exc.code, exc.message) from None
        raise AdminError(404, "not_found", "the action is retry or void")

    return [
        # one Route per path, so a wrong method's 405 lists every allowed one
        Route("/admin/v1/users/{user}", endpoint(user), methods=["GET", "PUT"]),
        Route("/admin/v1/users/{user}/balances", endpoint(balances), methods=["GET"]),
        Route("/admin/v1/users/{user}/ledger", endpoint(ledger), methods=["GET"]),
        Route("/admin/v1/users/{user}/mentor", endpoint(mentor), methods=["PUT"]),
        Route("/admin/v1/follows", endpoint(follow), methods=["PUT", "DELETE"]),
        Route("/admin/v1/blocks", endpoint(block), methods=["PUT", "DELETE"]),
        Route("/admin/v1/grants", endpoint(grant), methods=["POST"]),
        Route("/admin/v1/revocations", endpoint(revoke), methods=["POST"]),
        Route("/admin/v1/festivals", endpoint(festivals), methods=["GET", "PUT"]),
        Route("/admin/v1/bulk", endpoint(bulk), methods=["POST"]),
        Route("/admin/v1/dead-letters", endpoint(dead_letters), methods=["GET"]),
        Route("/admin/v1/dead-letters/{partition}/{id}/{action}", endpoint(dead_letter_action),
              methods=["POST"]),
    ]


async def run_bulk(ops: AdminOps, body: Any) -> dict[str, Any]:
    """Apply users, then follows and blocks, then grants; report per-kind counts and
    the first errors with their index. Each item is idempotent, so a retry is safe."""
    if not isinstance(body, dict) or set(body) - {"users", "follows", "blocks", "grants"}:
        raise AdminError(400, "bad_body", "bulk takes users, follows, blocks and grants lists")
    lists = {k: body.get(k, []) for k in ("users", "follows", "blocks", "grants")}
    if not all(isinstance(x, list) for x in lists.values()):
        raise AdminError(400, "bad_field", "users, follows, blocks and grants must be lists")
    total = sum(len(x) for x in lists.values())
    if total > ops.s.bulk_items_max:
        raise AdminError(413, "too_many_items", f"at most {ops.s.bulk_items_max} items")

    def user_op(item: Any) -> Awaitable[Any]:
        uid = item.get("id") if isinstance(item, dict) else None
        return ops.put_user(uid if isinstance(uid, str) else "", item)

    actions: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "users": user_op,
        "follows": ops.follow,
        "blocks": ops.block,
        "grants": lambda item: ops.move(item, revoke=False),
    }
    result: dict[str, Any] = {"errors": []}
    sem = asyncio.Semaphore(BULK_CONCURRENCY)

    async def one(kind: str, index: int, item: Any) -> bool:
        async with sem:
            try:
                await actions[kind](item)
                return True
            except AdminError as exc:
                if len(result["errors"]) < BULK_ERRORS_MAX:
                    result["errors"].append({"kind": kind, "index": index, "code": exc.code,
                                             "message": exc.message})
                return False

    for kind, items in lists.items():
        oks = await asyncio.gather(*(one(kind, i, item) for i, item in enumerate(items)))
        result[kind] = sum(oks)
    return result
