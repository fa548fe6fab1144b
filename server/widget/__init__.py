"""The in-chat gifting widget: static files served at `/widget/` (the page a platform
embeds in an iframe, docs/widget.md), and the JavaScript client it runs on
(`/widget/giftwire.js`, from protocol/js). Every response carries a strict
Content-Security-Policy: the page loads nothing but its own files and talks to nothing but
this gateway's WebSocket."""

from __future__ import annotations

from pathlib import Path

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import protocol
from server.admin.http import error_response

STATIC = Path(__file__).parent / "static"
CLIENT_JS = Path(protocol.__file__).parent / "js" / "giftwire.js"
PREFIX = "/widget"


def content_security_policy(host: str) -> str:
    """Self only: scripts, styles and images from this origin (no inline code, no eval), and
    connections to this gateway (its WebSocket under either scheme); any page may frame it
    (the widget holds nothing until its host passes a token)."""
    sockets = f" ws://{host} wss://{host}" if host else ""
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors *; require-trusted-types-for 'script'; trusted-types 'none'")


def _host(scope: Scope) -> str:
    host = Headers(scope=scope).get("host", "")
    # a Host header is the client's to choose: keep it only when it is a plain host[:port]
    ok = host and len(host) <= 255 and all(c.isalnum() or c in ".-:[]" for c in host)
    return host if ok else ""


READ_METHODS = ("GET", "HEAD")


class Secured:
    """Adds the widget's security headers to every response of `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = content_security_policy(_host(scope))

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = policy
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"  # the page's URL may hold a token
                headers["Cache-Control"] = "no-cache"  # revalidate: a new server, new files
            await send(message)

        if scope.get("method") not in READ_METHODS:  # answered here, so with the headers too
            refused = error_response("method_not_allowed")
            refused.headers["Allow"] = ", ".join(READ_METHODS)
            await refused(scope, receive, send_secured)
            return
        try:
            await self.app(scope, receive, send_secured)
        except HTTPException as exc:  # a file that is not there: answered here, headers too
            if exc.status_code != 404:
                raise
            await error_response("not_found")(scope, receive, send_secured)


async def _client(scope: Scope, receive: Receive, send: Send) -> None:
    # any origin may import it (`import ... from ".../widget/giftwire.js"`: module scripts are
    # fetched with CORS); it is public code and the response carries no credentials
    await FileResponse(CLIENT_JS, media_type="text/javascript",
                       headers={"Access-Control-Allow-Origin": "*"})(scope, receive, send)


async def _to_page(scope: Scope, receive: Receive, send: Send) -> None:
    """`/widget` → `widget/` (the page's relative paths need the slash), query kept; relative,
    so a proxy's path prefix (`/gifts/widget` → `/gifts/widget/`) is kept too."""
    query = scope.get("query_string", b"").decode("latin-1")
    url = f"{PREFIX.rsplit('/', 1)[-1]}/" + (f"?{query}" if query else "")
    await RedirectResponse(url, status_code=307)(scope, receive, send)


def routes() -> list[BaseRoute]:
    """`/widget/` (the page and its files) and `/widget/giftwire.js` (the client)."""
    return [
        # every method reaches Secured, which refuses all but GET and HEAD with the headers
        Route(PREFIX, Secured(_to_page)),
        Route(f"{PREFIX}/giftwire.js", Secured(_client)),
        Mount(PREFIX, app=Secured(StaticFiles(directory=STATIC, html=True))),
    ]
