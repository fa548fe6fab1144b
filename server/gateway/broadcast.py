"""Shared channels (a live room, a fan group): events coalesced per tick into one frame
per channel, encoded and framed once, written to every connection watching here.

A module opens a channel with the frame it makes (`room.frame` with `room`, `group.frame`
with `group`); its Lua publishes `V<seq> <json>` on the channel (one subscription per
channel per gateway, by the hub). Each tick the events a channel got become one frame
`{"type", <field>: <name>, "from", "to", "events"}`, written straight to each socket
(`write_prepared`) or queued behind a connection's own frames. Delivery is at most once:
a connection with `room_queue_bytes` queued misses the frame (counted) and sees the gap
in `from`/`to`; its own events (the per-user path) never wait behind these frames.
This module knows no domain.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from protocol.schema import FRAME_EVENTS_MAX
from server.config import Settings
from server.gateway.http_limits import prepared_text
from server.gateway.hub import Hub
from server.metrics import REGISTRY, Counter

log = logging.getLogger("giftwire.gateway")
FRAMES = REGISTRY.add(Counter("giftwire_room_frames_total",
                              "shared-channel frames (rooms, groups) written to connections"))
DROPPED = REGISTRY.add(Counter("giftwire_room_frames_dropped_total",
                               "shared-channel frames a slow connection missed (at-most-once)"))
DROPPED_EVENTS = REGISTRY.add(Counter("giftwire_room_events_dropped_total",
                                      "shared-channel events beyond what one tick's frame carries"))


@dataclass
class Shared:
    frame_type: str  # `room.frame`
    name_field: str  # `room`
    name: str  # the room id
    events: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, event json)


class Broadcast:
    def __init__(self, hub: Hub, s: Settings) -> None:
        self.hub = hub
        self.s = s
        self.channels: dict[str, Shared] = {}
        hub.room_sink = self.on_event
        # modules watching events go by (rooms: a gift means the board may have moved;
        # groups: a removed member stops watching)
        self.watchers: list[Callable[[str, str], None]] = []

    def open(self, channel: str, frame_type: str, name_field: str, name: str) -> None:
        """Frames of `channel` are `frame_type` naming `name_field: name`."""
        self.channels.setdefault(channel, Shared(frame_type, name_field, name))

    def close_if_unwatched(self, channel: str) -> None:
        if channel not in self.hub.channels:
            self.channels.pop(channel, None)

    def on_event(self, channel: str, seq: int, event_json: str) -> None:
        shared = self.channels.get(channel)
        if shared is None:
            return
        for watcher in self.watchers:
            watcher(channel, event_json)
        if len(shared.events) < FRAME_EVENTS_MAX:
            shared.events.append((seq, event_json.encode()))
        else:  # a storm beyond what one frame carries: watchers see the gap and re-read
            DROPPED_EVENTS.inc()

    async def run(self) -> None:
        """The tick, on a fixed grid: a fan-out to 10,000 viewers takes ~100 ms here, and
        sleeping a tick after it would stretch every tick by that much (and every event's
        wait with it). A tick that passed while one ran late is skipped, not bunched. Never
        dies on an error."""
        loop = asyncio.get_running_loop()
        period = max(1, self.s.room_tick_ms) / 1000  # (the settings refuse below 1 ms)
        next_at = loop.time() + period
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                self.flush()
            except Exception:
                log.exception("broadcast tick failed")
            next_at += period
            late = loop.time() - next_at
            if late > 0:
                next_at += math.ceil(late / period) * period

    def flush(self) -> None:
        for channel, shared in list(self.channels.items()):
            if not shared.events:
                if channel not in self.hub.channels:  # nobody here watches it any more
                    del self.channels[channel]
                continue
            events, shared.events = shared.events, []
            self.fan_out(channel, b'{"type":' + orjson.dumps(shared.frame_type) + b',"'
                         + shared.name_field.encode() + b'":' + orjson.dumps(shared.name)
                         + b',"from":' + str(events[0][0]).encode() + b',"to":'
                         + str(events[-1][0]).encode() + b',"events":['
                         + b",".join(e for _, e in events) + b"]}")

    def fan_out(self, channel: str, payload: bytes) -> None:
        """One frame to every connection on `channel` here: encoded and framed once, written
        straight to each socket (no task, no copy per connection) unless that connection has
        frames queued; one with `room_queue_bytes` waiting misses it (counted)."""
        frame, text = prepared_text(payload), payload.decode()
        sent = missed = 0
        for conn in self.hub.on(channel):
            if conn.push_shared(frame, text, self.s.room_queue_bytes):
                sent += 1
            else:
                missed += 1
        FRAMES.inc(sent)  # (each connection counts its frames out when they are written)
        if missed:
            DROPPED.inc(missed)
