"""Popularity-card messages of protocol v1 (seed 000): points that arrive in lots and
expire 48 h after each grant (spent oldest first), the daily sign-in, exchanging small
cards, and card uses that boost one's own content (now or at a scheduled start), with
their targeting. Every change of points is an event of the user's (exactly once)."""

from __future__ import annotations

from protocol.schema import (
    AMOUNT_MAX,
    ID_PATTERN,
    INVISIBLE,
    SPACES,
    Field,
    MessageType,
    req_id,
    user_field,
)

CARDS = ("video_heating", "live_recommendation", "fan_reach")
COVERS = ("basic", "advanced")
GENDERS = ("any", "female", "male")
LOTS_SHOWN_MAX = 50  # lots one `popularity.points` lists, soonest to expire first
TAG_PATTERN = rf"^[^{SPACES},\x00-\x1f\x7f{INVISIBLE}]{{1,24}}$"  # no commas, spaces, controls

_USE_ID = Field("use", "str", "your id for this card use (idempotent)", pattern=ID_PATTERN)
_SEQ = Field("seq", "int", "per-user event sequence number", minimum=1)
_LOTS = Field("lots", "objects", "unexpired lots, soonest to expire first: `{points, "
              "expires_at_ms}` (absent: none)", False, max_length=LOTS_SHOWN_MAX)
_BALANCE = Field("balance", "int", "your points now (expired lots already gone)", minimum=0)

CLIENT_TYPES: tuple[MessageType, ...] = (
    MessageType("popularity.get", "client", "Your points and lots. Replied by "
                "`popularity.points`.", (req_id(),)),
    MessageType("popularity.signin", "client",
                "The daily sign-in: 50 points on the first day of a streak, 25 more each "
                "unbroken day, at most 200; once per local day. Replied by `popularity.points` "
                "(`reason: signin`, or no `delta` when you signed in today already).",
                (req_id(),)),
    MessageType("popularity.exchange", "client",
                "Exchange one creator's fan-club small cards (`small_card.<creator>`) for points "
                "(10 cards → 100 points by default; `cards` a multiple of 10) as a fresh lot. "
                "Replied by `popularity.points`, or `error` (`insufficient_cards`, "
                "`exchange_unit`, `points_full`, `exchange_id_conflict`: the id used with other `cards` or "
                "another `creator`).",
                (req_id(), Field("exchange", "str", "your id for this exchange (idempotent)",
                                 pattern=ID_PATTERN),
                 user_field("creator", "whose fan club's small cards"),
                 Field("cards", "int", "small cards to exchange", minimum=1, maximum=AMOUNT_MAX))),
    MessageType("popularity.buy", "client",
                "Spend coin on points: 8 points per yuan of coin (`GIFTWIRE_POINTS_PER_YUAN`; "
                "a yuan is `GIFTWIRE_COIN_PER_YUAN` coin, 1 by default, and `coin` a whole "
                "number of yuan), no cap, as a fresh lot. The coin goes (a `balance.changed`, "
                "reason `purchase`, to every connection); replied by `popularity.points` "
                "(`reason: purchase`), or `error` (`insufficient_coin`, `buy_unit`, "
                "`points_full`, `buy_id_conflict`: the id used with another `coin`, "
                "`not_registered`).",
                (req_id(), Field("buy", "str", "your id for this purchase (idempotent)",
                                 pattern=ID_PATTERN),
                 Field("coin", "int", "coin to spend", minimum=1, maximum=AMOUNT_MAX))),
    MessageType("popularity.use", "client",
                "Spend points on a card use boosting your content in your own category, now "
                "or at `start_at_ms` (points are taken when it is scheduled). Replied by "
                "`popularity.used`, or `error` (`insufficient_points`, `points_frozen`, "
                "`use_limit`, `category_mismatch`, `not_enough_followers`, `not_mature`, "
                "`content_taken`, `targeting_region`, `targeting_age`, `targeting_gender`, "
                "`targeting_interests`, `use_id_conflict`, `not_registered`, `bad_field`: "
                "`start_at_ms` in the past or more than 30 days ahead).",
                (req_id(), _USE_ID, Field("card", "str", "which card", enum=CARDS),
                 Field("cover", "str", "basic: the one content; advanced (mature accounts): "
                       "the content and your live room together", False, enum=COVERS),
                 Field("content", "str", "the content boosted", pattern=ID_PATTERN),
                 Field("live_room", "str", "advanced cards: your live room, boosted together "
                       "with the content (without it only the content is boosted)", False,
                       pattern=ID_PATTERN),
                 Field("content_hash", "str", "the content's hash (a re-upload of content "
                       "another account boosted is refused)", pattern=r"^[0-9a-f]{16,64}$",
                       max_length=64),
                 Field("category", "str", "the content's category (垂类): must be yours",
                       pattern=ID_PATTERN),
                 Field("targeting", "object", "`{region: {radius_km} | {provinces: [...]}, age: "
                       "{min, max}, gender: any|female|male, interests: {core: [3–5 tags], "
                       "extended: [≤ 2 tags]}}`"),
                 Field("start_at_ms", "int", "a later start, at most 30 days ahead (absent: "
                       "now)", False, minimum=0, maximum=AMOUNT_MAX * 10))),
    MessageType("popularity.cancel", "client",
                "Cancel a scheduled use before it starts: its points come back as the lots "
                "they came from, each expiring as it would have (a `popularity.points` event, "
                "`reason: refund`; none when they have expired since or a violation burned "
                "them). "
                "Replied by `popularity.use.state` (`cancelled`), or `error` (`use_unknown`: no "
                "such use, or one refused or still settling; `use_started`).",
                (req_id(), _USE_ID)),
)

