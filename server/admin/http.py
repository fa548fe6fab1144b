"""What every admin route shares: JSON in and out, the error shape, and how storage
errors are answered."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from redis.exceptions import DataError, RedisError, ResponseError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from server.admin import validate as v
from server.admin.validate import AdminError

log = logging.getLogger("giftwire")

BODY_MAX_BYTES = 8 << 20
# a whole body within this long, or 408: the handshake bound ends with the request's head,
# and a body trickled a byte at a time would hold a connection (and its buffer) forever
BODY_READ_S = 30.0
# errors answered before the body was read to its end: the connection is closed after the
# answer, not kept alive to drain what is left of a body that may never end
_CLOSING = frozenset({"body_too_large", "body_timeout", "unauthorized", "not_found",
                      "method_not_allowed"})
# plain ResponseErrors that report the server's state, not a refused command: retryable
_TRANSIENT_REPLIES = ("BUSY ", "MISCONF ", "NOREPLICAS ")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def error_response(code: str, detail: str | None = None) -> Response:
    """The error reply for `code`: its status and, unless `detail` is given, its message come
    from `protocol.errors.ADMIN_ERRORS`."""
    exc = AdminError(code, detail)
    response = json_response({"error": {"code": exc.code, "message": exc.message}}, exc.status)
    if code in _CLOSING:
        response.headers["connection"] = "close"
    return response


async def read_json(request: Request) -> Any:
    """The body as JSON: refused as soon as it passes BODY_MAX_BYTES (never buffered whole),
    408 when it does not arrive within BODY_READ_S."""
    return _parse(b"".join([chunk async for chunk in _bounded(request)]))


async def no_body(request: Request) -> None:
    """A route that takes no body accepts none, or `{}`: anything else is refused like any
    body (`bad_json`, `bad_body`, `unknown_field`), before the route acts (an erasure must
    not go ahead on a request that was meant otherwise)."""
    if request.headers.get("content-length") == "0":
        return
    body = b"".join([chunk async for chunk in _bounded(request)])
    if body.strip():
        v.obj(_parse(body), set())


async def _bounded(request: Request) -> Any:
    """The body's chunks: refused as soon as it passes BODY_MAX_BYTES (never buffered whole),
    408 when it does not arrive within BODY_READ_S."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > BODY_MAX_BYTES:
        raise AdminError("body_too_large", f"the body exceeds {BODY_MAX_BYTES} bytes")
    size = 0
    try:
        async with asyncio.timeout(BODY_READ_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > BODY_MAX_BYTES:
                    raise AdminError("body_too_large", f"the body exceeds {BODY_MAX_BYTES} bytes")
                yield chunk
    except TimeoutError:
        raise AdminError("body_timeout", f"the body did not arrive within {BODY_READ_S:g} s") \
            from None
    except ClientDisconnect:  # nobody is left to answer; no traceback for it
        raise AdminError("bad_json", "the client went away before its body ended") from None


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AdminError("bad_json") from None


def storage_error(exc: RedisError) -> Response:
    """Storage trouble is 503 `unavailable` (retry later). A command Redis refused
    outright (a plain ResponseError: bad argument, wrong type, script error) or one the
    client could not encode can't succeed on retry: it is a bug (input that validation
    should have stopped), so it is a logged 500 `internal`."""
    refused = type(exc) is ResponseError and not str(exc).startswith(_TRANSIENT_REPLIES)
    if refused or isinstance(exc, DataError):
        log.error("admin request refused by storage: %s", exc, exc_info=exc)
        return error_response("internal")
    return error_response("unavailable")


def path_user(request: Request) -> str:
    return v.user_id(request.path_params["user"])
