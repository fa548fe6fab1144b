"""Daily counters roll over at local midnight; festival days cost 1.2× with the surplus burned."""

from __future__ import annotations

import time
from collections.abc import Callable

from protocol.client import Client
from server import days
from server.gifting import rules
from server.store.embedded import EmbeddedValkey
from tests.support import TEST_CLOCK, Admin, Proc, run_audit, uid

OwnServer = Callable[..., tuple[Proc, EmbeddedValkey]]


def offset_with_midnight_at(midnight_s: int) -> str:
    """A fixed UTC offset under which local midnight falls at `midnight_s` (Unix seconds)."""
    off = -midnight_s % 86400
    if off > 43200:
        off -= 86400
    sign = "-" if off < 0 else "+"
    off = abs(off)
    return f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}:{off % 60:02d}"


def offset_with_midnight_in(seconds: int) -> str:
    """A fixed UTC offset under which local midnight comes `seconds` from now."""
    return offset_with_midnight_at(int(time.time()) + seconds)


async def test_daily_quota_rolls_over_at_local_midnight(own_server: OwnServer) -> None:
    """The 6th gift of a day is refused until local midnight, still 5 s before it, and accepted just after."""
    # The test clock is moved; nobody sleeps.
    midnight_ms = (int(time.time()) + 3600) * 1000
    srv, _ = own_server({"GIFTWIRE_TIMEZONE": offset_with_midnight_at(midnight_ms // 1000),
                         **TEST_CLOCK}, workers=1)
    async with Admin(srv) as admin:
        s = uid("s")
        await admin.user(s, real_name_verified=True)
        await admin.grant(s, 20)
        rs = [uid("r") for _ in range(3)]
        for r in rs:
            await admin.user(r)
            await admin.follow(s, r)
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            for i in range(5):
                assert (await a.send_gift(rs[i % 2], "note.do", 1))["type"] == "gift.confirmed"
            assert (await a.send_gift(rs[2], "note.do", 1))["code"] == "daily_limit"
            await admin.advance(midnight_ms - 5_000 - await admin.now_ms())
            assert (await a.send_gift(rs[2], "note.do", 1))["code"] == "daily_limit"
            await admin.advance(6_000)
            after = await a.send_gift(rs[2], "note.do", 1)
        assert (after["type"], after["quota_left"]) == ("gift.confirmed", 4)


async def test_festival_costs_1_2x_and_burns_the_surplus(own_server: OwnServer) -> None:
    """On a festival day the sender pays ceil(1.2 × count); the recipient gets count."""
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        s, r = await admin.pair(20)
        today = rules.local_day(await admin.now_ms(), rules.parse_timezone("+08:00"))
        await admin.call("PUT", "/festivals", {"days": [today.isoformat(), "2027-02-06"]})
        assert (await admin.call("GET", "/festivals"))["days"] == [today.isoformat(), "2027-02-06"]
        await admin.advance(1100)  # a calendar change reaches the workers within a second
        async with await Client.connect(srv.ws, srv.token(s)) as a:
            reply = await a.send_gift(r, "note.do", 5)
            assert (reply["cost"], reply["balance"]) == (6, 14)
            await admin.call("PUT", "/festivals", {"days": []})
            await admin.advance(1100)
            plain = await a.send_gift(r, "note.do", 5)
            assert (plain["cost"], plain["balance"]) == (5, 9)
        assert await admin.balances(r) == {"note.do": 10}
        code, out = await run_audit(vk.url)
        assert code == 0, out



async def test_a_festival_avatar_frame_is_redeemed_after_a_gift_that_day(own_server: OwnServer) -> None:
    """On a festival day a user who gifted redeems the avatar frame; it shows 7 days past the day."""
    # Before a gift: `frame_needs_gift`; on another day: `not_festival`; asked again the same day: the same
    # frame; the admin view shows it until it expires, then null.
    srv, _ = own_server(TEST_CLOCK)
    async with Admin(srv) as admin:
        s, r = await admin.pair(5)
        tz = rules.parse_timezone("+08:00")
        now = await admin.now_ms()
        today = rules.local_day(now, tz)
        async with await Client.connect(srv.ws, srv.token(s, ttl_s=30 * 86400)) as a:
            assert (await a.request("festival.frame"))["code"] == "not_festival"
            await admin.call("PUT", "/festivals", {"days": [today.isoformat()]})
            assert (await a.request("festival.frame"))["code"] == "frame_needs_gift"
            assert (await a.send_gift(r, "note.do", 1))["type"] == "gift.confirmed"
            framed = await a.request("festival.frame")
            assert (framed["type"], framed["day"]) == ("festival.framed", today.isoformat())
            end_of_day = days.next_midnight_ms(now, tz)
            assert framed["expires_at_ms"] == end_of_day + 7 * 86_400_000
            assert end_of_day % 1000 == 0  # a midnight to the ms, never 1 ms short
            again = await a.request("festival.frame")
            assert again["expires_at_ms"] == framed["expires_at_ms"]
            shown = (await admin.call("GET", f"/users/{s}"))["avatar_frame"]
            assert shown == {"day": today.isoformat(), "expires_at_ms": framed["expires_at_ms"]}
            assert (await admin.call("GET", f"/users/{r}"))["avatar_frame"] is None
            await admin.advance(framed["expires_at_ms"] - now)
            assert (await admin.call("GET", f"/users/{s}"))["avatar_frame"] is None
            assert (await a.request("festival.frame"))["code"] == "not_festival"  # days later


def test_the_next_midnight_is_exact_to_the_ms() -> None:
    """The next local midnight is a whole second for every ms of a day (float rounding once made it .999)."""
    tz = rules.parse_timezone("+08:00")
    base = 1_799_270_492_119 - 300
    for step in range(0, 86_400_000, 86_400_000 // 5000 + 7):
        got = days.next_midnight_ms(base + step, tz)
        assert got % 1000 == 0 and 0 < got - (base + step) <= 86_400_000
