"""Live-room messages of protocol v1: joining and leaving a room, its snapshot, the
streamer's live session, and the coalesced room frames. Room frames are delivered at
most once (a slow viewer may miss some: `from`/`to` show the gap, `room.snapshot`
fills it); a user's own events keep the exactly-once per-user path."""

from __future__ import annotations

from protocol.schema import (
    AMOUNT_MAX,
    ASSET_PATTERN,
    FRAME_EVENTS_MAX,
    ID_PATTERN,
    Field,
    MessageType,
    req_id,
)

_ROOM = Field("room", "str", "room id", pattern=ID_PATTERN)
_RSEQ = Field("rseq", "int", "the room's latest event number: frames continue from it", minimum=0)
_AUDIENCE = Field("audience", "int", "viewers in the room, over every gateway", minimum=0)
_SESSION = Field("session", "str", "the live session's id, `<room>:<n>`; absent when not live",
                 False, max_length=160)
BOARD_MAX = 100  # entries of a board in a snapshot
EFFECTS_MAX = 32  # room effects a deployment may configure (GIFTWIRE_ROOM_EFFECTS)
LIKE_BATCH_MAX = 50  # taps one `room.like` may carry

CLIENT_TYPES: tuple[MessageType, ...] = (
    MessageType("room.join", "client",
                "Watch a room: its frames reach you until you leave or disconnect. Replied by "
                "`room.snapshot`.", (req_id(), _ROOM)),
    MessageType("room.leave", "client", "Stop watching a room. Replied by `room.left`.",
                (req_id(), _ROOM)),
    MessageType("room.state", "client",
                "The whole room state now (after a gap in `rseq`). Replied by `room.snapshot`.",
                (req_id(), _ROOM)),
    MessageType("room.wish", "client",
                "The streamer opens (`open: true`, with `asset`, `target` and optionally "
                "`ends_at_ms`) or closes the room's gift wish (礼物许愿). While it is open, gifts "
                "of that asset in the room are priced by the audience tier. Replied by "
                "`room.snapshot`, or `error` (`not_streamer`, `not_live`).",
                (req_id(), _ROOM, Field("open", "bool", "open (true) or close (false)"),
                 Field("asset", "str", "the wished asset", False, pattern=ASSET_PATTERN),
                 Field("target", "int", "cards wished for", False, minimum=1, maximum=AMOUNT_MAX),
                 Field("ends_at_ms", "int", "when the wish ends by itself, Unix ms", False,
                       minimum=0, maximum=AMOUNT_MAX * 10))),
    MessageType("room.like", "client",
                "Like the room's streamer `count` times (clients batch taps). Replied by "
                "`room.liked` with what was counted: likes beyond the speed limit are not.",
                (req_id(), _ROOM, Field("count", "int", "taps in this batch", minimum=1,
                                        maximum=LIKE_BATCH_MAX))),
    MessageType("room.rank.get", "client",
                "Your place on the live session's contribution board. Replied by `room.rank`, "
                "or `error` `room_unknown`.",
                (req_id(), _ROOM)),
    MessageType("room.live", "client",
                "The room's streamer starts (`live: true`) or ends a live session. Replied by "
                "`room.snapshot`, or `error` `not_streamer`.",
                (req_id(), _ROOM, Field("live", "bool", "start (true) or end (false)"))),
)

SERVER_TYPES: tuple[MessageType, ...] = (
    MessageType(
        "room.snapshot", "server", "The room state: who streams, the session, audience, board, "
        "wish, likes and the effects fired.",
        (req_id(False), _ROOM, Field("streamer", "str", "the room's streamer", False,
                                     pattern=ID_PATTERN),
         Field("live", "bool", "a live session is on"), _SESSION, _AUDIENCE, _RSEQ,
         Field("board", "objects", "the session's contribution board, best first: "
               "`{user, cards}`", max_length=BOARD_MAX),
         Field("wish", "object", "the open gift wish: `{wish, asset, target, progress, "
               "ends_at_ms}` (`ends_at_ms` 0: no end set)", False),
         Field("likes", "int", "the live session's likes (0 when not live)", minimum=0),
         Field("effects", "strs", "the room effects this session's likes have fired, in the "
               "order of their thresholds", max_length=EFFECTS_MAX)),
    ),
    MessageType("room.left", "server", "Reply to `room.leave`.", (req_id(), _ROOM)),
    MessageType(
        "room.liked", "server", "Reply to `room.like`: likes counted and refused (too fast), "
        "your total for this streamer and your fan-club level (0: none yet).",
        (req_id(), _ROOM, Field("counted", "int", "likes counted", minimum=0),
         Field("refused", "int", "likes over the speed limit, not counted", minimum=0),
         Field("total", "int", "your likes for this streamer, ever", minimum=0),
         Field("level", "int", "your fan-club level with this streamer", minimum=0),
         Field("today", "int", "your counted likes for this streamer today (the daily task "
               "needs 30)", minimum=0),
         Field("streak", "int", "daily tasks done in a row for this streamer", minimum=0))),
    MessageType(
        "likes.level", "server", "Your fan-club level with a streamer went up (an event of "
        "yours: exactly once, resumable).",
        (Field("creator", "str", "the streamer", pattern=ID_PATTERN),
         Field("level", "int", "the new level", minimum=1),
         Field("total", "int", "your likes for this streamer", minimum=0),
         Field("seq", "int", "per-user event sequence number", minimum=1))),
    MessageType(
        "room.rank", "server", "Reply to `room.rank.get`: your rank (1 = first) and what your "
        "gifts in this session cost (each gift's `cost`); no `rank` when you are not on the "
        "board.",
        (req_id(), _ROOM, Field("rank", "int", "your place, 1 first", False, minimum=1),
         Field("cards", "int", "the sum of your gifts' `cost` in this session", minimum=0))),
    MessageType(
        "room.board", "server",
        "The session's contribution board changed: its top entries, pushed at most once a "
        "second per room (at most once, like room frames).",
        (_ROOM, Field("board", "objects", "best first: `{user, cards}`", max_length=BOARD_MAX))),
    MessageType(
        "room.frame", "server",
        "What happened in a room during one tick, encoded once for every viewer: events "
        "`rseq` `from`..`to` (a frame that starts after your last `to` + 1 means you missed "
        "some: send `room.state`). Event kinds: `live` {session, live}, `audience` "
        "{audience}, `gift` {transfer_id, from, to, asset, count, cost, at_ms: when it settled, "
        "tier?: the wish tier (1-based: the row of `GIFTWIRE_WISH_TIERS` the audience fell in, "
        "not the multiplier), badge?: the sender's fan-club level with the recipient}, `wish` "
        "{wish, state (open, progress, reached, closed, ended), asset, target, progress; "
        "ends_at_ms on open, 0: no end set}, `likes` {likes: "
        "the session's total}, `effect` {effect, likes: the session's total when its "
        "threshold was passed} (a threshold of likes reached, once per session).",
        (_ROOM, Field("from", "int", "first event number in this frame", minimum=1),
         Field("to", "int", "last event number in this frame", minimum=1),
         Field("events", "objects", "the events, oldest first", max_length=FRAME_EVENTS_MAX)),
    ),
)
