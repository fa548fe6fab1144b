"""A gateway's side of live rooms: which connections watch which room, one coalesced
frame per room per tick, and this gateway's share of each room's audience.

Room events arrive on the room's channel and become one `room.frame` per room per tick
(`server/gateway/broadcast.py`, shared with groups): at most once, encoded once.

The audience is the sum of every gateway's share, kept on the room's slot; this
gateway reports its share when its viewer count changed (at most once a tick) and
every `room_share_refresh_ms`, so a dead gateway's share lapses after
`room_share_ttl_ms`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from server.lifetime import stop_if_cancelled
from server.metrics import REGISTRY, Counter
from server.store import keys
from server.store.pipeline import TRANSIENT, run_calls

if TYPE_CHECKING:
    from server.gateway.endpoint import Gateway
    from server.parts import Parts

log = logging.getLogger("giftwire.rooms")
BOARD_PUSH_MS = 1000  # a board's top entries reach viewers at most once a second per room
BOARD_PUSH_TOP = 10  # entries in a pushed board (the snapshot carries more)
WITHDRAW_TIMEOUT_S = 2.0  # a stopping gateway waits this long to withdraw its shares
LIKES_DROPPED = REGISTRY.add(Counter("giftwire_room_likes_dropped_total",
                                     "counted likes not added to a room's total (too many rooms in a tick)"))
LIKE_BATCHES_RESENT = REGISTRY.add(Counter(
    "giftwire_room_like_batches_resent_total",
    "room like batches sent again because Redis's answer never came (each is added once)"))
LIKE_ROOMS_PER_TICK_MAX = 10_000  # rooms whose likes one tick carries
STREAMERS_CACHED_MAX = 10_000  # rooms whose streamer the gateway remembers for likes
# a gateway's last like batch number per room is kept this long after its last batch: far
# longer than a batch waits for Redis to come back (a gateway restarts with a new id, and
# like_room.lua forgets the ids silent for longer)
LIKE_BATCHES_KEPT_S = 86_400


@dataclass
class RoomState:
    room: str
    reported: int = -1  # the viewer count last reported for this gateway
    reported_ms: int = 0
    board_dirty: bool = False  # a gift arrived since the board was last pushed
    board_ms: int = 0


class RoomViewers:
    def __init__(self, gw: Gateway, p: Parts) -> None:
        self.gw = gw
        self.p = p
        self.s = p.settings
        self.rooms: dict[str, RoomState] = {}  # by room channel
        # likes counted here since the last tick, by room: one call per room per tick
        self.likes: dict[str, int] = {}
        # each room's numbered batch sent and not yet answered: (batch number, likes)
        self.pending_likes: dict[str, tuple[int, int]] = {}
        # room → (streamer, when read, ms): a like storm reads the room's slot once per
        # `room_streamer_cache_ms`, not once per batch
        self.streamers: dict[str, tuple[str, int]] = {}
        self.like_batch = 0
        self.faults = 0
        self.broadcast = gw.broadcast
        self.broadcast.watchers.append(self.on_event)

    def channel(self, room: str) -> str:
        return keys.room(room).channel

    def watching(self, conn_channels: set[str]) -> int:
        return sum(1 for c in conn_channels if c in self.rooms)

    async def join(self, conn: Any, room: str) -> None:
        ch = self.channel(room)
        self.rooms.setdefault(ch, RoomState(room))
        self.broadcast.open(ch, "room.frame", "room", room)
        await self.gw.hub.join(conn, ch)

    async def leave(self, conn: Any, room: str) -> None:
        await self.gw.hub.leave(conn, self.channel(room))

    async def streamer(self, room: str) -> str | None:
        """The room's streamer (None: no such room), read at most every
        `room_streamer_cache_ms` per room: a room handed to another streamer counts for the
        new one from then on."""
        now = self.p.clock.now_ms()
        hit = self.streamers.get(room)
        if hit is not None and now - hit[1] < self.s.room_streamer_cache_ms:
            return hit[0]
        streamer: str | None = await self.p.redis.hget(keys.room(room).profile, "streamer")
        if streamer is None:  # not remembered: a room created a moment later counts at once
            return None
        if room not in self.streamers and len(self.streamers) >= STREAMERS_CACHED_MAX:
            del self.streamers[next(iter(self.streamers))]  # the oldest entry goes
        self.streamers[room] = (streamer, now)
        return streamer

    def add_likes(self, room: str, counted: int) -> None:
        # bounded with the batches still waiting for an answer (Redis away: they pile up)
        if room in self.likes or room in self.pending_likes \
                or len(self.likes) + len(self.pending_likes) < LIKE_ROOMS_PER_TICK_MAX:
            self.likes[room] = self.likes.get(room, 0) + counted
        else:  # bounded: a storm over more rooms than a tick carries loses room totals only
            LIKES_DROPPED.inc(counted)

    async def flush_likes(self) -> None:
        """The likes counted here this tick, one call per room: the session's total and its
        effects (the fans' own totals were counted exactly when they were acknowledged). Each
        room's batch is numbered and kept until Redis answers it; a batch whose answer was
        lost is sent again as it was (the room applies a number once), and the likes counted
        meanwhile wait for the next batch, so every acknowledged like reaches the total once."""
        LIKE_BATCHES_RESENT.inc(len(self.pending_likes))  # still unanswered from an earlier tick
        for room in [r for r in self.likes if r not in self.pending_likes]:
            self.like_batch += 1
            self.pending_likes[room] = (self.like_batch, self.likes.pop(room))
        if not self.pending_likes:
            return
        rooms = list(self.pending_likes)  # bounded with `likes` by add_likes
        calls = []
        for room in rooms:
            rk, (batch, counted) = keys.room(room), self.pending_likes[room]
            calls.append(([rk.profile, rk.channel, rk.like_batches],
                          [counted, ",".join(self.s.room_effects), self.s.publish_mode,
                           self.gw.hub.gateway_id, batch, LIKE_BATCHES_KEPT_S, self.p.clock.now_ms()]))
        self.fault_before_send()
        replies = await run_calls(self.p.redis, self.s.redis_cluster, self.p.scripts["like_room"],
                                  calls, transient="return")
        self.fault_after_send()
        for room, reply in zip(rooms, replies, strict=True):
            if isinstance(reply, TRANSIENT):  # its node is away: sent again next tick
                continue
            if isinstance(reply, Exception):  # a broken invariant: logged, not retried for ever
                log.error("like total of room %s not added: %s", room, reply)
            del self.pending_likes[room]

    # `GIFTWIRE_FAULT=lose_like_batches`: the first flush never reaches Redis, the second is
    # applied but its answer is lost (the crash tests of exact room totals)
    def fault_before_send(self) -> None:
        if self.s.fault == "lose_like_batches" and self.faults == 0:
            self.faults += 1
            raise ConnectionError("fault injection: a like batch not sent")

    def fault_after_send(self) -> None:
        if self.s.fault == "lose_like_batches" and self.faults == 1:
            self.faults += 1
            raise ConnectionError("fault injection: a like batch's answer lost")

    def on_event(self, channel: str, event_json: str) -> None:
        state = self.rooms.get(channel)
        if state is not None and '"kind":"gift"' in event_json:
            state.board_dirty = True
    async def run(self) -> None:
        """The tick: flush frames, report audience shares; never dies on a Redis error."""
        try:
            while True:
                await asyncio.sleep(self.s.room_tick_ms / 1000)
                try:
                    await self.flush_likes()
                    await self.push_boards()
                    await self.report()
                except asyncio.CancelledError:
                    raise
                except TRANSIENT as exc:  # Redis away, a room's slot moving: the next tick
                    log.warning("room tick failed: %s", exc)  # tries again (one line, no trace)
                except Exception:
                    log.exception("room tick failed")
                stop_if_cancelled()
        finally:  # a graceful stop: the tick's likes go in, the shares are withdrawn at once
            await asyncio.shield(self.withdraw())

    async def withdraw(self) -> None:
        try:
            await asyncio.wait_for(self.flush_likes(), WITHDRAW_TIMEOUT_S)
            await asyncio.wait_for(self.report(withdraw=True), WITHDRAW_TIMEOUT_S)
        except Exception:
            log.warning("audience shares not withdrawn; they lapse by themselves")

    async def push_boards(self) -> None:
        """Rooms whose board may have changed get its top entries, at most once per
        BOARD_PUSH_MS per room (one read per room per gateway)."""
        now = self.p.clock.now_ms()
        due = [(ch, st) for ch, st in self.rooms.items()
               if st.board_dirty and now - st.board_ms >= BOARD_PUSH_MS]
        if not due:
            return
        pipe = self.p.redis.pipeline(transaction=False)
        for _, state in due:
            pipe.zrevrange(keys.room(state.room).board, 0, BOARD_PUSH_TOP - 1, withscores=True)
        for (channel, state), board in zip(due, await pipe.execute(), strict=True):
            state.board_dirty, state.board_ms = False, now
            self.broadcast.fan_out(channel, orjson.dumps({
                "type": "room.board", "room": state.room,
                "board": [{"user": u, "cards": int(c)} for u, c in board]}))

    async def report(self, withdraw: bool = False) -> None:
        """Report this gateway's shares that changed (or are due for refresh); forget rooms
        nobody here watches once their zero share is reported. `withdraw`: all zero."""
        now = self.p.clock.now_ms()
        due: list[tuple[str, RoomState, int]] = []
        for channel, state in self.rooms.items():
            viewers = 0 if withdraw else len(list(self.gw.hub.on(channel)))
            since_ms = now - state.reported_ms
            # a change goes in at most every `room_audience_report_ms` (a join storm is a few
            # audience events a second, not one a tick); an unchanged share every refresh
            if (viewers != state.reported and (withdraw or since_ms >= self.s.room_audience_report_ms)) \
                    or since_ms >= self.s.room_share_refresh_ms:
                due.append((channel, state, viewers))
        if not due:
            return
        calls = []
        for _, state, viewers in due:
            rk = keys.room(state.room)
            calls.append(([rk.profile, rk.audience, rk.audience_expiry, rk.channel],
                          [self.gw.hub.gateway_id, viewers, now, self.s.room_share_ttl_ms,
                           self.s.publish_mode]))
        await run_calls(self.p.redis, self.s.redis_cluster, self.p.scripts["room_audience"], calls)
        for channel, state, viewers in due:
            state.reported, state.reported_ms = viewers, now
            if viewers == 0 and channel not in self.gw.hub.channels:
                del self.rooms[channel]
                self.broadcast.close_if_unwatched(channel)
