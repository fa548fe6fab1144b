"""One settings object: every bound and default, from the environment and flags.

Each field can be set with `GIFTWIRE_<FIELD>` (upper case). Units are last in
names (`_ms`, `_s`, `_bytes`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.notes import REDEEM_SETS_MAX
from protocol.popularity import CARDS
from protocol.rooms import EFFECTS_MAX
from protocol.schema import ASSET_PATTERN, ID_PATTERN
from server.logs import LEVELS
from server.store.embedded import AOF_REWRITE_MIN_MB

DEFAULT_NOTE_KINDS = ("do", "re", "mi", "fa", "sol", "la", "ti", "rare")
# A creator's fan-club cards (SPEC section 3): each creator's are assets of their own,
# `small_card.<creator>` (the daily like task) and `small_card_rare.<creator>` (its streak),
# minted through the ledger by the like task only and never transferable. `.` as in
# `note.<kind>`, which ASSET_PATTERN (checked by clients on every frame naming an asset) allows
# followed by any user id; a `:` it refuses, and system accounts are `mint:<asset>`.
FAN_CARDS = ("small_card", "small_card_rare")
_CREATOR = re.compile(ID_PATTERN)
_DIGITS = re.compile(r"[0-9]+")
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?|-?(inf|nan)", re.IGNORECASE)
_ASSET = re.compile(ASSET_PATTERN)
_NOTE_KIND = re.compile(r"[A-Za-z0-9_-]{1,64}")  # `note.<kind>` is then an ASSET_PATTERN
LOG_LEVELS = tuple(LEVELS)
FAULTS = ("", "kill_after_escrow", "kill_after_finalize", "poison_credit", "kill_after_grab",
          "lose_like_batches", "poison_use_settle")


def fan_card(creator: str, rare: bool = False) -> str:
    """The asset of `creator`'s fan-club small cards (or rare small cards)."""
    return f"{FAN_CARDS[rare]}.{creator}"


def fan_card_of(asset: str) -> tuple[str, bool] | None:
    """(creator, rare) of a fan-club card asset; None for any other asset."""
    family, dot, creator = asset.partition(".")
    if not dot or family not in FAN_CARDS or not _CREATOR.fullmatch(creator):
        return None
    return creator, family == FAN_CARDS[1]


