"""Builds the Starlette app: the WebSocket gateway, the admin API, /health, and
(optionally) the settlement worker in the same process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisClusterException, RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from server import parts
from server.admin.http import error_response, json_response
from server.admin.routes import mount
from server.config import Settings
from server.gateway.endpoint import Gateway
from server.gateway.hub import Hub
from server.metrics import CONNECTIONS, REGISTRY
from server.parts import Parts
from server.secrets import Secrets
from server.settlement.worker import Worker
from server.store.packing import cluster_from_url, pool_from_url
from server.store.pipeline import ROUND_S
from server.widget import routes as widget_routes

log = logging.getLogger("giftwire")

REDIS_POOL_MAX = 64
HEALTH_PROBE_S = 1.0  # a published probe must come back through pub/sub within this
TASKS_STOP_S = 5.0  # a stopping gateway waits this long for its background tasks


def connect(url: str, cluster: bool = False, reply_timeouts: bool = True) -> Any:
    """A client whose pool waits (bounded) instead of failing when all connections are busy;
    on a cluster, redis-py's cluster client (one bounded pool per node). Either way its
    connections pack commands with hiredis (`store/packing.py`: the asyncio client packs in
    pure Python otherwise), with the connection class the URL's scheme selects.
    `reply_timeouts=False` (one server): no timeout on each reply or write, for pipelines
    that `store.pipeline.execute` bounds as a whole."""
    if cluster:
        return cluster_from_url(url, decode_responses=True, max_connections=REDIS_POOL_MAX)
    unbounded = {} if reply_timeouts else {"socket_timeout": None,
                                           "socket_connect_timeout": ROUND_S}
    pool = pool_from_url(
        url, max_connections=REDIS_POOL_MAX, timeout=10, decode_responses=True,
        health_check_interval=30, **unbounded,
    )
    return aredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def connect_parts(settings: Settings) -> Parts:
    """Every module's parts on a client for everything, and (one server) a second one for
    the hot pipelined rounds, whose per-reply timeouts cost a fifth of the worker's CPU."""
    url, cluster = settings.redis_url, settings.redis_cluster
    rounds = None if cluster else connect(url, reply_timeouts=False)
    return parts.build(settings, connect(url, cluster), rounds)


def quiet_gc() -> None:
    """Full collections walked every imported module and paused the loop for up to 55 ms
    under load (measured); freeze what start-up created so they skip it. (A larger gen-0
    threshold was tried too: it made each young collection longer and p50 worse.)"""
    gc.collect()
    gc.freeze()


async def not_found(_: Request, __: Exception) -> Response:
    """No route matches: the admin API's JSON error shape, not Starlette's plain text."""
    return error_response("not_found")


async def method_not_allowed(_: Request, exc: Exception) -> Response:
    allow = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
    response = error_response("method_not_allowed", f"this endpoint takes {allow}")
    if allow:
        response.headers["Allow"] = allow
    return response


def make_worker(p: Parts) -> Worker:
    return Worker(p.redis, p.scripts, p.flows, p.periodic, p.settings, p.clock, p.rounds)


def build_app(settings: Settings, secrets: Secrets, with_worker: bool) -> Starlette:
    p = connect_parts(settings)
    redis = p.redis
    hub = Hub(redis, settings.redis_cluster)
    gateway = Gateway(redis, hub, settings, p.token_secrets(secrets.token_secret), p.requests,
                      p.clock, p.rounds)
    worker = make_worker(p) if with_worker else None
    module_tasks = [run for setup in p.gateway if (run := setup(gateway)) is not None]
    module_tasks.append(gateway.broadcast.run)

    async def health(_: Request) -> Response:
        try:
            await redis.ping()
        except (RedisError, RedisClusterException, OSError):
            return json_response({"status": "unavailable", "redis": False, "pubsub": False}, 503)
        if not await hub.probe(HEALTH_PROBE_S):
            return json_response({"status": "unavailable", "redis": True, "pubsub": False}, 503)
        return json_response({"status": "ok", "redis": True, "pubsub": True,
                              "connections": len(hub.by_id)})

    async def metrics(_: Request) -> Response:
        return Response(REGISTRY.render(), media_type="text/plain; version=0.0.4")

    CONNECTIONS.read = lambda: {(): float(len(hub.by_id))}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await hub.start()
        await p.clock.sync()
        quiet_gc()
        tasks = [asyncio.create_task(gateway.sample_backlog(), name="backlog"),
                 asyncio.create_task(gateway.expire_requests(), name="request-timeouts"),
                 asyncio.create_task(p.clock.follow(), name="clock")]
        tasks += [asyncio.create_task(run(), name="module") for run in module_tasks]
        worker_task = asyncio.create_task(worker.run(), name="worker") if worker else None
        try:
            yield
        finally:
            if worker and worker_task:
                worker.stop()  # finish and acknowledge the batch in hand
                await asyncio.gather(worker_task, return_exceptions=True)
            for t in tasks:
                t.cancel()
            # bounded: a task that ignores its cancellation must not hold the stop forever
            stuck = (await asyncio.wait(tasks, timeout=TASKS_STOP_S))[1]
            for t in stuck:
                log.error("task %s did not stop within %.0f s of its cancellation",
                          t.get_name(), TASKS_STOP_S)
            await hub.stop()
            await p.aclose()

    app = Starlette(
        routes=[
            WebSocketRoute("/ws", gateway.serve),
            Route("/health", health),
            Route("/metrics", metrics),
            *mount(p, secrets.admin_key),
            *widget_routes(),  # /widget/: the embeddable page, with its Content-Security-Policy
        ],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed},
    )
    # `/admin/v1/users/x/` is a 404 like any unknown path, not a 307 to another resource
    # (the widget redirects `/widget` itself)
    app.router.redirect_slashes = False
    app.state.worker = worker
    app.state.gateway = gateway
    return app
