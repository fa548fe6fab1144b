"""Pure rules: calendar days, festival pricing, tokens (the clock is passed in)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

from server.config import Settings
from server.gateway.auth import TokenError, make_token, verify_token
from server.gifting import rules
from server.groups.moderation import ad_found


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_day_rolls_over_at_local_midnight() -> None:
    """At UTC+8, 15:59:59 UTC is still today and 16:00 UTC is tomorrow."""
    tz = rules.parse_timezone("+08:00")
    assert rules.local_day(ms(2026, 2, 16, 15, 59, 59), tz) == date(2026, 2, 16)
    assert rules.local_day(ms(2026, 2, 16, 16, 0, 0), tz) == date(2026, 2, 17)


def test_iana_zone_and_offsets_with_seconds() -> None:
    """IANA names and ±HH:MM:SS offsets both parse."""
    assert rules.local_day(ms(2026, 1, 1, 16, 0), rules.parse_timezone("Asia/Shanghai")) == date(2026, 1, 2)
    tz = rules.parse_timezone("-00:00:30")
    assert rules.local_day(ms(2026, 1, 1, 0, 0, 20), tz) == date(2025, 12, 31)


def test_seconds_to_midnight() -> None:
    """The time left in the local day."""
    tz = rules.parse_timezone("+08:00")
    assert rules.seconds_to_midnight(ms(2026, 2, 16, 15, 59, 0), tz) == 60


def test_festival_cost_is_ceiling_of_1_2x() -> None:
    """Sender pays ceil(count × 1.2) in integer arithmetic."""
    assert [rules.festival_cost(n, 6, 5) for n in (1, 4, 5, 6, 10, 999)] == [2, 5, 6, 8, 12, 1199]


def test_token_roundtrip_forgery_and_expiry() -> None:
    """A signed token proves its user until it expires; a changed one proves nothing."""
    tok = make_token("s3cret", "alice", 2000)
    assert verify_token("s3cret", tok, 1999) == "alice"
    expired = verify_token("s3cret", tok, 2000)
    assert isinstance(expired, TokenError) and expired.reason == "auth_expired"
    forged = tok.replace("alice", "mallory")
    bad = verify_token("s3cret", forged, 1000)
    assert isinstance(bad, TokenError) and bad.reason == "auth_invalid"
    wrong_key = verify_token("other", tok, 1000)
    assert isinstance(wrong_key, TokenError) and wrong_key.reason == "auth_invalid"
    garbage = verify_token("s3cret", "v1.x", 1000)
    assert isinstance(garbage, TokenError) and garbage.reason == "auth_invalid"


def test_unsafe_wish_tiers_and_queue_bounds_are_refused() -> None:
    """Unsafe wish tiers, periods, partitions, leases are refused; room frames take at most half the queue."""
    # A boost below 1×, tiers out of order or without `*`, zero periods or partitions and a lease too short to
    # renew are configuration problems: the server refuses to start with them.
    from server.config import Settings, problems

    assert problems(Settings()) == []
    assert problems(Settings(wish_tiers=("1000:1/2", "*:3/1")))  # would make cards
    assert problems(Settings(wish_tiers=("10000:2/1", "1000:1/1", "*:3/1")))
    assert problems(Settings(wish_tiers=("1000:1/1", "10000:2/1")))
    assert Settings(room_queue_max_bytes=2 << 20).room_queue_bytes == (1 << 20) // 2
    assert problems(Settings(room_tick_ms=0)) == [
        "GIFTWIRE_ROOM_TICK_MS must be more than 0 (it is 0)"]  # the room tick would never come
    assert problems(Settings(room_tick_ms=1)) == []
    assert problems(Settings(partitions=0, worker_block_ms=0, partition_lease_ms=299)) == [
        "GIFTWIRE_PARTITIONS must be more than 0 (it is 0)",  # users map to none of them
        "GIFTWIRE_WORKER_BLOCK_MS must be more than 0 (it is 0)",  # BLOCK 0 waits for ever
        "GIFTWIRE_PARTITION_LEASE_MS must be at least 300 (it is 299)"]
    assert problems(Settings(auth_timeout_s=-5.0, request_timeout_s=math.nan,
                             festival_cost_den=0, boost_decay="-0.5", bot_regular_cv="x")) == [
        "GIFTWIRE_AUTH_TIMEOUT_S must not be negative (it is -5.0)",  # would close every login
        "GIFTWIRE_REQUEST_TIMEOUT_S must be a finite number (it is nan)",
        "GIFTWIRE_FESTIVAL_COST_DEN must be more than 0 (it is 0)",  # festival prices ÷ 0
        "GIFTWIRE_BOOST_DECAY must be a number from 0 to 1, not '-0.5'",
        "GIFTWIRE_BOT_REGULAR_CV must be a number at least 0, not 'x'"]
    assert problems(Settings(bot_regular_cv="inf", worker_metrics_port=8699, port=8700,
                             worker_processes=1)) == [
        "GIFTWIRE_BOT_REGULAR_CV must be a number at least 0, not 'inf'",  # would ban everyone
        "GIFTWIRE_WORKER_METRICS_PORT's ports 8699-8700 take the gateway's port 8700"]
    assert problems(Settings(worker_metrics_port=65535, worker_processes=1)) == [
        "GIFTWIRE_WORKER_METRICS_PORT must leave room below 65536 for 2 ports (it is 65535)"]
    # past what Lua computes exactly, or what a stop or a take-over would wait for
    assert problems(Settings(festival_cost_num=4, amount_max=10**14, gifts_per_day=10**16,
                             offer_timeout_s=11 * 365 * 86400, partition_lease_ms=60_001,
                             worker_block_ms=10_001, admin_key="b", redis_url="http://x")) == [
        "GIFTWIRE_GIFTS_PER_DAY must be at most 1,000,000,000,000,000 (it is 10,000,000,000,000,000)",
        "GIFTWIRE_OFFER_TIMEOUT_S must be at most 315,360,000 (it is 346,896,000)",
        "GIFTWIRE_AMOUNT_MAX must be at most 10,000,000,000,000: balances stay within the 14 "
        "digits Lua's JSON writes exactly (it is 100,000,000,000,000)",
        "GIFTWIRE_FESTIVAL_COST_NUM must be at least GIFTWIRE_FESTIVAL_COST_DEN and at most "
        "1000: a festival never makes a gift cheaper (it is 4/5)",  # cards from nothing
        "GIFTWIRE_PARTITION_LEASE_MS must be at most 60000 (it is 60001)",
        "GIFTWIRE_WORKER_BLOCK_MS must be at most 10000: a stop waits for the read in progress "
        "(it is 10001)",
        "GIFTWIRE_ADMIN_KEY must be at least 16 characters (or unset: one is generated into the "
        "data dir)",
        "REDIS_URL (GIFTWIRE_REDIS_URL) must be a redis://, rediss://, unix:// URL, not 'http://x'"]
    # risk thresholds past what the rules' records keep: the rule could never fire
    assert problems(Settings(device_accounts_max=201, cluster_accounts=1001)) == [
        "GIFTWIRE_DEVICE_ACCOUNTS_MAX must be at most 200: a device's record keeps 201 accounts "
        "(it is 201)",
        "GIFTWIRE_CLUSTER_ACCOUNTS must be at most 1000: a network's record keeps as many "
        "accounts (it is 1001)"]
    assert problems(Settings(device_accounts_max=200, cluster_accounts=1000)) == []
    assert problems(Settings(bot_regular_intervals=2)) == [
        "GIFTWIRE_BOT_REGULAR_INTERVALS must be at least 3: so few intervals look even by "
        "chance (one always does), and a person would be banned (it is 2)"]


def test_settings_that_would_spin_crash_or_stall_are_refused() -> None:
    """Settings that would spin, crash or stall are refused at start-up, each naming its variable."""
    # Zero ticks, windows and batch sizes (a loop at 100% CPU, a division by zero, no progress), sign-in
    # points or card prices a request would crash on, networks that do not parse, non-ASCII digits, unknown
    # log levels, faults and assets.
    from server.config import POSITIVE, Settings, problems

    for name in POSITIVE:
        assert problems(Settings(**{name: 0})) == [
            f"GIFTWIRE_{name.upper()} must be more than 0 (it is 0)"], name
    assert problems(Settings(bad_frames_window_s=0.5)) == []  # a fraction of a second is a window
    refused = {
        "SIGNIN_POINTS": Settings(signin_points=("a", "b")),
        "CARD_PRICES": Settings(card_prices=("video_heating:100", "bogus:5")),
        "TRUSTED_PROXIES": Settings(trusted_proxies=("not-an-ip",)),
        "RISK_EXEMPT_NETWORKS": Settings(risk_exempt_networks=("999.1.1.1/99",)),
        "LIKE_LEVELS": Settings(like_levels=("100", "100", "1000")),
        "LOG_LEVEL": Settings(log_level="BASIC_FORMAT"),
        "FAULT": Settings(fault="kill_after_escro"),
        "NOTE_KINDS": Settings(note_kinds=("do", "Do!")),
        "OTHER_ASSETS": Settings(other_assets=("NOT VALID",)),
        "MENTOR_REWARD_ASSET": Settings(mentor_reward_asset="popularity"),
        "PORT": Settings(port=70000),
        "TIMEZONE": Settings(timezone="+08:99"),
        "WISH_TIERS": Settings(wish_tiers=("²:1/1", "*:1/1")),
        "ROOM_EFFECTS": Settings(room_effects=("²:hearts",)),
    }
    for name, settings in refused.items():
        found = problems(settings)
        assert len(found) == 1 and found[0].startswith(f"GIFTWIRE_{name}"), (name, found)
    assert problems(Settings(like_levels=("²",))) != []
    assert problems(Settings(wish_tiers=("*:101/1",))) != []  # past 100×
    assert problems(Settings(wish_tiers=("10:100/1", "*:1000000/10000"))) == []  # at the bounds
    assert problems(Settings(card_prices=("fan_reach:1", "video_heating:2",
                                          "live_recommendation:3"), log_level="WARNING",
                             trusted_proxies=("10.0.0.1", "fd00::/8"), timezone="UTC+05:30")) == []


def test_the_creator_task_cycle_turns_at_local_monday_midnight() -> None:
    """At UTC+8 the weekly cycle turns at local Monday 00:00, not a second before; ISO years hold."""
    # Sunday 23:59:59 local (15:59:59 UTC) is the old cycle.
    from server.popularity.rules import cycle_key

    tz = rules.parse_timezone("+08:00")
    sunday_last = rules.local_day(ms(2026, 11, 29, 15, 59, 59), tz)  # Sun 29 Nov, 23:59:59 local
    monday_first = rules.local_day(ms(2026, 11, 29, 16, 0, 0), tz)  # Mon 30 Nov, 00:00 local
    assert (sunday_last.isoweekday(), monday_first.isoweekday()) == (7, 1)
    assert (cycle_key(sunday_last), cycle_key(monday_first)) == ("2026-W48", "2026-W49")
    assert cycle_key(date(2027, 1, 3)) == "2026-W53"  # a Sunday of 2027 ends 2026's last week
    assert cycle_key(date(2027, 1, 4)) == "2027-W01"


def test_the_ad_matcher_sees_through_inserted_punctuation_but_not_into_words() -> None:
    """The ad matcher finds a term split by punctuation, spaces or zero-width marks, not one inside words."""
    # Also symbols, full-width forms or another case. A term's own punctuation must be there, a sentence's end
    # does not split a Latin term and a Latin term is a whole word, so ordinary sentences that contain its
    # letters are not ads.
    terms = Settings().group_ad_terms
    for ad in ("加.微.信", "加!微!信", "加:微:信", "加/微/信", "加。微。信", "加 微 信", "加\u200b微信",
               "we.chat", "wei.xin", "W-E-C-H-A-T", "t.m.e/x", "h.t.t.p://x", "w.w.w.x", "ｗｗｗ．ｘ",
               "W W W . x . C O M", "ｖｘ：abc", "QQ群 123", "see https : / / x"):
        assert ad_found(ad, terms) is not None, ad
    for fine in ("welcome to the group", "come on", "加油!", "the weather chat", "http status",
                 "vx1", "wwwow", "t.mex", "great show, see you", "欢迎参加！VIP专场",
                 "我要参加。V神来了", "Can we? Chat later", "Can we... chat later?",
                 "Great show. Come back tomorrow!", "w - - - - e chat"):
        assert ad_found(fine, terms) is None, fine
