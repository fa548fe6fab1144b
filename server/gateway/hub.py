"""The connections of this gateway process, fed from Redis pub/sub.

The hub subscribes to a user's channel while the user has at least one
connection here. Payloads are events for every connection of the user (one of
which may be a request's reply) or replies for one request; `server.store.keys`
describes their format.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from redis.exceptions import RedisError

from server.gateway.connection import Connection
from server.store import keys
from server.store.channels import publish

log = logging.getLogger("giftwire.hub")
PROBE_PREFIX = "P"  # health probes on the gateway's own channel


class Hub:
    def __init__(self, redis: Any, sharded: bool = False) -> None:
        self.redis = redis
        # on a cluster: SSUBSCRIBE, one connection per shard, each with its own listener
        self.sharded = sharded
        self._listeners: dict[str, asyncio.Task[None]] = {}
        self.gateway_id = uuid.uuid4().hex[:10]
        self.users: dict[str, set[Connection]] = {}
        self.by_id: dict[str, Connection] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._next = 0
        self._probes: dict[str, asyncio.Future[None]] = {}

    def new_conn_id(self) -> str:
        self._next += 1
        return f"{self.gateway_id}-{self._next}"

    async def start(self) -> None:
        if self.sharded:
            await self.redis.initialize()  # the slot map, before the first SSUBSCRIBE routes
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        # a channel of our own keeps the subscriber connection open when no user is here
        await self._subscribe(keys.gateway_channel(self.gateway_id))
        if not self.sharded:
            self._task = asyncio.create_task(self._listen(self._pubsub), name="hub-listener")

    async def _subscribe(self, channel: str) -> None:
        if not self.sharded:
            await self._pubsub.subscribe(channel)
            return
        await self._pubsub.ssubscribe(channel)
        for name, node_pubsub in list(self._pubsub.node_pubsub_mapping.items()):
            if name not in self._listeners or self._listeners[name].done():
                self._listeners[name] = asyncio.create_task(self._listen(node_pubsub),
                                                            name=f"hub-listener-{name}")

    async def _unsubscribe(self, channel: str) -> None:
        if self.sharded:
            await self._pubsub.sunsubscribe(channel)
        else:
            await self._pubsub.unsubscribe(channel)

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._listeners.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()

    async def add(self, conn: Connection) -> None:
        async with self._lock:
            conns = self.users.get(conn.user)
            if conns is None:
                await self._subscribe(keys.user(conn.user).channel)
                conns = self.users[conn.user] = set()
            conns.add(conn)
            self.by_id[conn.id] = conn

    async def remove(self, conn: Connection) -> None:
        async with self._lock:
            self.by_id.pop(conn.id, None)
            conns = self.users.get(conn.user)
            if conns is None:
                return
            conns.discard(conn)
            if not conns:
                del self.users[conn.user]
                await self._unsubscribe(keys.user(conn.user).channel)

    async def probe(self, timeout_s: float) -> bool:
        """True when a message published now comes back through our subscription: the
        whole pub/sub path works, not just a PING (Centrifugo lost events for hours after a
        failover while its health stayed green)."""
        token = uuid.uuid4().hex
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probes[token] = fut
        try:
            await publish(self.redis, self.sharded, keys.gateway_channel(self.gateway_id),
                          PROBE_PREFIX + token)
            await asyncio.wait_for(fut, timeout_s)
            return True
        except (TimeoutError, OSError, RedisError):
            return False
        finally:
            self._probes.pop(token, None)

    def dispatch(self, channel: str, data: str) -> None:
        if data.startswith(PROBE_PREFIX):
            fut = self._probes.get(data[len(PROBE_PREFIX):])
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        head, _, body = data.partition(" ")
        if head.startswith(keys.EVENT_PREFIX) and "{u:" in channel:  # `E<seq> <route> <json>`
            route, _, event_json = body.partition(" ")
            target, _, no = route.partition("/")
            owner = keys.owner_of(channel)
            for conn in self.users.get(owner, ()):
                conn.event(int(head[1:]), int(no) if conn.id == target else 0, event_json)
        elif head.startswith(keys.REPLY_PREFIX):  # `R<conn>/<n> <json>`: one request's reply
            target, _, no = head[1:].partition("/")
            one = self.by_id.get(target)
            if one is not None:
                one.reply(int(no), body)
        else:
            log.error("unknown payload on %s: %.80s", channel, data)

    async def _listen(self, pubsub: Any) -> None:
        while True:
            try:
                # block without a timeout: redis-py's per-call timeout costs more than a message
                msg = await pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis went away: redis-py reconnects and resubscribes
                log.exception("pub/sub read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if msg and msg.get("type") in ("message", "smessage"):
                self.dispatch(msg["channel"], msg["data"])
