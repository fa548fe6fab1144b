"""What every admin route shares: JSON in and out, the error shape, and how storage
errors are answered."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from redis.exceptions import DataError, RedisError, ResponseError
from starlette.requests import Request
from starlette.responses import Response

from server.admin import validate as v
from server.admin.validate import AdminError

log = logging.getLogger("giftwire")

BODY_MAX_BYTES = 8 << 20
# plain ResponseErrors that report the server's state, not a refused command: retryable
_TRANSIENT_REPLIES = ("BUSY ", "MISCONF ", "NOREPLICAS ")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def error_response(code: str, detail: str | None = None) -> Response:
    """The error reply for `code`: its status and, unless `detail` is given, its message come
    from `protocol.errors.ADMIN_ERRORS`."""
    exc = AdminError(code, detail)
    return json_response({"error": {"code": exc.code, "message": exc.message}}, exc.status)


async def read_json(request: Request) -> Any:
    body = await request.body()
    if len(body) > BODY_MAX_BYTES:
        raise AdminError("body_too_large", f"the body exceeds {BODY_MAX_BYTES} bytes")
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