SERVER_TYPES: tuple[MessageType, ...] = (
    MessageType("popularity.points", "server",
                "Your points changed (an event of yours), or the reply to a points request: "
                "`delta` and `reason` (signin, task, purchase, exchange, refund, expire, "
                "violation, partner) when they changed.",
                (req_id(False), _BALANCE, _LOTS,
                 Field("delta", "int", "the change", False, minimum=-AMOUNT_MAX, maximum=AMOUNT_MAX),
                 Field("reason", "str", "why (partner: a gift you received from a partner "
                       "app's channel earned them)", False,
                       enum=("signin", "task", "purchase", "exchange", "refund", "expire",
                             "violation", "partner")),
                 Field("frozen", "bool", "a fraud finding froze your points (they neither "
                       "spend nor expire until lifted)"),
                 Field("streak", "int", "sign-in days in a row (as of your last sign-in)",
                       minimum=0),
                 Field("seq", "int", "per-user event sequence number", False, minimum=1))),
    MessageType("popularity.used", "server",
                "Your card use is paid (the reply to `popularity.use`, an event of yours).",
                (req_id(False), _USE_ID, Field("card", "str", "the card", enum=CARDS),
                 Field("content", "str", "the content", pattern=ID_PATTERN),
                 Field("price", "int", "points paid", minimum=0),
                 Field("starts_at_ms", "int", "when the boost starts", minimum=0),
                 Field("ends_at_ms", "int", "when it ends", minimum=0), _BALANCE,
                 Field("uses_today", "int", "card uses today (at most 3)", minimum=0), _SEQ)),
    MessageType("popularity.use.state", "server",
                "A use started, ended or was cancelled (an event of yours; the reply to "
                "`popularity.cancel`).",
                (req_id(False), _USE_ID, Field("state", "str", "what happened",
                                               enum=("started", "ended", "cancelled")),
                 Field("balance", "int", "your points (after a cancel's refund)", False, minimum=0),
                 _SEQ)),
    MessageType("popularity.dashboard", "server",
                "The platform's figures for one of your boosts (an event of yours), in basis "
                "points (1/100 of a percent), and warnings for figures past their threshold.",
                (_USE_ID, Field("figures", "object", "`{completion_bp, interaction_bp, "
                                "followers_per_hour, bounce_bp}`"),
                 Field("warnings", "strs", "figures that crossed their threshold with this "
                       "report (once per crossing): completion, interaction, bounce", False,
                       max_length=3, enum=("completion", "interaction", "bounce")), _SEQ)),
)