@dataclass(frozen=True)
class Settings:
    # where and how to run
    host: str = "127.0.0.1"
    port: int = 8700
    data_dir: Path = Path("giftwire-data")
    redis_url: str = ""  # empty: start the embedded Valkey server in data_dir
    redis_cluster: bool = False  # REDIS_URL names a node of a Redis Cluster
    token_secret: str = ""  # empty: generated into data_dir on first start
    admin_key: str = ""  # empty: generated into data_dir on first start
    log_level: str = "info"
    log_format: str = "json"  # json (one object per line) or text
    durability: str = "normal"  # normal: AOF fsync every second; strict: fsync before confirming
    aof_rewrite_min_mb: int = AOF_REWRITE_MIN_MB  # the embedded Valkey's AOF rewrite threshold

    # assets: one note-card asset per kind (`note.<kind>`), all giftable
    note_kinds: tuple[str, ...] = DEFAULT_NOTE_KINDS
    # (and each creator's fan-club cards, `small_card.<creator>`, `small_card_rare.<creator>`)
    other_assets: tuple[str, ...] = ("popularity", "coin")

    # gifting rules (SPEC section 1, tables 1 and 3)
    timezone: str = "+08:00"  # IANA name or fixed offset ±HH:MM[:SS]
    gifts_per_day: int = 5
    vip_bonus_gifts: int = 2
    pair_gifts_per_day: int = 3
    # a sender's refused gifts recorded a day (each a record kept with the user's data): what
    # a client resending within a day needs, not what a script refused all day would write
    refusals_recorded_per_day: int = 100
    follow_min_s: int = 3 * 86400
    count_max: int = 999  # cards in one gift
    amount_max: int = 10**12  # any balance; far below 2**53 (Lua numbers are doubles)
    festival_cost_num: int = 6  # festival price = ceil(count * 6 / 5)
    festival_cost_den: int = 5
    festival_frame_days: int = 7  # a festival's avatar frame shows this long after its day
    newcomer_window_s: int = 7 * 86400
    newcomer_free_cards: int = 5
    mentor_reward_asset: str = "note.do"
    mentor_reward_cards: int = 2
    offer_timeout_s: int = 600
    offers_per_user_max: int = 100

    # the note economy (SPEC section 1, "Kinds, sets and stock"): a task reward draws each
    # card's kind by these weights among the kinds still in stock (`<kind>:<weight>`; a kind
    # not named is never drawn; empty: DEFAULT_WEIGHT each, RARE_WEIGHT for a kind `rare`)
    note_odds: tuple[str, ...] = ()
    reward_cards_max: int = 10  # cards one task reward may draw
    note_draw_ttl_s: int = 7 * 86400  # a reward's draw is kept this long for its retries
    set_kinds: tuple[str, ...] = ()  # the kinds a complete set holds one of (empty: every kind)
    set_reward: str = "coin:100"  # `<asset>:<amount>` granted (from mint) for each set redeemed
    sets_per_redemption_max: int = 100

    # partner apps (SPEC section 1, table 2): `<channel>[:<bonus>[+<bonus>]]`, bonuses
    # `points=<N>` and `campaign` (server/partners/rules.py); their users' tokens are signed
    # with the partner's secret: `<channel>=<secret>` here, else derived from token_secret
    partners: tuple[str, ...] = ()
    partner_secrets: tuple[str, ...] = ()

    # enterprise accounts (SPEC section 1, table 6)
    brand_fans_min: int = 500_000  # brand marketing: a verified brand with this many fans
    order_gift_min_fen: int = 10_000  # e-commerce: an order paid at least this triggers a gift
    order_gift: str = "note.do:1"  # `<note card>:<cards>` the buyer gets for such an order
    issuance_users_max: int = 10_000  # users one batch issuance may name

    # regions (SPEC section 1, table 5): `<region>:<policy>[+<policy>]`, policies `approval`
    # (a gift to the region's users waits for a third party's approval), `approval=<sender
    # gender>><recipient gender>` (only such gifts), `gdpr` (server/regions/rules.py)
    regions: tuple[str, ...] = ()
    approval_timeout_s: int = 86400  # an approval not given by then voids the gift

    # gateway bounds
    frame_max_bytes: int = 4096  # protocol limit: larger frames get an error reply
    ws_max_bytes: int = 65536  # transport limit: larger messages close with 1009
    auth_timeout_s: float = 10.0
    pending_requests_max: int = 64  # per connection, gift requests awaiting a reply
    request_timeout_s: float = 60.0  # a request unanswered this long gets `timeout` (its slot freed)
    requests_per_s: float = 50.0  # per connection, sustained (token bucket)
    request_burst: float = 100.0  # per connection, burst
    connections_per_user_max: int = 8  # per gateway process
    send_queue_max_bytes: int = 1 << 20  # per connection; a client over it is cut off
    close_timeout_s: float = 10.0  # a close frame may wait this long behind unread data
    bad_frames_max: int = 1000  # per connection within bad_frames_window_s → close 4009
    bad_frames_window_s: float = 10.0
    # the HTTP handshake (server/gateway/http_limits.py): uvicorn bounds none of it
    http_head_max_bytes: int = 8192  # 414/431 above; as nginx and websockets' line limit: tokens fit
    http_headers_max: int = 100  # 431 above; under websockets' 128, which uvicorn never answers
    handshake_timeout_s: float = 10.0  # connect → head (+ WebSocket accept); slow links need ~1 s
    handshakes_max: int = 1024  # per process; 503 above: what a flood of stalled clients can hold
    # per address (a trusted proxy's excepted): one address cannot take every slot above, and a
    # quarter leaves room for a carrier's NAT, whose users all reconnect at once after a restart
    handshakes_per_address_max: int = 256
    # an idle keep-alive HTTP connection is closed after this: longer than common clients'
    # own expiry (httpx and Node 5 s, aiohttp 15 s), so a client never reuses a connection the
    # server is closing at that instant (uvicorn's 5 s raced httpx's 5 s)
    http_keep_alive_s: int = 20

    # settlement
    partitions: int = 1  # settlement stream partitions (by acting user)
    stream_backlog_max: int = 100_000  # gift.send is refused with `overloaded` above it
    xadd_batch_max: int = 256  # gift requests the gateway appends in one round trip
    worker_batch_max: int = 256
    worker_processes: int = 0  # `serve`: 0 runs the worker in the gateway's process
    # `worker`/`jobs`: their own /metrics on this port (0: none); serve's children take it
    # and the ports after it
    worker_metrics_port: int = 0
    # `serve`: the jobs that run apart from settlement (the risk engine) in a `giftwire jobs`
    # process of their own, where they take no CPU from settlement or the gateway
    jobs_process: bool = True
    apart_jobs: bool = True  # this worker runs those jobs (off beside a `giftwire jobs`)
    worker_block_ms: int = 200
    claim_idle_ms: int = 15_000  # a pending entry idle this long is taken over
    # a worker's hold on a partition lapses this long after its last renewal (renewed every
    # third of it): how soon a dead worker's partitions pass to the others
    partition_lease_ms: int = 3_000
    # an entry that failed (or was handed out without being acknowledged) this many times is
    # a poison entry: retrying forever would stall nothing but hide it, so it is set aside.
    # 3 tries take ~2 × claim_idle_ms (30 s), inside request_timeout_s (60 s): the request
    # still waits and hears `settlement_failed` (with 5, ~60-75 s, it had timed out first)
    settle_attempts_max: int = 3
    # handed out this many times without any worker acknowledging or failing it: it kills its
    # worker (set high: a batch aborted by a storage outage is handed out again too)
    settle_deliveries_max: int = 20
    dead_letters_max: int = 10_000  # per partition; the oldest are trimmed beyond it
    # a slot move takes seconds; masters that disagree about a slot's owner never settle
    settle_stall_alert_s: float = 30.0
    sweep_interval_ms: int = 500
    sweep_batch_max: int = 256
    token_ttl_s: int = 86400

    # live rooms
    room_tick_ms: int = 100  # room events are coalesced into one frame per room per tick
    rooms_per_connection_max: int = 8
    room_share_ttl_ms: int = 6000  # a gateway's audience share lapses this long after its report
    room_share_refresh_ms: int = 2000  # a gateway re-reports its shares this often
    room_audience_report_ms: int = 250  # a changed share is reported at most this often
    room_streamer_cache_ms: int = 2000  # a gateway re-reads a room's streamer for likes this often
    room_queue_max_bytes: int = 512 << 10  # room frames are dropped (not queued) beyond this
    room_recorded_ttl_s: int = 7 * 86400  # a room remembers a recorded gift this long
    # the live-stream boost: `<audience below>:<num>/<den>`, ascending, `*` last (SPEC table 3)
    wish_tiers: tuple[str, ...] = ("1000:1/1", "10000:2/1", "*:3/1")
    wish_end_check_ms: int = 500  # how often workers end wishes whose end time passed
    # likes (SPEC section 3): the speed rule, fan-club levels, room effects
    like_window_ms: int = 1000  # the speed rule's sliding window
    likes_per_window_max: int = 15  # likes counted per window per user; the rest are refused
    like_levels: tuple[str, ...] = ("100", "1000", "10000")  # Lv.1 / Lv.2 / Lv.3 at these totals
    room_effects: tuple[str, ...] = ("1000:hearts", "10000:fireworks")  # `<likes>:<name>`
    risk_stream_max: int = 100_000  # entries kept per risk partition (trimmed beyond)
    like_task_likes: int = 30  # the first 30 likes of a local day for a streamer earn a small card
    like_streak_days: int = 7  # that many task days in a row earn a rare small card

    # fan groups (SPEC section 4)
    group_capacity: int = 500  # a new group's capacity unless the platform gives one
    groups_per_connection_max: int = 16  # groups one connection may watch at once
    group_history_max: int = 1000  # messages kept per group (the newest; exact)
    group_history_max_age_s: int = 30 * 86400  # messages older than this are dropped
    group_posted_ttl_s: int = 86400  # a retried post (same msg_id) shows once within this
    group_flood_messages: int = 5  # more messages than this in a flood window is a violation
    group_flood_window_ms: int = 10_000
    group_strikes: int = 2  # violations (ads, flooding) that remove a member; the first warns
    # an ad: a message containing one of these, compared without case, width or spaces
    group_ad_terms: tuple[str, ...] = ("http://", "https://", "www.", ".com", "t.me/", "wechat",
                                       "weixin", "vx:", "加微信", "加v", "qq群")
    group_log_max: int = 1000  # moderation log lines kept per group
    group_invites_max: int = 100  # live invite codes per group
    group_day_ttl_s: int = 40 * 86400  # a group's daily metrics are kept this long
    poll_throttle_ms: int = 1000  # a poll's live results reach the group at most this often
    polls_open_max: int = 20  # open polls per group
    envelope_ttl_s: int = 86400  # what is left in a red envelope returns to its sender then
    envelopes_open_max: int = 100  # open red envelopes per group
    group_tick_ms: int = 500  # how often workers close due polls and refund expired envelopes

    # popularity cards (SPEC section 2)
    points_lot_ttl_s: int = 48 * 3600  # every grant of points expires this long after it
    signin_points: tuple[str, ...] = ("50", "25", "200")  # day 1, added per streak day, at most
    task_posts: int = 6  # on-topic posts in a weekly cycle that earn the task reward, once
    task_points: int = 500
    points_per_yuan: int = 8  # purchase: points = fen × 8 // 100 (whole points, floored)
    coin_per_yuan: int = 1  # coin a yuan: `popularity.buy` spends whole yuan of coin
    exchange_cards: int = 10  # small cards that exchange into `exchange_points` points
    exchange_points: int = 100
    card_prices: tuple[str, ...] = ("video_heating:100", "live_recommendation:200", "fan_reach:300")
    card_uses_per_day: int = 3
    fan_reach_followers: int = 10_000
    # a card use's interest targeting: 3-5 core tags and at most 2 extended ones (SPEC)
    interest_core_min: int = 3
    interest_core_max: int = 5
    interest_extended_max: int = 2
    mature_days: int = 90  # advanced cards: registered this long and `mature_followers` followers
    mature_followers: int = 1000
    boost_duration_s: int = 6 * 3600  # a use boosts for this long from its start
    boost_full_s: int = 2 * 3600  # full weight this long, then × `boost_decay` every step
    boost_decay: str = "0.85"
    boost_decay_step_s: int = 30 * 60
    # dashboard warnings (basis points): completion below, interaction below, bounce above
    warn_completion_bp: int = 2500
    warn_interaction_bp: int = 500
    warn_bounce_bp: int = 7500
    popularity_tick_ms: int = 500  # how often workers start and end scheduled uses
    # the expiry sweep burns idle users' expired lots (reads and spends burn them anyway)
    points_sweep_tick_ms: int = 1000
    points_sweep_batch_max: int = 256  # users one sweep tick looks at

    # the risk engine (SPEC table 4)
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For is believed
    # off by default: a platform turns it on once its thresholds fit its traffic (a bulk
    # script or a load test is automation by these rules)
    risk_enabled: bool = False
    # refuse v1 tokens (no device fingerprint): without a device, the shared-device rule and
    # the device blacklist cannot see an account
    token_device_required: bool = False
    risk_tick_ms: int = 100  # gateways flush action signals this often
    # workers judge them this often: a longer tick judges more of a user's actions in one
    # call (the engine's cost) and decides later (detection time)
    risk_engine_tick_ms: int = 250
    device_accounts_max: int = 3  # accounts one device may serve in the window; more: restricted
    device_window_s: int = 24 * 3600
    restriction_s: int = 24 * 3600  # a shared-device restriction (gifting) lasts this long
    cluster_accounts: int = 20  # accounts of one /24 (/64) gifting one recipient in the window
    cluster_prefix_v4: int = 24  # an IP cluster: the addresses of one IPv4 network this long
    cluster_prefix_v6: int = 64  # ... and of one IPv6 network this long
    cluster_window_s: int = 600
    # addresses the IP-cluster rule does not judge (local tools; behind a proxy set
    # `trusted_proxies`, or every client looks like the proxy)
    risk_exempt_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    freeze_s: int = 48 * 3600  # a cluster's accounts are frozen (gifting, grabbing) this long
    bot_actions_per_s: int = 10  # more than this, sustained for `bot_window_s`: automation
    bot_window_s: int = 5
    bot_regular_intervals: int = 20  # intervals judged for regularity
    bot_regular_cv: str = "0.05"  # a coefficient of variation below this is not human
    risk_cases_max: int = 100_000  # cases kept (the oldest resolved are trimmed beyond)

    # history bounds
    events_per_user_max: int = 1000
    events_max_age_s: int = 7 * 86400  # a user's log disappears this long after its newest event
    resume_page_max: int = 500  # events read per round trip when a client resumes
    ledger_page_max: int = 200
    bulk_items_max: int = 10_000

    # fault injection for the crash tests: "kill_after_escrow" / "kill_after_finalize" SIGKILL
    # the worker right after the first sender-side step / the first confirmation it applies;
    # "poison_credit" makes the recipient step fail for gift ids starting with "poison".
    fault: str = ""
    # a clock tests (and a development deployment) can move forward: refused unless set
    test_clock: bool = False

    @functools.cached_property
    def approvals_arg(self) -> str:
        """The regions' approval rules as the recipient's gift step takes them (parsed once)."""
        from server.regions import rules  # pure

        parsed = rules.parse(self.regions)
        assert not isinstance(parsed, str), parsed  # refused at start-up (problems)
        return rules.approvals_arg(parsed)

    @property
    def note_assets(self) -> tuple[str, ...]:
        return tuple(f"note.{k}" for k in self.note_kinds)

    @property
    def events_bound(self) -> str:
        """The event log's bounds, and how events are published, as the Lua steps take them."""
        return f"{self.events_per_user_max}:{self.events_max_age_s}:{'s' if self.redis_cluster else 'p'}"

    @property
    def wish_tiers_arg(self) -> str:
        """The tiers as the quote script takes them: `<limit>:<num>:<den>,…`."""
        return tiers_arg(self.wish_tiers)

    @property
    def room_queue_bytes(self) -> int:
        """Where room frames stop being queued: never above half the send queue, so room
        traffic alone can never get a viewer cut off."""
        return min(self.room_queue_max_bytes, self.send_queue_max_bytes // 2)

    @property
    def publish_mode(self) -> str:
        """How Lua publishes: `s` (SPUBLISH, to the owner's slot, on a cluster) or `p`."""
        return "s" if self.redis_cluster else "p"

    @property
    def assets(self) -> tuple[str, ...]:
        """The assets with fixed names (fan-club cards are one per creator: `is_asset`)."""
        return self.note_assets + self.other_assets

    def is_asset(self, asset: str) -> bool:
        return asset in self.assets or fan_card_of(asset) is not None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


# A wish tier's multiplier num/den: each term at most 10^6 and the multiplier at most 100×,
# far past any platform's table, so count × festival × tier stays exact in Lua's doubles (an
# unbounded one stalled every boosted gift in the room in settlement).
WISH_TERM_MAX = 10**6
WISH_MULTIPLIER_MAX = 100


def tier_problems(wish_tiers: tuple[str, ...] | list[str]) -> list[str]:
    """What is wrong with gift-wish tiers `<viewers below or *>:<num>/<den>` (config or a
    room's own, set through the admin API)."""
    out = []
    tiers = [t.partition(":") for t in wish_tiers]
    limits = [lim for lim, _, _ in tiers]
    for lim, _, price in tiers:
        num, _, den = price.partition("/")
        if not (digits(num) and digits(den) and int(den) > 0 and int(num) >= int(den)):
            out.append(f"wish tier {lim}:{price}: the multiplier must be num/den with num ≥ den > 0 "
                       "(a boost never makes a gift cheaper: the surplus is burned)")
        elif int(num) > WISH_TERM_MAX or int(num) > WISH_MULTIPLIER_MAX * int(den):
            out.append(f"wish tier {lim}:{price}: num and den at most {WISH_TERM_MAX:,}, the "
                       f"multiplier at most {WISH_MULTIPLIER_MAX}")
    if not limits or limits[-1] != "*" or "*" in limits[:-1] \
            or not all(digits(x) for x in limits[:-1]) \
            or [int(x) for x in limits[:-1]] != sorted({int(x) for x in limits[:-1]}):
        out.append("wish tiers must ascend by audience and end with `*`")
    return out


def digits(text: str) -> bool:
    """ASCII digits only (`str.isdigit` also takes `²` and other digits `int` refuses)."""
    return bool(_DIGITS.fullmatch(text))


WHOLE_DIGITS_MAX = 20  # past any bound below (and `int` refuses 4,300 digits with a traceback)


def whole_number(text: str) -> bool:
    """A whole number, maybe negative, in ASCII digits (`int` also takes `５`, `1_0`, spaces)."""
    return bool(_INTEGER.fullmatch(text))


def tiers_arg(wish_tiers: tuple[str, ...] | list[str]) -> str:
    """Tiers as the quote script takes them: `<limit>:<num>:<den>,…`."""
    return ",".join(t.replace("/", ":") for t in wish_tiers)


class SettingError(ValueError):
    """A `GIFTWIRE_*` value that is not of its setting's type."""


# settings that must be above 0: periods (a zero tick spins its loop: a gateway at 100% CPU
# idle), windows and steps (divisors), batch and page sizes (a zero one never makes progress),
# and these: a zero partition count divides by zero, a zero read wait blocks the worker's
# read forever (BLOCK 0)
POSITIVE = ("room_tick_ms", "partitions", "worker_block_ms", "festival_cost_den",
            "sweep_interval_ms", "wish_end_check_ms", "group_tick_ms", "popularity_tick_ms",
            "points_sweep_tick_ms", "risk_tick_ms", "risk_engine_tick_ms", "room_share_refresh_ms",
            "like_window_ms", "bad_frames_window_s", "boost_decay_step_s", "group_flood_window_ms",
            "device_window_s", "cluster_window_s", "bot_window_s", "xadd_batch_max",
            "worker_batch_max", "sweep_batch_max", "points_sweep_batch_max", "resume_page_max",
            "ledger_page_max", "bulk_items_max", "reward_cards_max", "note_draw_ttl_s",
            "sets_per_redemption_max", "approval_timeout_s", "issuance_users_max",
            "handshakes_max", "handshakes_per_address_max", "http_keep_alive_s",
            "settle_stall_alert_s", "coin_per_yuan", "exchange_cards",
            # and the risk engine's: a zero threshold, count or length judges nothing (or
            # everything), or divides by zero
            "device_accounts_max", "cluster_accounts", "bot_actions_per_s",
            "bot_regular_intervals", "restriction_s", "freeze_s",
            # and settlement's: no attempt at all dead-letters every entry, a zero idle time
            # takes over every entry in flight, a zero bound drops every dead letter, a zero
            # age drops every user's event log
            "settle_attempts_max", "settle_deliveries_max", "claim_idle_ms",
            "dead_letters_max", "events_max_age_s",
            # and the gateway's bounds: at 0 a gateway starts and answers /health, yet refuses
            # every request, connection or frame
            "http_head_max_bytes", "http_headers_max", "handshake_timeout_s", "auth_timeout_s",
            "connections_per_user_max", "send_queue_max_bytes", "ws_max_bytes", "frame_max_bytes",
            "stream_backlog_max", "pending_requests_max", "request_timeout_s", "requests_per_s",
            "request_burst", "close_timeout_s", "count_max")
# Whole numbers reach Lua, where integers are exact to 2^52 (`int_arg` refuses more): every
# setting stays far below, durations within ten years, and the amount bound within the
# 14 digits Lua's JSON writes exactly, with room for the refunds a balance may pass it by.
INT_SETTING_MAX = 10**15
DURATION_MAX_S = 10 * 365 * 86400
AMOUNT_MAX_LIMIT = 10**13
RATIO_MAX = 1000  # a festival price's numerator and denominator
LEASE_MAX_MS = 60_000  # a dead worker's partitions wait at most this long for another
WORKER_BLOCK_MAX_MS = 10_000  # a stop waits for the read in progress: at most this
SECRET_MIN_CHARS = 16  # a token secret or an admin key given in the environment
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
LEASE_MIN_MS = 300  # renewed every third of it: shorter would beat Redis more than it settles


def _range_problems(s: Settings) -> list[str]:
    """Upper bounds: what Lua computes exactly, what a stop or a take-over waits for."""
    out = []
    for f in dataclasses.fields(Settings):
        value = getattr(s, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        limit: float = INT_SETTING_MAX
        if f.name.endswith("_s") and not f.name.endswith("_per_s"):  # (a rate is no duration)
            limit = DURATION_MAX_S
        elif f.name.endswith("_ms"):
            limit = DURATION_MAX_S * 1000
        if value > limit:
            out.append(f"GIFTWIRE_{f.name.upper()} must be at most {limit:,} (it is {value:,})")
    if s.amount_max > AMOUNT_MAX_LIMIT:
        out.append(f"GIFTWIRE_AMOUNT_MAX must be at most {AMOUNT_MAX_LIMIT:,}: balances stay "
                   f"within the 14 digits Lua's JSON writes exactly (it is {s.amount_max:,})")
    if not s.festival_cost_den <= s.festival_cost_num <= RATIO_MAX:
        out.append(f"GIFTWIRE_FESTIVAL_COST_NUM must be at least GIFTWIRE_FESTIVAL_COST_DEN and "
                   f"at most {RATIO_MAX}: a festival never makes a gift cheaper (it is "
                   f"{s.festival_cost_num}/{s.festival_cost_den})")
    for name, low, high in (("cluster_prefix_v4", 8, 32), ("cluster_prefix_v6", 16, 128),
                            ("interest_core_min", 1, 20), ("interest_core_max", 1, 20),
                            ("interest_extended_max", 0, 20)):
        if not low <= getattr(s, name) <= high:
            out.append(f"GIFTWIRE_{name.upper()} must be from {low} to {high} (it is "
                       f"{getattr(s, name)})")
    if s.interest_core_min > s.interest_core_max:
        out.append(f"GIFTWIRE_INTEREST_CORE_MIN must be at most GIFTWIRE_INTEREST_CORE_MAX (they "
                   f"are {s.interest_core_min} and {s.interest_core_max})")
    if s.partition_lease_ms > LEASE_MAX_MS:
        out.append(f"GIFTWIRE_PARTITION_LEASE_MS must be at most {LEASE_MAX_MS} (it is "
                   f"{s.partition_lease_ms})")
    if s.worker_block_ms > WORKER_BLOCK_MAX_MS:
        out.append(f"GIFTWIRE_WORKER_BLOCK_MS must be at most {WORKER_BLOCK_MAX_MS}: a stop "
                   f"waits for the read in progress (it is {s.worker_block_ms})")
    for name in ("token_secret", "admin_key"):
        value = getattr(s, name)
        if value and len(value) < SECRET_MIN_CHARS:
            out.append(f"GIFTWIRE_{name.upper()} must be at least {SECRET_MIN_CHARS} characters "
                       f"(or unset: one is generated into the data dir)")
    if s.redis_url and not s.redis_url.startswith(REDIS_SCHEMES):
        out.append(f"REDIS_URL (GIFTWIRE_REDIS_URL) must be a {', '.join(REDIS_SCHEMES)} URL, "
                   f"not {s.redis_url!r}")
    return out


def problems(s: Settings) -> list[str]:
    """What makes a configuration unsafe to run with (checked at start-up), each naming its
    variable."""
    out = [f"GIFTWIRE_WISH_TIERS: {p}" for p in tier_problems(s.wish_tiers)]
    for f in dataclasses.fields(Settings):
        value = getattr(s, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            out.append(f"GIFTWIRE_{f.name.upper()} must be a finite number (it is {value})")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            out.append(f"GIFTWIRE_{f.name.upper()} must not be negative (it is {value})")
    for name in POSITIVE:  # periods: 0 would spin a loop or divide by zero (negatives: above)
        if getattr(s, name) == 0:
            out.append(f"GIFTWIRE_{name.upper()} must be more than 0 (it is {getattr(s, name)})")
    out += _range_problems(s)
    if not 0 <= s.port <= 65535:
        out.append(f"GIFTWIRE_PORT must be a port, 0–65535 (it is {s.port})")
    if s.log_level.lower() not in LOG_LEVELS:
        out.append(f"GIFTWIRE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {s.log_level!r}")
    if s.fault not in FAULTS:
        out.append(f"GIFTWIRE_FAULT must be empty or one of {', '.join(FAULTS[1:])}, "
                   f"not {s.fault!r}")
    out += _asset_problems(s) + _network_problems(s)
    from server.risk import rules as risk_rules  # pure

    out += risk_rules.setting_problems(s)
    for name, low, high in (("boost_decay", 0.0, 1.0), ("bot_regular_cv", 0.0, None)):
        text = getattr(s, name)
        try:
            parsed = float(text)
        except ValueError:
            parsed = math.nan
        if not (math.isfinite(parsed) and low <= parsed and (high is None or parsed <= high)):
            span = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            out.append(f"GIFTWIRE_{name.upper()} must be a number {span}, not {text!r}")
    if s.worker_metrics_port:
        last = s.worker_metrics_port + s.worker_processes  # serve's children take the ports up
        if last > 65535:
            out.append(f"GIFTWIRE_WORKER_METRICS_PORT must leave room below 65536 for "
                       f"{s.worker_processes + 1} ports (it is {s.worker_metrics_port})")
        elif s.worker_metrics_port <= s.port <= last:
            out.append(f"GIFTWIRE_WORKER_METRICS_PORT's ports {s.worker_metrics_port}-{last} "
                       f"take the gateway's port {s.port}")
    if s.partition_lease_ms < LEASE_MIN_MS:
        out.append(f"GIFTWIRE_PARTITION_LEASE_MS must be at least {LEASE_MIN_MS} "
                   f"(it is {s.partition_lease_ms})")
    if s.log_format not in ("json", "text"):
        out.append(f"GIFTWIRE_LOG_FORMAT must be json or text, not {s.log_format!r}")
    try:
        from server.days import parse_timezone

        parse_timezone(s.timezone)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        out.append(f"GIFTWIRE_TIMEZONE {s.timezone!r} is neither an IANA zone nor ±HH:MM[:SS]")
    levels = [x for x in s.like_levels]
    if not levels or not all(digits(x) and int(x) > 0 for x in levels) \
            or [int(x) for x in levels] != sorted({int(x) for x in levels}):
        out.append("GIFTWIRE_LIKE_LEVELS must be positive whole numbers, strictly ascending")
    if len(s.signin_points) != 3 or not all(digits(x) for x in s.signin_points):
        out.append("GIFTWIRE_SIGNIN_POINTS must be three whole numbers: day 1, added per streak "
                   f"day, at most (it is {','.join(s.signin_points)!r})")
    if len(s.room_effects) > EFFECTS_MAX:  # a snapshot lists the effects fired
        out.append(f"GIFTWIRE_ROOM_EFFECTS has more than {EFFECTS_MAX} effects")
    for name, items in (("ROOM_EFFECTS", s.room_effects), ("CARD_PRICES", s.card_prices)):
        for item in items:
            head, sep, tail = item.partition(":")
            number, label = (head, tail) if name == "ROOM_EFFECTS" else (tail, head)
            if not sep or not label or not digits(number) or int(number) < 1:
                out.append(f"GIFTWIRE_{name} item {item!r} is not "
                           + ("`<likes>:<name>`" if name == "ROOM_EFFECTS" else "`<card>:<points>`"))
    priced = [item.partition(":")[0] for item in s.card_prices]
    if sorted(priced) != sorted(CARDS):  # a use of an unpriced card would fail in settlement
        out.append(f"GIFTWIRE_CARD_PRICES must price each card once: {', '.join(CARDS)} "
                   f"(it prices {', '.join(priced) or 'none'})")
    return out


def _asset_problems(s: Settings) -> list[str]:
    out = []
    bad = [k for k in s.note_kinds if not _NOTE_KIND.fullmatch(k)]
    if bad or not s.note_kinds:
        out.append(f"GIFTWIRE_NOTE_KINDS must be kinds of letters, digits, _ or - (not {bad!r})"
                   if bad else "GIFTWIRE_NOTE_KINDS must name at least one kind")
    bad = [a for a in s.other_assets if not _ASSET.fullmatch(a) or fan_card_of(a) is not None]
    if bad:
        out.append(f"GIFTWIRE_OTHER_ASSETS must be asset names (lower-case letters and _, at "
                   f"most 24) other than fan-club cards, not {bad!r}")
    names = s.note_assets + s.other_assets
    if len(set(names)) != len(names):
        out.append("GIFTWIRE_NOTE_KINDS and GIFTWIRE_OTHER_ASSETS name an asset twice")
    if not out:  # odds and sets name kinds and assets: judged once those are valid
        out += _economy_problems(s)
    out += partner_problems(s)
    asset, _, cards = s.order_gift.rpartition(":")
    if s.count_max > 0 and (asset not in s.note_assets or not digits(cards)
                            or not 1 <= int(cards) <= s.count_max):
        out.append(f"GIFTWIRE_ORDER_GIFT must be `<note card>:<cards>`, 1 <= cards <= "
                   f"GIFTWIRE_COUNT_MAX (it is {s.order_gift!r})")
    from server.regions import rules as region_rules  # pure: the grammar of GIFTWIRE_REGIONS

    parsed = region_rules.parse(s.regions)
    if isinstance(parsed, str):
        out.append(f"GIFTWIRE_REGIONS: {parsed}")
    if s.mentor_reward_asset not in s.note_assets:  # minted as cards: never a managed asset
        out.append(f"GIFTWIRE_MENTOR_REWARD_ASSET must be a note card "
                   f"({', '.join(s.note_assets)}), not {s.mentor_reward_asset!r}")
    return out


NOTE_WEIGHT_MAX = 10**6  # per kind: odds stay exact as ratios of whole numbers
REWARD_CARDS_LIMIT = 1000  # cards one reward may draw, at most: one random number each in ARGV
# the default odds: seven notes at 14% and one rare kind at 2% (of 100)
DEFAULT_WEIGHT, RARE_WEIGHT = 14, 2


def note_weights(s: Settings) -> dict[str, int]:
    """`GIFTWIRE_NOTE_ODDS` as asset → weight, every note asset present (0: never drawn).
    Call only on settings `problems` accepted."""
    if not s.note_odds:
        return {f"note.{k}": RARE_WEIGHT if k == "rare" else DEFAULT_WEIGHT for k in s.note_kinds}
    named = {k: int(w) for k, _, w in (item.partition(":") for item in s.note_odds)}
    return {f"note.{k}": named.get(k, 0) for k in s.note_kinds}


def set_assets(s: Settings) -> tuple[str, ...]:
    """The assets a complete set holds one of each of."""
    return tuple(f"note.{k}" for k in (s.set_kinds or s.note_kinds))


def set_reward(s: Settings) -> tuple[str, int]:
    """`GIFTWIRE_SET_REWARD` as (asset, amount per set)."""
    asset, _, amount = s.set_reward.rpartition(":")
    return asset, int(amount)


def _economy_problems(s: Settings) -> list[str]:
    out = []
    items = [item.partition(":") for item in s.note_odds]
    kinds = [k for k, _, _ in items]
    if any(not sep or k not in s.note_kinds or not digits(w) or int(w) > NOTE_WEIGHT_MAX
           for k, sep, w in items) or len(set(kinds)) != len(kinds):
        out.append(f"GIFTWIRE_NOTE_ODDS must be `<kind>:<weight>` items, each a kind of "
                   f"GIFTWIRE_NOTE_KINDS named once with a whole weight <= {NOTE_WEIGHT_MAX} "
                   f"(it is {','.join(s.note_odds)!r})")
    elif items and not any(int(w) for _, _, w in items):
        out.append("GIFTWIRE_NOTE_ODDS must give at least one kind a weight above 0")
    # each bounds one Lua call's arguments (a random number per card, a set per redemption)
    # (and above 0: POSITIVE)
    if s.reward_cards_max > REWARD_CARDS_LIMIT:
        out.append(f"GIFTWIRE_REWARD_CARDS_MAX must be at most {REWARD_CARDS_LIMIT}")
    if s.sets_per_redemption_max > REDEEM_SETS_MAX:
        out.append(f"GIFTWIRE_SETS_PER_REDEMPTION_MAX must be at most {REDEEM_SETS_MAX} (the "
                   f"protocol's bound)")
    bad = [k for k in s.set_kinds if k not in s.note_kinds]
    if bad or len(set(s.set_kinds)) != len(s.set_kinds):
        out.append(f"GIFTWIRE_SET_KINDS must name kinds of GIFTWIRE_NOTE_KINDS, each once "
                   f"(not {','.join(s.set_kinds)!r})")
    asset, _, amount = s.set_reward.rpartition(":")
    # granted from mint as a plain balance: popularity points are lots, fan-club cards earned
    if asset not in s.assets or asset == "popularity" or not digits(amount) \
            or not 1 <= int(amount) <= s.amount_max:
        out.append(f"GIFTWIRE_SET_REWARD must be `<asset>:<amount>`, a note card or another "
                   f"asset but popularity, and 1 <= amount <= GIFTWIRE_AMOUNT_MAX "
                   f"(it is {s.set_reward!r})")
    return out


def partner_problems(s: Settings) -> list[str]:
    from server.partners import rules  # pure; it names the grammar both settings follow

    parsed = rules.parse(s.partners)
    if isinstance(parsed, str):
        return [f"GIFTWIRE_PARTNERS: {parsed}"]
    return [f"GIFTWIRE_PARTNER_SECRETS: {p}"
            for p in rules.secret_problems(parsed, s.partner_secrets, s.token_secret)]


def _network_problems(s: Settings) -> list[str]:
    from server.gateway.peers import parse_trusted  # the parser both settings go through

    out = []
    for name, nets in (("TRUSTED_PROXIES", s.trusted_proxies),
                       ("RISK_EXEMPT_NETWORKS", s.risk_exempt_networks)):
        for net in nets:
            try:
                parse_trusted((net,))
            except ValueError:
                out.append(f"GIFTWIRE_{name} item {net!r} is not an address or network "
                           "(`10.0.0.0/8`, `::1`)")
    return out


def _parse(value: str, like: Any, name: str = "") -> Any:
    if isinstance(like, bool):
        word = value.strip().lower()
        if word not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
            raise SettingError(f"GIFTWIRE_{name.upper()} must be 1 or 0 (true/false), not {value!r}")
        return word in ("1", "true", "yes", "on")
    # numbers in ASCII only (`int` also takes `５`, `٣`, `1_0` and surrounding spaces)
    if isinstance(like, int):
        if not whole_number(value) or len(value) > WHOLE_DIGITS_MAX:
            raise SettingError(f"GIFTWIRE_{name.upper()} must be a whole number of at most "
                               f"{WHOLE_DIGITS_MAX} digits, not {value[:40]!r}")
        return int(value)
    if isinstance(like, float):
        if not _DECIMAL.fullmatch(value):
            raise SettingError(f"GIFTWIRE_{name.upper()} must be a number, not {value!r}")
        return float(value)
    if isinstance(like, Path):
        return Path(value)
    if isinstance(like, tuple):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return value


def from_env(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from `GIFTWIRE_*` variables (and `REDIS_URL`), then overrides."""
    env = os.environ if environ is None else environ
    base = Settings()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = env.get(f"GIFTWIRE_{f.name.upper()}")
        if raw is not None:
            values[f.name] = _parse(raw, getattr(base, f.name), f.name)
    if "redis_url" not in values and env.get("REDIS_URL"):
        values["redis_url"] = env["REDIS_URL"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return dataclasses.replace(base, **values)


# One line per setting: the README's configuration table is generated from this
# (`python -m server.config`) and a test keeps the two in step.
DOCS: dict[str, str] = {
    "host": "address the gateway binds",
    "port": "port the gateway binds (0: any free port, printed at start)",
    "data_dir": "secrets.json and the embedded server's append-only file",
    "redis_url": "`REDIS_URL` also works; empty: start the embedded Valkey",
    "redis_cluster": "`REDIS_URL` names a node of a Redis/Valkey Cluster (sharded pub/sub, per-slot calls)",
    "token_secret": "HMAC secret shared with the platform; empty: generated in data_dir "
                    "(secrets.json holds only the secrets this environment does not set: one "
                    "set here removes the file's, for good, so any command run with it set "
                    "retires the generated one; set it for every command, or for none)",
    "admin_key": "bearer key of the admin API; empty: generated in data_dir (and printed once); "
                 "like the token secret, setting it removes the file's",
    "log_level": "`debug`, `info`, `warning`, `error` or `critical` (any case)",
    "log_format": "`json` (one object per line, with the transfer id on gift lines) or `text`",
    "aof_rewrite_min_mb": "the embedded Valkey compacts its append-only file once it has doubled and is at "
                          "least this large (MB); each rewrite forks Valkey and slows confirmations "
                          "for a moment (README Performance)",
    "durability": "`normal` (AOF fsync every second) or `strict` (a gift is confirmed only once on disk)",
    "note_kinds": "note-card kinds, comma-separated; each is the asset `note.<kind>`",
    "other_assets": "non-giftable assets, comma-separated (besides each creator's fan-club cards, "
                    "`small_card.<creator>` and `small_card_rare.<creator>`)",
    "timezone": "the platform's day: IANA name (`Asia/Shanghai`, `UTC`) or ±HH:MM[:SS], "
                "optionally after `UTC`; counters reset at its midnight",
    "gifts_per_day": "gifts a sender may send per day",
    "vip_bonus_gifts": "extra gifts per day for VIP senders",
    "pair_gifts_per_day": "gifts one recipient may take per day from one sender",
    "refusals_recorded_per_day": "a sender's refused gifts recorded per day (a resend of one gets "
                                 "the same refusal); past them a refusal is kept two days, with "
                                 "the day's counters, and a resend after that is judged again",
    "follow_min_s": "how long the sender must have followed the recipient",
    "count_max": "cards in one gift",
    "amount_max": "bound on any amount, and on the balance a credit makes: a gift, an accept, "
                  "a grab (`balance_full`), a grant or a purchase past it is refused (far "
                  "below 2^53 and the 14 digits Lua's JSON writes exactly); refunds and the "
                  "small daily rewards are never refused, so a balance may pass it by those",
    "festival_cost_num": "festival price numerator (price = ceil(count × num / den))",
    "festival_cost_den": "festival price denominator",
    "festival_frame_days": "a festival's time-limited avatar frame (`festival.frame`, redeemed "
                           "on a festival day after a gift) shows until the end of that day plus "
                           "this many days",
    "newcomer_window_s": "how long after registration a user is a newcomer",
    "newcomer_free_cards": "cards a newcomer may gift free, paid by the promotion account",
    "mentor_reward_asset": "asset of the mentor reward: a note card (`note.<kind>`)",
    "mentor_reward_cards": "cards the newcomer and the mentor each get on the first gift",
    "offer_timeout_s": "how long a confirmation-required gift waits before it is voided",
    "offers_per_user_max": "pending offers one recipient may hold",
    "note_odds": "a task reward draws each card's kind by these weights, `<kind>:<weight>` "
                 "(whole, ≤ 1,000,000), among the kinds still in stock (a kind not named is "
                 "never drawn; empty: 14 for each kind and 2 for `rare`, so do…ti 14% and rare "
                 "2%); published by `GET /admin/v1/notes` and `notes.get`",
    "reward_cards_max": "cards one task reward (`POST /admin/v1/notes/rewards`) may draw (1–1,000)",
    "note_draw_ttl_s": "a task reward's draw not yet credited (a crash, or `amount_too_large`) "
                       "waits this long for the same reward again, which credits it; then its "
                       "cards go back to the stock (a worker's sweep, every minute)",
    "set_kinds": "the kinds a complete set holds one of each of (empty: every kind)",
    "set_reward": "what each redeemed set grants (from mint), `<asset>:<amount>`: a note card or "
                  "another asset but popularity",
    "sets_per_redemption_max": "sets one redemption may redeem (1–100)",
    "partners": "partner apps, `<channel>` or `<channel>:<bonus>[+<bonus>]` (channel: 1–24 of a-z, 0-9, "
                "_; at most 32): `points=<N>` (the recipient earns N popularity points per card of a "
                "gift from the channel) and `campaign` (both sides join the channel's joint "
                "campaign), each bonus once, e.g. `huoshan:points=2,duoshan:campaign,toutiao`",
    "brand_fans_min": "brand marketing (batch issuance) is for a verified brand with at least this "
                      "many fans",
    "order_gift_min_fen": "e-commerce: an order paid at least this (fen) in a shop window triggers a "
                          "gift to its buyer",
    "order_gift": "the gift such an order triggers, `<note card>:<cards>`",
    "issuance_users_max": "users one batch issuance (brand marketing, tiered by fan level) may name",
    "regions": "regions with a policy, `<region>:<policy>[+<policy>]` (region: 1–24 of a-z, 0-9, _ "
               "as `PUT /admin/v1/users` sets it): `approval` (every gift to the region's users waits "
               "for a third party's approval), `approval=<sender gender>><recipient gender>` (only "
               "such gifts, e.g. `approval=male>female`), `gdpr` (listed by `GET /admin/v1/regions`); "
               "a region names at least one, each once (one `approval`), e.g. "
               "`me:approval=male>female,eu:gdpr`",
    "approval_timeout_s": "a gift waiting for a third party's approval is voided (cards and quota "
                          "back to the sender) if none came within this",
    "partner_secrets": "`<channel>=<secret>` (16 characters or more) a partner signs its users' "
                       "tokens with; a partner not named here signs with a secret derived from "
                       "the token secret (`giftwire token --partner CHANNEL` mints with it, "
                       "`giftwire partner-secret CHANNEL` prints it)",
    "frame_max_bytes": "largest client frame; larger ones get `frame_too_large`",
    "ws_max_bytes": "largest WebSocket message at all; larger ones close with 1009",
    "auth_timeout_s": "time to authenticate before the connection is closed (4004)",
    "request_timeout_s": "a request to settlement unanswered this long is answered `error timeout` "
                         "(send it again: gift ids make that safe)",
    "pending_requests_max": "requests one connection may have awaiting replies",
    "requests_per_s": "requests per second one connection may sustain (`rate_limited` above)",
    "request_burst": "requests one connection may send in a burst",
    "connections_per_user_max": "connections of one user on one gateway (4005 above)",
    "send_queue_max_bytes": "bytes queued for one connection before it is cut off (4008)",
    "close_timeout_s": "how long a close frame may wait behind unread data before the socket is dropped",
    "bad_frames_max": "bad frames allowed per window before the connection closes (4009)",
    "bad_frames_window_s": "the window of `bad_frames_max`",
    "http_head_max_bytes": "largest HTTP request head (request line + headers); 414 or 431 above",
    "http_headers_max": "most headers in one HTTP request; 431 above",
    "handshake_timeout_s": "time from connect to a complete request head and WebSocket accept (408 above)",
    "handshakes_max": "connections of one process still in that phase (a WebSocket until its "
                      "token is checked); new ones get 503 above",
    "http_keep_alive_s": "an idle keep-alive HTTP connection is closed after this; keep a client's "
                         "own idle expiry below it",
    "handshakes_per_address_max": "connections of one process still in that phase from one client "
                                  "address (a trusted proxy's are not counted); new ones from it "
                                  "get 429 above",
    "partitions": "settlement stream partitions (by acting user); each is read by one "
                  "worker at a time: workers beyond this count stand by",
    "stream_backlog_max": "settlement backlog at which gift.send gets `overloaded` (a "
                          "request is refused while the backlog is this or more: the stream's "
                          "length sampled every 250 ms plus the gateway's own appends since, "
                          "so several gateways may pass it by what they add within 250 ms)",
    "xadd_batch_max": "gift requests a gateway appends to the stream in one round trip",
    "worker_processes": "`serve` only: settlement workers in processes of their own (0: one "
                        "worker inside the gateway process)",
    "worker_metrics_port": "`giftwire worker`/`jobs` serve `GET /metrics` (their settlement "
                           "counters) on `GIFTWIRE_HOST` at this port; `serve` gives its worker "
                           "processes this port and the next ones, its jobs process the one "
                           "after them (0: none)",
    "jobs_process": "`serve` only: run the periodic jobs that stand apart from settlement (the "
                    "risk engine) in a `giftwire jobs` process instead of the workers",
    "apart_jobs": "this worker runs the periodic jobs that stand apart from settlement (turn it "
                  "off in workers that run beside a `giftwire jobs` process)",
    "worker_batch_max": "stream entries a worker reads and applies at once",
    "worker_block_ms": "how long a worker's read waits for new entries",
    "claim_idle_ms": "idle time after which another worker takes over a pending entry",
    "partition_lease_ms": "a worker's hold on a settlement partition lapses this long after "
                          "its last renewal (renewed every third of it); one worker reads a "
                          "partition at a time",
    "settle_attempts_max": "failed attempts (or deliveries never acknowledged) before an entry "
                           "is moved to the dead-letter stream (retried every CLAIM_IDLE_MS: "
                           "keep (attempts - 1) × CLAIM_IDLE_MS under REQUEST_TIMEOUT_S, so the "
                           "request still waits for its `settlement_failed`; the same user's "
                           "later requests wait behind it and may be answered `timeout` first)",
    "settle_deliveries_max": "deliveries of an entry that no worker acknowledged (each died on "
                             "it) before it is moved to the dead-letter stream",
    "dead_letters_max": "dead-letter entries kept per partition (exactly; the oldest trimmed)",
    "settle_stall_alert_s": "a worker whose entries in hand keep failing this long (Redis "
                            "away, a slot that never finishes moving) logs an error, again "
                            "every this long, until they settle; "
                            "`giftwire_settlement_stalled_seconds` shows how long",
    "sweep_interval_ms": "how often a worker times out due offers",
    "sweep_batch_max": "offers timed out per sweep",
    "token_ttl_s": "default lifetime of `giftwire token` tokens",
    "room_tick_ms": "room events are coalesced into one frame per room per tick of this length; "
                    "ticks run on a fixed grid (a slow fan-out does not stretch the next one; a "
                    "tick missed while one ran late is skipped)",
    "rooms_per_connection_max": "rooms one connection may watch at once",
    "room_share_ttl_ms": "a gateway's audience share lapses this long after its last report (a dead "
                         "gateway stops counting)",
    "room_share_refresh_ms": "how often a gateway re-reports its audience shares",
    "room_streamer_cache_ms": "a gateway re-reads a room's streamer (whose fan club likes count for) at "
                              "most this often; a room created or handed to another streamer counts "
                              "from then on",
    "room_audience_report_ms": "a gateway reports a changed audience share at most this often (joins "
                               "and leaves reach the room a few times a second, not every tick)",
    "room_queue_max_bytes": "a connection's queued bytes above which room frames are dropped for it "
                            "(counted), never its own events; at most half the send queue",
    "room_recorded_ttl_s": "how long a room remembers that a gift was recorded (retries within it "
                           "are recorded once)",
    "wish_tiers": "gift wish price multipliers by the room's audience, `<viewers below>:<num>/<den>` "
                  "ascending, `*` for the rest (cost = ceil(count × num/den), surplus burned; "
                  "1 ≤ num/den ≤ 100, num and den ≤ 1,000,000)",
    "wish_end_check_ms": "how often workers close gift wishes whose end time passed",
    "like_window_ms": "the like speed rule's sliding window",
    "likes_per_window_max": "likes counted per user per window; faster likes are refused and reported",
    "like_levels": "likes for one streamer that reach fan-club levels 1, 2, 3, … (strictly "
                   "ascending)",
    "room_effects": "room effects by the session's likes, `<likes>:<name>`, each broadcast once a session",
    "like_task_likes": "likes for one streamer in one local day that complete the daily task (one "
                       "`small_card.<streamer>`)",
    "like_streak_days": "completed daily tasks in a row that earn one `small_card_rare.<streamer>` (a "
                        "missed day restarts the streak)",
    "risk_stream_max": "entries kept per risk stream partition (a gateway writes one of up to 256 "
                       "signals per partition per tick; the like speed rule one per refusal)",
    "group_capacity": "a new group's capacity when the platform gives none",
    "groups_per_connection_max": "groups one connection may watch at once",
    "group_history_max": "messages kept per group (the newest; exact)",
    "group_history_max_age_s": "messages older than this leave a group's history",
    "group_posted_ttl_s": "a retried post (the same `msg_id`) shows once within this time",
    "group_flood_messages": "messages a member may post per flood window; more is a violation",
    "group_flood_window_ms": "the flood rule's window",
    "group_strikes": "violations (ads, flooding) that remove a member; each one before is a warning",
    "group_ad_terms": "a message containing one of these is an ad (matched ignoring case, "
                      "full-width forms and spaces, punctuation or symbols inserted between "
                      "a term's characters)",
    "group_log_max": "moderation log lines kept per group",
    "group_invites_max": "live invite codes per group",
    "group_day_ttl_s": "how long a group's daily metrics are kept",
    "poll_throttle_ms": "a poll's live results reach the group at most this often",
    "polls_open_max": "open polls per group",
    "envelope_ttl_s": "what is left in a red envelope returns to its sender after this",
    "envelopes_open_max": "open red envelopes per group",
    "group_tick_ms": "how often workers close due polls and refund expired red envelopes",
    "points_lot_ttl_s": "every grant of popularity points (a lot) expires this long after it",
    "signin_points": "daily sign-in points, three whole numbers: the first day, added per "
                     "unbroken day, the most",
    "task_posts": "on-topic posts in a weekly cycle that earn the creator task's points, once a cycle",
    "task_points": "points of the creator task",
    "points_per_yuan": "purchased points per yuan (whole points: fen × this // 100)",
    "coin_per_yuan": "coin a yuan is worth: `popularity.buy` spends coin in whole yuan (a "
                     "multiple of this) for `GIFTWIRE_POINTS_PER_YUAN` points a yuan",
    "exchange_cards": "small cards that exchange into `GIFTWIRE_EXCHANGE_POINTS` points",
    "exchange_points": "points those small cards give (a fresh lot)",
    "card_prices": "points each card use costs, `<card>:<points>`, each of the three cards once",
    "card_uses_per_day": "card uses per account per local day",
    "fan_reach_followers": "followers an account needs for fan reach",
    "interest_core_min": "a card use's interest targeting names at least this many core tags (1-20)",
    "interest_core_max": "... and at most this many (1-20)",
    "interest_extended_max": "... and at most this many extended tags (0-20)",
    "mature_days": "days since registration that make an account mature (advanced cards)",
    "mature_followers": "followers that make an account mature (with `GIFTWIRE_MATURE_DAYS`)",
    "boost_duration_s": "how long a card use boosts from its start",
    "boost_full_s": "a boost's full-weight period",
    "boost_decay": "the weight's factor per decay step after the full-weight period",
    "boost_decay_step_s": "the decay step",
    "warn_completion_bp": "dashboard warning when the completion rate falls below this (basis points)",
    "warn_interaction_bp": "dashboard warning when the interaction rate falls below this (basis points)",
    "warn_bounce_bp": "dashboard warning when the bounce rate rises above this (basis points)",
    "popularity_tick_ms": "how often workers start and end scheduled card uses",
    "points_sweep_tick_ms": "how often workers burn expired popularity lots of users nobody read "
                            "(a read or a spend burns them anyway)",
    "points_sweep_batch_max": "users whose lots one sweep tick looks at",
    "trusted_proxies": "proxies (addresses or networks) whose `X-Forwarded-For` gives the client's "
                       "address; from any other peer the header is ignored",
    "risk_enabled": "run the risk engine (signals, decisions, enforcement); recommended in production, "
                    "off by default because scripts and load tests are automation by its rules",
    "token_device_required": "refuse tokens without a device fingerprint (v1) with close 4012 "
                             "`auth_device_required` (the device rules cannot see such accounts)",
    "risk_tick_ms": "how often gateways flush action signals to the risk streams",
    "risk_engine_tick_ms": "how often the engine (the `giftwire jobs` process, or each worker) "
                           "judges the risk streams' new signals (one call per user and per "
                           "network and recipient a read: longer is cheaper, later)",
    "device_accounts_max": "accounts one device may serve within the device window (1–200); "
                           "each one beyond is warned and restricted from gifting",
    "device_window_s": "the shared-device rule's window",
    "restriction_s": "how long a shared-device gifting restriction lasts",
    "cluster_prefix_v4": "the risk engine's IP cluster: IPv4 addresses in one network of this "
                         "prefix length (8-32)",
    "cluster_prefix_v6": "the same for IPv6 addresses (16-128)",
    "cluster_accounts": "accounts from one cluster network (/24, IPv6 /64 by default) gifting "
                        "one recipient within the cluster window that are frozen (1–1,000); "
                        "every gift request counts, one the gateway or settlement refused too",
    "cluster_window_s": "the IP-cluster rule's window",
    "freeze_s": "how long a cluster freeze (gifting and grabbing) lasts",
    "risk_exempt_networks": "addresses the IP-cluster rule does not judge (loopback: local tools)",
    "bot_actions_per_s": "actions per second that, sustained over the bot window, are automation",
    "bot_window_s": "the automation rule's window",
    "bot_regular_intervals": "the last intervals between actions judged for regularity (at "
                             "least 3)",
    "bot_regular_cv": "a coefficient of variation of those intervals below this is automation",
    "risk_cases_max": "risk cases kept: past it the oldest resolved ones are trimmed (an "
                      "open case is never dropped, so more may be open)",
    "events_per_user_max": "events kept in each user's event log (about; trimmed in blocks)",
    "events_max_age_s": "a user's event log disappears this long after its newest event",
    "resume_page_max": "events read per round trip when a client resumes",
    "ledger_page_max": "largest ledger page of the admin API",
    "bulk_items_max": "items in one bulk admin request",
    "fault": "fault injection for crash tests; leave empty. `kill_after_escrow` / "
             "`kill_after_finalize`: a worker SIGKILLs itself after a gift's first / last step "
             "(every time: under `serve`, each restarted worker does again); "
             "`kill_after_grab`: after a red-envelope share is decided; `poison_credit`: the "
             "recipient's step fails for gifts whose `gift_id` starts with `poison` (they are "
             "dead-lettered); `poison_use_settle`: likewise a card use whose `use` starts with "
             "`poison`; `lose_like_batches`: a gateway's first room-likes flush never reaches "
             "Redis and the second's answer is lost",
    "test_clock": "let `POST /admin/v1/clock` move the time of every process forward (tests and "
                  "development only; never in production)",
}


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    base = Settings()
    for f in dataclasses.fields(Settings):
        value = getattr(base, f.name)
        shown = ",".join(value) if isinstance(value, tuple) else str(value)
        rows.append(f"| `GIFTWIRE_{f.name.upper()}` | `{shown}` | {DOCS[f.name]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
