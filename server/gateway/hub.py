"""The connections of this gateway process, fed from Redis pub/sub, keyed by channel.

The hub subscribes to a channel while at least one connection here is on it: a
user's own channel (every connection of that user, from connect to close) now;
room and group channels next. Payloads on a user channel are events for every
connection of the user (one of which may be a request's reply) or replies for one
request; `server.store.keys` describes their format.

On a cluster a channel is a shard channel in its owner's slot. When that slot
moves to another master, Valkey drops the subscription (an unsolicited
`sunsubscribe`): the hub holds the channel's connections (they buffer), refreshes
the slot map, subscribes on the new owner, waits for the confirmation, and then
the gateway gives each connection what the log holds after the last seq it passed
on. Events published in between (on the new owner, before we were there) are in
the log, so none is lost, and the seq filter drops any seen twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.exceptions import AskError, RedisError

from server.gateway.connection import Connection
from server.store import keys
from server.store.channels import publish
from server.store.pipeline import STORAGE_AWAY

log = logging.getLogger("giftwire.hub")
PROBE_PREFIX = "P"  # health probes on the gateway's own channel
FOLLOW_ATTEMPTS_MAX = 10  # to resubscribe after a slot move, before connections resync
FOLLOW_CONFIRM_S = 0.5  # a confirmation takes a round trip; longer means a stale slot map
FOLLOW_BACKOFF_S = 0.1  # times the attempt number, between attempts
SLOTS_REFRESH_MIN_S = 0.1  # one slot map refresh serves every channel that moved together


class Hub:
    def __init__(self, redis: Any, sharded: bool = False) -> None:
        self.redis = redis
        # on a cluster: SSUBSCRIBE, one connection per shard, each with its own listener
        self.sharded = sharded
        self.gateway_id = uuid.uuid4().hex[:10]
        self.channels: dict[str, set[Connection]] = {}
        self.by_id: dict[str, Connection] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: dict[int, asyncio.Task[None]] = {}  # by id() of a node's pubsub
        self._lock = asyncio.Lock()
        self._next = 0
        self._probes: dict[str, asyncio.Future[None]] = {}
        self._channel_node: dict[str, str] = {}  # shard channel → the node that confirmed it
        self._confirming: dict[str, asyncio.Future[None]] = {}
        self._following: set[str] = set()
        self._dropped_again: set[str] = set()  # dropped while being followed: follow again
        self._follow_tasks: set[asyncio.Task[None]] = set()
        self._slots_lock = asyncio.Lock()
        self._slots_at = 0.0
        # set by the gateway: hold a channel's connections while events may be missing,
        # then catch them up (`ok` False: the subscription could not be restored)
        self.on_lost: Callable[[str], None] = lambda channel: None
        self.recover: Callable[[str, bool], Awaitable[None]] | None = None
        # set by the rooms module: where room events (`V<rseq> <json>`) go, by channel
        self.room_sink: Callable[[str, int, str], None] = lambda channel, rseq, event: None
        # set by the risk module: a user's risk state changed (`K<json>` on their channel)
        self.risk_sink: Callable[[str, str], None] = lambda channel, state: None

    def new_conn_id(self) -> str:
        self._next += 1
        return f"{self.gateway_id}-{self._next}"

    def on(self, channel: str) -> Iterable[Connection]:
        """The connections on `channel` here."""
        return self.channels.get(channel, ())

    async def start(self) -> None:
        if self.sharded:
            await self.redis.initialize()  # the slot map, before the first SSUBSCRIBE routes
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        # a channel of our own keeps the subscriber connection open when no user is here
        await self._subscribe(keys.gateway_channel(self.gateway_id))
        if not self.sharded:
            self._task = asyncio.create_task(self._listen(self._pubsub), name="hub-listener")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._listeners.values(), *self._follow_tasks)
                 if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()

    # -- connections on channels ------------------------------------------------
    async def add(self, conn: Connection) -> None:
        """A new connection: on its user's channel from now until `remove`."""
        self.by_id[conn.id] = conn
        try:
            await self.join(conn, keys.user(conn.user).channel)
        except BaseException:
            self.by_id.pop(conn.id, None)
            raise

    async def remove(self, conn: Connection) -> None:
        """Off every channel, even when an UNSUBSCRIBE cannot go out (Redis away): redis-py
        subscribes its channels again on reconnecting; what comes for them is dropped."""
        self.by_id.pop(conn.id, None)
        failed: Exception | None = None
        for channel in list(conn.channels):
            try:
                await self.leave(conn, channel)
            except STORAGE_AWAY as exc:
                failed = exc
        if failed is not None:
            raise failed

    async def join(self, conn: Connection, channel: str) -> None:
        async with self._lock:
            conns = self.channels.get(channel)
            if conns is None:
                # known before the SUBSCRIBE goes out: its confirmation may come back first
                conns = self.channels[channel] = set()
                try:
                    await self._subscribe(channel)
                except BaseException:
                    del self.channels[channel]
                    self._channel_node.pop(channel, None)
                    raise
            conns.add(conn)
            conn.channels.add(channel)

    async def leave(self, conn: Connection, channel: str) -> None:
        async with self._lock:
            conn.channels.discard(channel)
            conns = self.channels.get(channel)
            if conns is None:
                return
            conns.discard(conn)
            if not conns:
                del self.channels[channel]
                await self._unsubscribe(channel)

    async def _subscribe(self, channel: str) -> None:
        if not self.sharded:
            await self._pubsub.subscribe(channel)
            return
        self._channel_node.setdefault(channel, "")  # the node that confirms it, once one does
        await self._pubsub.ssubscribe(channel)
        mapping = dict(self._pubsub.node_pubsub_mapping)
        live = {id(ps) for ps in mapping.values()}
        for key in [k for k in self._listeners if k not in live]:  # a node pubsub redis-py closed
            self._listeners.pop(key).cancel()
        for name, node_pubsub in mapping.items():
            if id(node_pubsub) not in self._listeners:
                self._listeners[id(node_pubsub)] = asyncio.create_task(
                    self._listen(node_pubsub, name), name=f"hub-listener-{name}")

    async def _unsubscribe(self, channel: str) -> None:
        if not self.sharded:
            await self._pubsub.unsubscribe(channel)
            return
        self._channel_node.pop(channel, None)
        await self._pubsub.sunsubscribe(channel)
        # redis-py prunes its cluster-level record of a channel only in get_sharded_message,
        # which the listeners bypass: without this, every slot-map refresh would re-subscribe
        # channels whose users left
        self._pubsub.shard_channels.pop(channel, None)
        getattr(self._pubsub, "_shard_channel_to_node", {}).pop(channel, None)
        # nor the node it lived on before its slot moved (the SUNSUBSCRIBE went to the new
        # owner): that node's pubsub would SSUBSCRIBE it again on every reconnect
        for node_pubsub in self._pubsub.node_pubsub_mapping.values():
            node_pubsub.shard_channels.pop(channel, None)

    # -- what arrives ---------------------------------------------------------------
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
        if data.startswith(keys.RISK_STATE_PREFIX):
            self.risk_sink(channel, data[1:])
            return
        if data.startswith(keys.CLOSE_PREFIX):  # `X<reason>`: this channel's connections end
            for conn in list(self.channels.get(channel, ())):
                conn.kick(data[1:])
            return
        head, _, body = data.partition(" ")
        if head.startswith(keys.ROOM_EVENT_PREFIX):  # `V<rseq> <json>`: a room event
            self.room_sink(channel, int(head[1:]), body)
        elif head.startswith(keys.EVENT_PREFIX):  # `E<seq> <route> <json>`
            route, _, event_json = body.partition(" ")
            target, _, no = route.partition("/")
            seq = int(head[1:])
            for conn in self.channels.get(channel, ()):
                conn.event(seq, int(no) if conn.id == target else 0, event_json)
        elif head.startswith(keys.REPLY_PREFIX):  # `R<conn>/<n> <json>`: one request's reply
            target, _, no = head[1:].partition("/")
            one = self.by_id.get(target)
            if one is not None:
                one.reply(int(no), body)
        else:
            log.error("unknown payload on %s: %.80s", channel, data)

    async def _listen(self, pubsub: Any, node: str = "") -> None:
        failing = False  # one line when reads start failing, one when they work again
        while True:
            if node and pubsub.connection is None:
                if self._pubsub.node_pubsub_mapping.get(node) is not pubsub:
                    # redis-py retired this node's pubsub (its last channel moved away, or the
                    # node left): it reads nothing ever again, and a later SSUBSCRIBE there gets
                    # a new one with a listener of its own (it raised "connection not set"
                    # with a traceback every 0.5 s)
                    if self._listeners.get(id(pubsub)) is asyncio.current_task():
                        del self._listeners[id(pubsub)]
                    log.info("shard pub/sub on %s retired", node)
                    return
                await asyncio.sleep(0.5)  # still mapped, not connected yet (its first connect
                continue  # failed): the next SSUBSCRIBE there connects it
            try:
                # block without a timeout: redis-py's per-call timeout costs more than a message
                msg = await pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except AskError as exc:  # MOVED/ASK: an SSUBSCRIBE met a slot that moved
                log.info("shard subscription redirected on %s: %s", node, exc)
                continue  # the follow that sent it waits for a confirmation and retries
            except RedisError as exc:  # Redis went away: redis-py reconnects and resubscribes
                if not failing:
                    log.warning("pub/sub read failed (%s); retrying every 0.5 s", exc)
                failing = True
                await asyncio.sleep(0.5)
                continue
            except Exception:  # not Redis being away: a bug, traced
                log.exception("pub/sub read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if failing:
                log.warning("pub/sub reads work again")
                failing = False
            if not msg:
                continue
            kind = msg.get("type")
            if kind in ("message", "smessage"):
                self.dispatch(msg["channel"], msg["data"])
            elif kind in ("ssubscribe", "sunsubscribe"):
                self._notice(kind, msg["channel"], node)

    # -- a slot moved: follow the channel to its new owner -----------------------
    def _notice(self, kind: str, channel: str, node: str) -> None:
        """A subscription notice from `node`. A node confirms an SSUBSCRIBE only while it
        owns the slot, so a confirmation says where the channel lives now; a drop from the
        node we were on means its slot moved away."""
        if channel not in self._channel_node or channel not in self.channels:
            return  # not ours (any more): the last connection left
        was = self._channel_node[channel]
        if kind == "ssubscribe":
            self._channel_node[channel] = node
            fut = self._confirming.get(channel)
            if fut is not None and not fut.done():
                fut.set_result(None)
            elif was and was != node and channel not in self._following:
                # redis-py moved the subscription itself (its slot map changed) before the old
                # node's drop reached us: events published in between are only in the log
                log.warning("channel %s moved from %s to %s: catching up", channel, was, node)
                self._start_follow(channel, resubscribe=False)
            return
        if was != node:
            return  # a late notice from a node the channel has left
        if channel in self._following:
            self._dropped_again.add(channel)
            return
        log.warning("channel %s dropped by %s (its slot moved): following it", channel, node)
        self._channel_node[channel] = ""
        self._start_follow(channel, resubscribe=True)

    def _start_follow(self, channel: str, resubscribe: bool) -> None:
        self._following.add(channel)
        self.on_lost(channel)
        task = asyncio.create_task(self._follow(channel, resubscribe), name=f"hub-follow-{channel}")
        self._follow_tasks.add(task)
        task.add_done_callback(self._follow_tasks.discard)

    async def _follow(self, channel: str, resubscribe: bool) -> None:
        ok = not resubscribe
        try:
            for attempt in range(1, FOLLOW_ATTEMPTS_MAX + 1 if resubscribe else 1):
                try:
                    ok = await self._resubscribe(channel)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a stale or half-built slot map mid-reshard: retry
                    log.info("following %s: attempt %d: %r", channel, attempt, exc)
                    await asyncio.sleep(FOLLOW_BACKOFF_S * attempt)
        finally:
            # the held connections are released on every path, or closed to resync
            try:
                if self.recover is not None and channel in self.channels:
                    await self.recover(channel, ok)
            finally:
                self._following.discard(channel)
        if channel in self._dropped_again and channel in self.channels:
            self._dropped_again.discard(channel)
            self._channel_node[channel] = ""
            self._start_follow(channel, resubscribe=True)

    async def _resubscribe(self, channel: str) -> bool:
        """Subscribe on the slot's owner by a fresh slot map; True once some node confirms
        (redis-py's own reconciliation may get there first: any confirmation will do)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirming[channel] = fut
        try:
            await self._refresh_slots()
            async with self._lock:
                if channel not in self.channels:
                    return False
                await self._subscribe(channel)
            await asyncio.wait_for(fut, FOLLOW_CONFIRM_S)
            return True
        finally:
            self._confirming.pop(channel, None)

    async def _refresh_slots(self) -> None:
        """Re-read the slot map (once for all the channels a reshard moved together)."""
        async with self._slots_lock:
            now = asyncio.get_running_loop().time()
            if now - self._slots_at >= SLOTS_REFRESH_MIN_S:
                await self.redis.nodes_manager.initialize()
                self._slots_at = asyncio.get_running_loop().time()
