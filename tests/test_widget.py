"""The in-chat gifting widget (/widget/) in a real browser: headless Chromium (Debian's
`chromium`, driven by Playwright; nothing downloads a browser) against real `giftwire serve`
processes. Two pages gift each other; an offer is accepted (and one declined) after a
reload; three pages grab a red envelope; the server restarts under open pages and no gift is
lost or doubled; a refused gift says why (in English and Chinese); a live room shows its
gift feed with badges, board, wish and batched likes; an expired token stays offline and
says so; the docs' embed snippet (the README's too) works from another origin, where the host
page hands fresh tokens and changes the recipient, and a page the widget was not told to
trust (or a frame that is not its parent) can neither drive it nor hear it. The widget never
requests anything but its own gateway.

Without Chromium or Playwright these tests are skipped (saying how to run them); with
GIFTWIRE_REQUIRE_BROWSER=1 (as .ci/run sets) that is an error instead. The screenshots in
docs/widget/ are written when missing, or every time with GIFTWIRE_SCREENSHOTS=1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from protocol.client import Client
from protocol.errors import ERRORS, REJECTIONS
from server.store.embedded import EmbeddedValkey
from tests.support import TEST_CLOCK, Admin, Proc, uid

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, FrameLocator, Page, ViewportSize

CHROMIUM = os.environ.get("GIFTWIRE_CHROMIUM", "/usr/bin/chromium")
REQUIRE = os.environ.get("GIFTWIRE_REQUIRE_BROWSER") == "1"
ROOT = Path(__file__).parent.parent
SHOTS = ROOT / "docs" / "widget"
HOW = ("to run the browser tests install Chromium and Playwright for Python: "
       "`apt-get install -y chromium` and `.venv/bin/pip install -e '.[test]'` "
       "(GIFTWIRE_REQUIRE_BROWSER=1 turns this skip into a failure)")
PHONE: ViewportSize = {"width": 360, "height": 780}  # the narrowest phone docs/widget.md promises
TIMEOUT_MS = 20_000

OwnServer = Callable[..., tuple[Proc, EmbeddedValkey]]


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}"
    return None


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    why = _missing()
    if why is not None:
        if REQUIRE:
            pytest.fail(f"{why}; {HOW}")
        pytest.skip(f"{why}; {HOW}")
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    pw = await async_playwright().start()
    b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
    yield b
    await b.close()
    await pw.stop()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A private browser profile (its own localStorage) with a phone-width viewport."""
    ctx = await browser.new_context(viewport=PHONE, locale="en-US")
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    await ctx.close()


def expect(target: Any) -> Any:
    from playwright.async_api import expect as pw_expect

    return pw_expect(target)


class Widget:
    """One widget page (or the widget in an iframe of a platform's page), with everything
    its page requested and every frame it sent."""

    def __init__(self, page: Page, srv: Proc, frame: FrameLocator | None = None,
                 host: str | None = None) -> None:
        self.page = page
        self.root: Page | FrameLocator = frame or page
        self.srv = srv
        self.host = host  # the platform page's origin, when embedded
        self.requests: list[str] = []
        self.sockets: list[str] = []
        self.frames_sent: list[dict[str, Any]] = []
        self.problems: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("websocket", self._socket)
        page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(str(e)))

    def _socket(self, ws: Any) -> None:
        self.sockets.append(ws.url)

        def sent(payload: Any) -> None:
            if isinstance(payload, str):
                self.frames_sent.append(json.loads(payload))

        ws.on("framesent", sent)

    @classmethod
    async def open(cls, ctx: BrowserContext, srv: Proc, user: str, wait: bool = True,
                   **params: str) -> Widget:
        page = await ctx.new_page()
        w = cls(page, srv)
        await w.goto(user, wait, **params)
        return w

    async def goto(self, user: str, wait: bool = True, **params: str) -> None:
        query = "&".join(f"{k}={v}" for k, v in {"lang": "en", **params}.items())
        # the token in the fragment: it never reaches a server log or a Referer
        await self.page.goto(f"{self.srv.http}/widget/?{query}#token={self.srv.token(user)}")
        if wait:
            await self.online()

    @classmethod
    async def embedded(cls, ctx: BrowserContext, srv: Proc, host: Platform,
                       iframe: str = "#giftwire") -> Widget:
        """Open the platform's page; the widget in its `iframe`."""
        page = await ctx.new_page()
        w = cls(page, srv, page.frame_locator(iframe), host.origin)
        await page.goto(f"{host.origin}/chat")
        return w

    async def online(self) -> None:
        await expect(self.q("body")).to_have_attribute("data-connection", "open")

    def q(self, selector: str) -> Any:
        return self.root.locator(selector)

    async def balance(self, asset: str, count: int) -> None:
        await expect(self.q(f"#balances li[data-asset='{asset}'] .count")).to_have_text(str(count))

    async def send(self, to: str, count: int, asset: str = "note.do") -> Any:
        """Fill the picker and press Send; the new entry of the sent list (by its gift id)."""
        before = await self.q("#sent li").count()
        await self.q("#kind").select_option(asset)
        await self.q("#count").fill(str(count))
        await self.q("#to").fill(to)
        await self.root.get_by_role("button", name="Send", exact=True).click()
        await expect(self.q("#sent li")).to_have_count(before + 1)
        gift = await self.q("#sent li").first.get_attribute("data-gift")
        return self.q(f"#sent li[data-gift='{gift}']")

    def check_clean(self, server_was_down: bool = False) -> None:
        """Nothing but its own gateway (and, embedded, the platform's page) was asked for
        anything, and no error was logged
        (but the browser's own note of each refused attempt while the server was down)."""
        own = (self.srv.http + "/", f"ws://127.0.0.1:{self.srv.port}/",
               *([self.host + "/"] if self.host else []))
        assert [u for u in self.requests + self.sockets if not u.startswith(own)] == []
        assert [s for s in self.sockets if not s.startswith(f"{self.srv.ws}?token=")] == []
        # while the server is down or coming back, the browser notes each refused attempt
        # (nothing listens) or reset one (the server was stopping or starting as it came)
        down = ("failed: Error in connection establishment: net::ERR_CONNECTION_REFUSED",
                "failed: Error during WebSocket handshake: net::ERR_CONNECTION_RESET")
        assert [p for p in self.problems if not (server_was_down and p.endswith(down))] == []

    async def shot(self, name: str) -> None:
        """docs/widget/<name>.png, when missing or asked for (GIFTWIRE_SCREENSHOTS=1); in
        every state photographed, the page fits the phone's width (no sideways scrolling)."""
        wide = await self.page.evaluate("document.documentElement.scrollWidth")
        assert wide <= PHONE["width"], f"{name}: the page is {wide} px wide on a {PHONE['width']} px phone"
        path = SHOTS / f"{name}.png"
        if os.environ.get("GIFTWIRE_SCREENSHOTS") == "1" or not path.exists():
            SHOTS.mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=str(path), full_page=True)


async def people(admin: Admin, sender: str, recipient: str, cards: int = 20,
                 **recipient_profile: Any) -> tuple[str, str]:
    """A verified sender (named for the screenshots) who has followed a recipient for 4 days."""
    s, r = uid(sender), uid(recipient)
    await admin.user(s, real_name_verified=True)
    await admin.user(r, **recipient_profile)
    await admin.follow(s, r)
    await admin.grant(s, cards)
    return s, r


def states(entry_states: str) -> list[str]:
    return entry_states.split()


async def test_alice_gifts_bob_from_the_widget_and_his_widget_shows_it(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """alice's page shows pending → confirmed; bob's page shows the gift and his balance live."""
    # A second gift is sent from the keyboard alone, its outcome in the form's status line; bob reads it in
    # Chinese.
    alice, bob = await people(admin, "alice", "bob", 10)
    await admin.grant(alice, 4, asset="note.mi")
    b = await Widget.open(context, server, bob)
    a = await Widget.open(context, server, alice, to=bob)
    await a.balance("note.do", 10)
    entry = await a.send(bob, 3)
    await expect(entry).to_have_attribute("data-state", "confirmed")
    assert states(await entry.get_attribute("data-states") or "") == ["pending", "confirmed"]
    await expect(entry).to_have_text(f"Sent 3 do to {bob} ✓")
    await a.balance("note.do", 7)
    await expect(b.q("#incoming li")).to_have_text([f"{alice} sent you 3 do"])
    await b.balance("note.do", 3)

    # the keyboard alone: tab to the picker, choose, type, Enter
    await a.q("#kind").focus()
    await a.page.keyboard.press("ArrowDown")  # do → mi
    await a.page.keyboard.press("Tab")
    await a.page.keyboard.press("Control+A")
    await a.page.keyboard.type("2")
    await a.page.keyboard.press("Enter")
    await expect(a.q("#sent li").first).to_have_text(f"Sent 2 mi to {bob} ✓")
    # and said where the form's status is read out (a screen reader hears how it went)
    await expect(a.q("#send-status")).to_have_text(f"Sent 2 mi to {bob} ✓")
    await expect(a.q("#send-status")).to_have_attribute("role", "status")
    await expect(b.q("#incoming li").first).to_have_text(f"{alice} sent you 2 mi")
    await b.balance("note.mi", 2)
    await a.shot("gift-sent")

    await b.page.get_by_role("button", name="切换到中文").click()
    await expect(b.q("#incoming li").first).to_have_text(f"{alice} 送给你 2 张 mi")
    await expect(b.q("html")).to_have_attribute("lang", "zh-CN")
    await expect(b.q("#incoming")).to_have_attribute("aria-live", "polite")
    assert await admin.balances(bob) == {"note.do": 3, "note.mi": 2}
    a.check_clean()
    b.check_clean()


async def test_offers_survive_a_reload_one_accepted_one_declined(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """bob's offers survive his page reload; he accepts one, declines the other; alice's page follows both."""
    # bob confirms gifts, so alice's two gifts wait as offers.
    alice, bob = await people(admin, "alice", "bob", 10, confirm_gifts=True)
    a = await Widget.open(context, server, alice, to=bob)
    b = await Widget.open(context, server, bob)
    first = await a.send(bob, 2)
    await expect(first).to_have_attribute("data-state", "awaiting")
    await expect(first).to_have_text(f"{bob} has to accept 2 do")
    second = await a.send(bob, 3)
    await expect(second).to_have_attribute("data-state", "awaiting")
    await expect(b.q("#offers li")).to_have_count(2)
    await b.page.reload()  # the offers were seen: the resumed connection does not send them again
    await b.online()
    await expect(b.q("#offers li")).to_have_count(2)
    await expect(b.q("#offers li .text")).to_have_text([f"{alice} offers you 2 do",
                                                        f"{alice} offers you 3 do"])
    await b.shot("offer")

    await b.page.get_by_role("button", name=f"Accept 2 do from {alice}").click()
    await expect(b.q("#incoming li").first).to_have_text(f"You accepted 2 do from {alice}")
    await b.balance("note.do", 2)
    await b.page.get_by_role("button", name=f"Decline 3 do from {alice}").press("Enter")
    # the outcome beside the offers, and the keyboard's focus on it (its button is gone)
    await expect(b.q("#offer-status")).to_have_text(f"You declined 3 do from {alice}")
    await expect(b.q("#offer-status")).to_be_focused()
    await expect(b.q("#offers li")).to_have_count(0)
    await expect(b.q("#offers-section")).to_be_hidden()

    await expect(a.q("#sent li")).to_have_text([
        f"{bob} declined 3 do; the cards came back", f"{bob} accepted 2 do ✓"])
    await a.balance("note.do", 8)
    assert await admin.balances(bob) == {"note.do": 2}
    assert await admin.balances(alice) == {"note.do": 8}
    a.check_clean()
    b.check_clean()


async def test_red_envelope_grabbed_from_three_pages(
        server: Proc, admin: Admin, browser: Browser) -> None:
    """A red envelope of 6 cards for 3 shares, grabbed from three pages: shares sum to 6, each grab seen."""
    # Three members of an iron-fan group, one joining from the widget; one sends, each page grabs one, and
    # every page saw every grab.
    owner = uid("owner")
    await admin.user(owner)
    group = uid("fans")
    await admin.call("PUT", f"/groups/{group}", {"owner": owner, "type": "core", "rule": "iron_fan"})
    members = [uid(n) for n in ("amy", "ben", "cai")]
    for m in members:
        await admin.user(m)
        await admin.call("PUT", "/iron-fans", {"fan": m, "creator": owner, "iron": True})
    await admin.grant(members[0], 10)
    for m in members[:2]:  # over the socket; the third joins from its widget
        async with await Client.connect(server.ws, server.token(m)) as c:
            assert (await c.request("group.join", group=group))["type"] == "group.snapshot"

    contexts = [await browser.new_context(viewport=PHONE, locale="en-US")
                for _ in members]
    try:
        pages = [await Widget.open(ctx, server, m, group=group) for ctx, m in zip(contexts, members,
                                                                                   strict=True)]
        sender, _, late = pages
        await late.page.get_by_role("button", name="Join the group").click()
        await expect(late.q("#envelope-form")).to_be_visible()
        # said where it stays shown, and focus goes there (the join block and its button are gone)
        await expect(late.q("#grab-status")).to_have_text("You joined the group")
        await expect(late.q("#grab-status")).to_be_focused()
        await sender.q("#env-kind").select_option("note.do")
        await sender.q("#env-total").fill("6")
        await sender.q("#env-shares").fill("3")
        await sender.page.get_by_role("button", name="Send red envelope").click()
        await expect(sender.q("#envelope-status")).to_have_text(
            "Your red envelope is open: 6 do for 3")
        await sender.balance("note.do", 4)
        name = f"{members[0]}:"
        for p in pages:
            await expect(p.q("#envelopes li")).to_have_count(1)
            assert (await p.q("#envelopes li").get_attribute("data-envelope") or "").startswith(name)
        for p in pages:
            await p.page.get_by_role("button", name=f"Grab a share of {members[0]}'s red envelope").click()
            await expect(p.q("#envelopes li .mine")).to_have_text(re.compile(r"^You got \d+ do!$"))
            # the grab is said in the live status line, where focus goes from the hidden button
            await expect(p.q("#grab-status")).to_have_text(re.compile(r"^You got \d+ do!$"))
            await expect(p.q("#grab-status")).to_be_focused()
        shares = []
        for p, m in zip(pages, members, strict=True):
            got = int(re.findall(r"\d+", await p.q("#envelopes li .mine").inner_text())[0])
            shares.append(got)
            await expect(p.q("#activity li")).to_have_count(3)
            await expect(p.q("#envelopes li")).to_have_attribute("data-state", "grabbed")
            await expect(p.q("#envelopes li .text")).to_have_text(
                f"{members[0]}'s red envelope: 6 do, all grabbed")
            want = got + (4 if m == members[0] else 0)
            assert await admin.balances(m) == {"note.do": want}
            await p.balance("note.do", want)
        assert sum(shares) == 6 and min(shares) >= 1
        await pages[1].shot("envelope")
        for p in pages:
            p.check_clean()
    finally:
        for ctx in contexts:
            await ctx.close()


async def test_a_gift_held_for_approval_says_who_decides(
        own_server: OwnServer, context: BrowserContext) -> None:
    """A gift held for a third party's approval says so on alice's page; bob's offer has no buttons."""
    # bob's region holds every gift: alice's page says it waits for that approval (not for bob), and bob's
    # shows the offer with no accept or decline button; approved, both pages follow.
    srv, _ = own_server({"GIFTWIRE_REGIONS": "ky:approval"})
    async with Admin(srv) as admin:
        alice, bob = await people(admin, "alice", "bob", 10, region="ky")
        a = await Widget.open(context, srv, alice, to=bob)
        b = await Widget.open(context, srv, bob)
        held = await a.send(bob, 2)
        await expect(held).to_have_attribute("data-state", "awaiting")
        await expect(held).to_have_text(f"2 do to {bob} wait for a third party's approval")
        await expect(b.q("#offers li .text")).to_have_text(
            [f"{alice} sent you 2 do: it waits for your guardian's approval"])
        await expect(b.q("#offers li button:visible")).to_have_count(0)
        offers = (await admin.call("GET", f"/users/{bob}/offers"))["offers"]
        await admin.call("POST", "/approvals", {"recipient": bob,
                                                "transfer_id": offers[0]["transfer_id"],
                                                "approve": True})
        await expect(held).to_have_attribute("data-state", "accepted")
        await expect(held).to_have_text(f"2 do to {bob} approved and received ✓")
        await b.balance("note.do", 2)
        a.check_clean()
        b.check_clean()


async def test_server_restart_under_open_pages_loses_and_doubles_nothing(
        own_server: OwnServer, start: Callable[..., Proc], context: BrowserContext) -> None:
    """A server restart under two open pages loses no gift and shows none twice."""
    # It stops (4000: reconnect) and comes back on the same port. A gift sent while it was down waits and goes
    # once (same gift id); a gift sent while bob's page was closed shows when he opens it again (resumed from
    # the seq his browser kept).
    env = {"GIFTWIRE_GIFTS_PER_DAY": "20", "GIFTWIRE_PAIR_GIFTS_PER_DAY": "20"}
    srv, vk = own_server(env)
    async with Admin(srv) as admin:
        alice, bob = await people(admin, "alice", "bob", 20)
        a = await Widget.open(context, srv, alice, to=bob)
        b = await Widget.open(context, srv, bob)
        await expect(await a.send(bob, 1)).to_have_attribute("data-state", "confirmed")
        await expect(b.q("#incoming li")).to_have_count(1)

        port = srv.port
        srv.stop()
        for p in (a, b):
            await p.page.wait_for_selector("body[data-connection=reconnecting]")
        queued = await a.send(bob, 2)  # while the server is down
        await expect(queued).to_have_attribute("data-state", "queued")
        again = start("serve", vk.url, srv.data_dir, env, "--port", str(port))
        assert again.port == port
        for p in (a, b):
            await p.online()
        await expect(queued).to_have_attribute("data-state", "confirmed")
        assert states(await queued.get_attribute("data-states") or "")[-2:] == ["pending", "confirmed"]
        await expect(b.q("#incoming li")).to_have_text([f"{alice} sent you 2 do", f"{alice} sent you 1 do"])

        await b.page.close()  # bob goes away; alice gifts; bob comes back in a new page
        await expect(await a.send(bob, 3)).to_have_attribute("data-state", "confirmed")
        b = await Widget.open(context, again, bob)
        await expect(b.q("#incoming li")).to_have_text([f"{alice} sent you 3 do"])  # only the missed one
        await expect(await a.send(bob, 4)).to_have_attribute("data-state", "confirmed")
        await expect(b.q("#incoming li")).to_have_text([f"{alice} sent you 4 do", f"{alice} sent you 3 do"])
        await b.balance("note.do", 10)
        await a.balance("note.do", 10)
        assert await admin.balances(bob) == {"note.do": 10}
        sends = [f for f in a.frames_sent if f["type"] == "gift.send"]
        assert len({f["gift_id"] for f in sends}) == 4  # four gifts, the queued one sent once more at most
        await asyncio.sleep(0.3)
        await expect(b.q("#incoming li")).to_have_count(2)
        a.check_clean(server_was_down=True)
        b.check_clean()


async def test_a_refused_gift_says_why(server: Proc, admin: Admin, context: BrowserContext) -> None:
    """A gift to someone alice does not follow, or past her balance, is refused with the reason in words."""
    # The server's words, and Chinese after switching.
    alice, bob = await people(admin, "alice", "bob", 5)
    stranger = uid("carol")
    await admin.user(stranger)
    a = await Widget.open(context, server, alice)
    refused = await a.send(stranger, 1)
    await expect(refused).to_have_attribute("data-state", "rejected")
    message = REJECTIONS["not_following"].message
    await expect(refused).to_have_text(f"Not sent (1 do to {stranger}): {message}")
    too_many = await a.send(bob, 6)
    await expect(too_many).to_have_text(
        f"Not sent (6 do to {bob}): {REJECTIONS['insufficient_balance'].message}")
    # a code whose protocol message speaks to a developer has the widget's own words
    huge = await a.send(bob, 1000)
    await expect(huge).to_have_text(f"Not sent (1000 do to {bob}): too many cards: more than one gift "
                                    "may carry, or more than the account may hold")
    await a.page.get_by_role("button", name="切换到中文").click()
    await expect(refused).to_have_text(re.compile("未送出.*需要先关注对方才能送礼"))
    # the last gift's outcome, in the form's status line too (read out by a screen reader)
    await expect(a.q("#send-status")).to_have_text(re.compile("未送出（1000 张 do"))
    await a.q("#to").fill("")
    await a.page.get_by_role("button", name="送出", exact=True).click()
    await expect(a.q("#send-status")).to_have_text("请填写收礼人")
    await a.q("#to").fill(bob)
    await a.q("#count").fill("0")  # no number of cards: said so, the field marked, nothing sent
    await a.page.get_by_role("button", name="送出", exact=True).click()
    await expect(a.q("#send-status")).to_have_text("数量：请填写 1 或更大的整数")
    await expect(a.q("#count")).to_have_attribute("aria-invalid", "true")
    await a.q("#count").fill("2")  # mended: no longer marked
    await expect(a.q("#count")).not_to_have_attribute("aria-invalid", "true")
    await a.balance("note.do", 5)
    a.check_clean()


async def test_joining_a_group_from_the_widget_says_what_came_of_it(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """Joining from the widget says the outcome where the Join button is: request filed, or why not."""
    # An approval group files the request and says so, after a reload too; a fan-club-level group the user
    # does not qualify for says why; both in words.
    owner, fan = await people(admin, "owner", "fan", 1)
    approval, level = uid("ask"), uid("lvl")
    await admin.call("PUT", f"/groups/{approval}", {"owner": owner, "type": "core", "rule": "approval"})
    await admin.call("PUT", f"/groups/{level}", {"owner": owner, "type": "core", "rule": "level",
                                                 "min_level": 2})
    w = await Widget.open(context, server, fan, group=approval)
    await w.page.get_by_role("button", name="Join the group").click()
    await expect(w.q("#join-status")).to_have_text(
        "Your request to join was sent: the group's admins decide")
    await w.page.reload()  # the request still waits: said again after a reload
    await expect(w.q("#join-status")).to_have_text(
        "Your request to join was sent: the group's admins decide")
    w2 = await Widget.open(context, server, fan, group=level)
    await w2.page.get_by_role("button", name="Join the group").click()
    await expect(w2.q("#join-status")).to_have_text(ERRORS["not_eligible"].message)
    w.check_clean()
    w2.check_clean()


async def test_an_invite_link_joins_an_invite_only_group(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """An invite link joins an invite-only group; a wrong code is refused in words (`invite_invalid`)."""
    # One that is not a code is said before anything is sent; the link's `invite` parameter fills the code in,
    # and the user becomes a member who sees the group.
    owner, fan = await people(admin, "owner", "fan", 1)
    group = uid("inv")
    await admin.call("PUT", f"/groups/{group}", {"owner": owner, "type": "core", "rule": "invite"})
    async with await Client.connect(server.ws, server.token(owner)) as host:
        code = (await host.request("group.invite", group=group, uses=1, ttl_s=3600))["code"]
    w = await Widget.open(context, server, fan, group=group)
    join = w.page.get_by_role("button", name="Join the group")
    field = w.page.get_by_label("Invite code (if the group asks for one)")
    await field.fill("not a code!")
    await join.click()
    await expect(w.q("#join-status")).to_have_text("An invite code is 1–64 letters, digits, _ or -")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await field.fill("wrong-code")
    await join.click()
    await expect(w.q("#join-status")).to_have_text(ERRORS["invite_invalid"].message)
    linked = await Widget.open(context, server, fan, group=group, invite=code)
    await expect(linked.page.get_by_label("Invite code (if the group asks for one)")).to_have_value(code)
    await linked.page.get_by_role("button", name="Join the group").click()
    await expect(linked.q("#group-join")).to_be_hidden()
    members = (await admin.call("GET", f"/groups/{group}/members"))["members"]
    assert fan in [m["user"] for m in members]
    w.check_clean()
    linked.check_clean()


async def test_a_gift_with_no_answer_in_time_says_so_then_shows_how_it_ended(
        fresh_valkey: Callable[..., EmbeddedValkey], start: Callable[..., Proc],
        context: BrowserContext) -> None:
    """A gift answered `timeout` while the worker stalls reads as no answer yet, then shows how it ended."""
    # Not "not sent": it may still go through; when the worker goes on, the gift settles and its line says so.
    vk = fresh_valkey()
    env = {"GIFTWIRE_REQUEST_TIMEOUT_S": "1"}
    gw = start("gateway", vk.url, None, env)
    worker = start("worker", vk.url, gw.data_dir, env)
    async with Admin(gw) as admin:
        alice, bob = await people(admin, "alice", "bob", 5)
        a = await Widget.open(context, gw, alice, to=bob)
        worker.signal(signal.SIGSTOP)
        try:
            stalled = await a.send(bob, 2)
            await expect(stalled).to_have_attribute("data-state", "unknown", timeout=10_000)
            await expect(stalled).to_have_text(
                f"No answer yet for 2 do to {bob}: it may still go through, and will show here if it does")
            # and said in the form's live status line, not only in the list
            await expect(a.q("#send-status")).to_have_text(
                f"No answer yet for 2 do to {bob}: it may still go through, and will show here if it does")
        finally:
            worker.signal(signal.SIGCONT)
        await expect(stalled).to_have_attribute("data-state", "confirmed", timeout=15_000)
        await a.balance("note.do", 3)
        a.check_clean()


async def test_live_room_feed_badges_board_wish_and_batched_likes(
        own_server: OwnServer, context: BrowserContext) -> None:
    """In a live room six quick taps go as one `room.like` of 6; a gift reaches feed, board and wish."""
    # With an open wish: a click, then Enter on the focused button (fan-club level 1 here); alice's gift to
    # the streamer (the default recipient) reaches the other viewer's feed with her badge, the board and the
    # wish's progress. A viewer who joins later sees the session's likes at once; steady tapping goes in
    # small batches none of which is too fast; a new session starts with an empty board and no likes.
    srv, _ = own_server({"GIFTWIRE_LIKE_LEVELS": "5,10"})
    async with Admin(srv) as admin:
        alice, streamer = await people(admin, "alice", "star", 20)
        viewer = uid("bob")
        await admin.user(viewer)
        room = uid("live")
        await admin.call("PUT", f"/rooms/{room}", {"streamer": streamer})
        async with await Client.connect(srv.ws, srv.token(streamer)) as st:
            assert (await st.request("room.live", room=room, live=True))["live"] is True
            opened = await st.request("room.wish", room=room, open=True, asset="note.do", target=10)
            assert opened["type"] == "room.snapshot", opened
            v = await Widget.open(context, srv, viewer, room=room)
            a = await Widget.open(context, srv, alice, room=room)
            await expect(a.q("#to")).to_have_value(streamer)
            await expect(v.q("#wish-text")).to_have_text("Wish: 0 of 10 do")
            like = a.page.get_by_role("button", name="Like the streamer (taps are sent together)")
            await like.click()
            for _ in range(5):  # five more taps from the keyboard, quickly
                await a.page.keyboard.press("Enter")
            await expect(a.q("#likes-text")).to_contain_text("Your likes: 6 · fan-club Lv 1")
            likes = [f for f in a.frames_sent if f["type"] == "room.like"]
            assert [f["count"] for f in likes] == [6]
            entry = await a.send(streamer, 3)
            await expect(entry).to_have_attribute("data-state", "confirmed")
            for p in (a, v):
                await expect(p.q("#feed li .text")).to_have_text([f"{alice} → {streamer}: 3 do"])
                await expect(p.q("#feed li .badge")).to_have_text("Lv 1")
                await expect(p.q("#board li")).to_have_text([f"{alice}: 3 cards"])
                await expect(p.q("#wish-text")).to_have_text("Wish: 3 of 10 do")
                await expect(p.q("#wish-progress")).to_have_attribute("aria-labelledby", "wish-text")
            await expect(v.q("#likes-text")).to_contain_text("Likes this session: 6")
            await expect(v.q("#room-live")).to_contain_text("Live · 2 watching")
            await a.shot("live-room")
            late = await Widget.open(context, srv, uid("carol"), room=room)  # the count at once
            await expect(late.q("#likes-text")).to_have_text("Likes this session: 6")
            for _ in range(8):  # a steady 5 taps a second: small batches, none refused
                await like.click()
                await asyncio.sleep(0.2)
            await expect(a.q("#likes-text")).to_contain_text("Your likes: 14")
            steady = [f["count"] for f in a.frames_sent if f["type"] == "room.like"][1:]
            assert sum(steady) == 8 and max(steady) <= 3, steady
            await expect(a.q("#likes-text")).not_to_contain_text("too fast")
            # a new session: the board and the likes start empty (the ended one's stayed shown)
            assert (await st.request("room.live", room=room, live=False))["live"] is False
            await expect(v.q("#board li")).to_have_text([f"{alice}: 3 cards"])
            assert (await st.request("room.live", room=room, live=True))["live"] is True
            await expect(v.q("#board li")).to_have_count(0)
            await expect(v.q("#likes-text")).to_have_text("Likes this session: 0")
            a.check_clean()
            v.check_clean()
            late.check_clean()


async def test_an_expired_token_is_final_and_said_so(server: Proc, admin: Admin,
                                                     context: BrowserContext) -> None:
    """On 4003 auth_expired the widget stays offline and says why in words, not reconnecting."""
    # 4003 says not to reconnect; the widget does not hammer the gateway.
    alice = uid("alice")
    await admin.user(alice)
    page = await context.new_page()
    w = Widget(page, server)
    await page.goto(f"{server.http}/widget/?lang=en#token={server.token(alice, ttl_s=-60)}")
    await page.wait_for_selector("body[data-connection=closed]")
    await expect(w.q("#status")).to_have_text("Offline: the sign-in expired (4003)")
    await asyncio.sleep(1.0)
    assert len(w.sockets) == 1
    w.check_clean()


def embed_snippet() -> str:
    """The embed snippet of docs/widget.md (the README shows the same one)."""
    doc = (ROOT / "docs" / "widget.md").read_text()
    found = re.search(r"<!-- embed -->\n```html\n(.*?)```", doc, re.S)
    assert found, "docs/widget.md lost its embed snippet"
    return found.group(1)


def test_the_readme_shows_the_same_embed_snippet_as_docs_widget_md() -> None:
    """The README's embed snippet is docs/widget.md's, the one these tests run in a browser."""
    # The snippet a platform copies.
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## The gifting widget\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert section, "README.md lost its 'The gifting widget' section"
    snippets = re.findall(r"```html\n(.*?)```", section.group(1), re.S)
    assert len(snippets) == 1, "the README's widget section should show one embed snippet"
    assert snippets[0].strip() == embed_snippet().strip()


class Platform:
    """A platform's chat page on another origin than the gateway (another loopback port, as
    Chromium keeps public pages from framing local ones): `body` at every path, after a
    script that keeps every message the page hears in `window.heard`."""

    def __init__(self) -> None:
        self.body = ""
        self.origin = ""
        self._site: asyncio.Server | None = None

    async def __aenter__(self) -> Platform:
        self._site = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.origin = f"http://127.0.0.1:{self._site.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._site is not None
        self._site.close()
        await self._site.wait_closed()

    def embed(self, srv: Proc, token: str, to: str) -> None:
        """The page is docs/widget.md's snippet, pointed at `srv`, for `token`'s user."""
        self.body = (embed_snippet().replace("https://gifts.example.com", srv.http)
                     .replace("to=bob", f"to={to}").replace("USER_TOKEN", json.dumps(token)))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard = ("<script>window.heard = []; window.addEventListener('message', "
                 "(e) => window.heard.push(e.data));</script>")
        html = f"<!doctype html><html><body><h1>chat</h1>{heard}{self.body}</body></html>".encode()
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(html) + html)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # a speculative connection that never asked
        finally:
            writer.close()


async def tell(page: Page, message: dict[str, Any], iframe: str = "#giftwire") -> None:
    """The platform's page posts `message` to the widget in its `iframe` (to the widget's origin)."""
    await page.evaluate("([selector, message]) => { const f = document.querySelector(selector);"
                        " f.contentWindow.postMessage(message, new URL(f.src).origin); }",
                        [iframe, message])


async def heard(page: Page, ready: int = 1) -> list[dict[str, Any]]:
    """What the platform's page heard, once it heard `ready` widgets say they are ready."""
    await page.wait_for_function(
        f"window.heard.filter((m) => m.type === 'giftwire:ready').length >= {ready}")
    got: list[dict[str, Any]] = await page.evaluate("window.heard")
    return got


async def test_the_documented_embed_snippet_works_from_another_origin(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """docs/widget.md's snippet works on another origin: token by postMessage, sign-in, gift, host told."""
    # The widget signs in inside the iframe and gifts; the host hears about it.
    alice, bob = await people(admin, "alice", "bob", 5)
    async with Platform() as host:
        host.embed(server, server.token(alice), bob)
        w = await Widget.embedded(context, server, host)
        await embedded_gift(w, admin, bob)
    types = [m["type"] for m in await heard(w.page)]
    assert "giftwire:ready" in types and "giftwire:sent" in types, types
    w.check_clean()


async def embedded_gift(w: Widget, admin: Admin, bob: str) -> None:
    """Inside the iframe: signed in by the host's message, the recipient from the URL; a gift."""
    await w.online()
    await expect(w.q("#to")).to_have_value(bob)
    await w.q("#count").fill("2")
    await w.root.get_by_role("button", name="Send", exact=True).click()
    await expect(w.q("#sent li")).to_have_text(f"Sent 2 do to {bob} ✓")
    assert await admin.balances(bob) == {"note.do": 2}


async def test_the_host_hears_how_an_awaiting_gift_was_answered(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """The host hears gifts to bob `awaiting`, then each answer as it comes."""
    # bob confirms gifts. The answers: `accepted`; `voided` with `reason: declined`.
    alice, bob = await people(admin, "alice", "bob", 10, confirm_gifts=True)
    async with Platform() as host:
        host.embed(server, server.token(alice), bob)
        w = await Widget.embedded(context, server, host)
        await w.online()
        async with await Client.connect(server.ws, server.token(bob)) as b:
            for count in (2, 3):
                await w.q("#count").fill(str(count))
                await w.root.get_by_role("button", name="Send", exact=True).click()
                offer = await b.next_event("gift.offer")
                assert offer["count"] == count
                # (answered once alice's page has its reply: else the host hears only the answer)
                await expect(w.q("#sent li").first).to_have_attribute("data-state", "awaiting")
                action = "gift.accept" if count == 2 else "gift.decline"
                await b.request(action, offer_id=offer["transfer_id"])
        await expect(w.q("#sent li")).to_have_count(2)
        await expect(w.q("#sent li").first).to_have_attribute("data-state", "voided")
        await w.page.wait_for_function(
            "window.heard.filter((m) => m.type === 'giftwire:sent').length >= 4")
    sent = [m for m in await heard(w.page) if m["type"] == "giftwire:sent"]
    assert [(m["count"], m["state"], m.get("reason")) for m in sent] == [
        (2, "awaiting", None), (2, "accepted", None), (3, "awaiting", None),
        (3, "voided", "declined")]
    w.check_clean()


async def test_the_host_changes_the_recipient_without_reloading_the_widget(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """`giftwire:context` changes the open widget's recipient; the next gift goes there; the host hears so."""
    # Same page, same connection: the new recipient is put in the picker.
    alice, bob = await people(admin, "alice", "bob", 5)
    carol = uid("carol")
    await admin.user(carol)
    await admin.follow(alice, carol)
    async with Platform() as host:
        host.embed(server, server.token(alice), bob)
        w = await Widget.embedded(context, server, host)
        await w.online()
        await expect(w.q("#to")).to_have_value(bob)
        await tell(w.page, {"type": "giftwire:context", "context": {"to": carol}})
        await expect(w.q("#to")).to_have_value(carol)
        await w.q("#count").fill("2")
        await w.root.get_by_role("button", name="Send", exact=True).click()
        await expect(w.q("#sent li")).to_have_text(f"Sent 2 do to {carol} ✓")
    assert await admin.balances(carol) == {"note.do": 2}
    assert await admin.balances(bob) == {}
    sent = [m for m in await heard(w.page) if m["type"] == "giftwire:sent"]
    assert [(m["to"], m["count"], m["state"]) for m in sent] == [(carol, 2, "confirmed")]
    assert len(w.sockets) == 1 and sum(u.startswith(f"{server.http}/widget/?") for u in w.requests) == 1
    w.check_clean()


async def test_a_fresh_token_from_the_host_brings_back_a_widget_whose_token_expired(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """A widget offline on an expired token comes online at once on `giftwire:token` with a fresh one."""
    # Offline, it says why; once online, it gifts.
    alice, bob = await people(admin, "alice", "bob", 5)
    async with Platform() as host:
        host.embed(server, server.token(alice, ttl_s=-60), bob)
        w = await Widget.embedded(context, server, host)
        await expect(w.q("body")).to_have_attribute("data-connection", "closed")
        await expect(w.q("#status")).to_have_text("Offline: the sign-in expired (4003)")
        fresh = server.token(alice)
        await tell(w.page, {"type": "giftwire:token", "token": fresh})
        await w.online()
        await expect(w.q("#status")).to_have_text(f"Online as {alice}")
        await expect(await w.send(bob, 2)).to_have_attribute("data-state", "confirmed")
    assert await admin.balances(bob) == {"note.do": 2}
    assert len(w.sockets) == 2 and f"token={fresh}" in w.sockets[1]
    states = [m["state"] for m in await heard(w.page) if m["type"] == "giftwire:state"]
    assert states[-3:] == ["closed", "connecting", "open"], states
    w.check_clean()


async def test_a_fresh_token_handed_over_while_an_expired_one_is_tried_is_not_lost(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """A fresh token handed over while an expired one is tried signs the widget in; it is not lost."""
    # The host passes its cached token, already expired, and the fresh one right after (its refresh came
    # back): the widget, refused the first, signs in with the second instead of staying offline with it in
    # hand.
    alice, bob = await people(admin, "alice", "bob", 5)
    expired, fresh = server.token(alice, ttl_s=-60), server.token(alice)
    async with Platform() as host:
        host.body = (f'<iframe id="giftwire" src="{server.http}/widget/?lang=en&to={bob}"></iframe>'
                     "<script>window.addEventListener('message', (e) => {"
                     " if (e.data.type !== 'giftwire:ready') return;"
                     " const widget = document.getElementById('giftwire').contentWindow;"
                     f" widget.postMessage({{type: 'giftwire:init', token: '{expired}'}}, '{server.http}');"
                     f" widget.postMessage({{type: 'giftwire:token', token: '{fresh}'}}, '{server.http}');"
                     " });</script>")
        w = await Widget.embedded(context, server, host)
        await w.online()
        await expect(w.q("#status")).to_have_text(f"Online as {alice}")
        await expect(await w.send(bob, 2)).to_have_attribute("data-state", "confirmed")
    assert await admin.balances(bob) == {"note.do": 2}
    assert [f"token={t}" in u for u, t in zip(w.sockets, (expired, fresh), strict=True)] == [True, True]
    w.check_clean()


async def test_a_token_of_another_user_is_ignored_before_any_welcome_too(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """A widget signed in with alice's expired token ignores a token of bob's; her fresh one signs her in."""
    # No welcome yet, but the widget is alice's: with bob's token it stays offline and keeps nothing under his
    # name.
    alice, bob = await people(admin, "alice", "bob", 5)
    async with Platform() as host:
        host.embed(server, server.token(alice, ttl_s=-60), bob)
        w = await Widget.embedded(context, server, host)
        await expect(w.q("#status")).to_have_text("Offline: the sign-in expired (4003)")
        await tell(w.page, {"type": "giftwire:token", "token": server.token(bob)})
        await asyncio.sleep(0.5)
        await expect(w.q("body")).to_have_attribute("data-connection", "closed")
        assert len(w.sockets) == 1
        await tell(w.page, {"type": "giftwire:token", "token": server.token(alice)})
        await w.online()
        await expect(w.q("#status")).to_have_text(f"Online as {alice}")
    w.check_clean()


async def test_a_token_handed_over_before_the_old_one_expires_signs_the_next_connection_in(
        own_server: OwnServer, start: Callable[..., Proc], context: BrowserContext) -> None:
    """A fresh token handed over before the old one expires signs in the connection after a server restart."""
    # The first token expires and the server restarts under the page; the widget comes back online with the
    # fresh one (not offline with auth_expired) and gifts.
    srv, vk = own_server(TEST_CLOCK)
    async with Admin(srv) as admin, Platform() as host:
        alice, bob = await people(admin, "alice", "bob", 5)
        first = srv.token(alice, ttl_s=600)
        host.embed(srv, first, bob)
        w = await Widget.embedded(context, srv, host)
        await w.online()
        fresh = srv.token(alice)
        await tell(w.page, {"type": "giftwire:token", "token": fresh})
        await admin.advance(601_000)  # the first expires (on the moved clock: nobody sleeps)
        port = srv.port
        srv.stop()
        await expect(w.q("body")).to_have_attribute("data-connection", "reconnecting")
        again = start("serve", vk.url, srv.data_dir, {}, "--port", str(port))
        assert again.port == port
        await w.online()
        await expect(w.q("#status")).to_have_text(f"Online as {alice}")
        await expect(await w.send(bob, 2)).to_have_attribute("data-state", "confirmed")
        assert await admin.balances(bob) == {"note.do": 2}
    assert f"token={first}" in w.sockets[0] and f"token={fresh}" in w.sockets[-1]
    w.check_clean(server_was_down=True)


async def test_a_page_on_an_origin_the_widget_does_not_trust_can_neither_drive_nor_hear_it(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """A widget trusting only its platform's origin ignores another framing page and tells it nothing."""
    # That page's token and recipient are ignored (one stays waiting to be signed in, one keeps its
    # recipient); of the gifts sent it hears nothing (only `ready`, which carries nothing).
    alice, bob = await people(admin, "alice", "bob", 5)
    carol = uid("carol")
    await admin.user(carol)
    widget = f"{server.http}/widget/?lang=en&origin=https://chat.example.com"
    signed_in = server.token(alice)
    async with Platform() as impostor:
        impostor.body = (f'<iframe id="giftwire" src="{widget}"></iframe>'
                         f'<iframe id="signed-in" src="{widget}&to={bob}#token={signed_in}"></iframe>')
        w = await Widget.embedded(context, server, impostor)
        other = Widget(w.page, server, w.page.frame_locator("#signed-in"), impostor.origin)
        await other.online()
        await heard(w.page, ready=2)
        for iframe in ("#giftwire", "#signed-in"):
            await tell(w.page, {"type": "giftwire:init", "token": server.token(carol),
                                "context": {"to": carol}}, iframe)
            await tell(w.page, {"type": "giftwire:context", "context": {"to": carol}}, iframe)
        await asyncio.sleep(0.5)  # (time for the messages to have been ignored)
        await expect(w.q("#status")).to_have_text("Waiting for the page to sign you in…")
        await expect(other.q("#to")).to_have_value(bob)
        await expect(other.q("#status")).to_have_text(f"Online as {alice}")
        await expect(await other.send(bob, 1)).to_have_attribute("data-state", "confirmed")
    assert [m["type"] for m in await heard(w.page, ready=2)] == ["giftwire:ready"] * 2
    assert len(w.sockets) == 1 and f"token={signed_in}" in w.sockets[0]
    assert await admin.balances(carol) == {}


async def test_told_its_hosts_origin_the_widget_obeys_only_the_parent_page_and_reports_to_it(
        server: Proc, admin: Admin, context: BrowserContext) -> None:
    """With `origin` set, only the embedding page signs the widget in and hears its state and gifts."""
    # `origin` is the platform's, written with a trailing slash, as a URL. A frame beside the widget, of that
    # same origin, cannot sign it in.
    alice, bob = await people(admin, "alice", "bob", 5)
    async with Platform() as host:
        host.body = (f'<iframe id="giftwire" src="{server.http}/widget/?lang=en&to={bob}'
                     f'&origin={host.origin}/"></iframe><iframe name="ads" srcdoc="ads"></iframe>')
        w = await Widget.embedded(context, server, host)
        await heard(w.page)
        ads = w.page.frame(name="ads")
        assert ads is not None
        await ads.evaluate("([message, origin]) => parent.document.getElementById('giftwire')"
                           ".contentWindow.postMessage(message, origin)",
                           [{"type": "giftwire:init", "token": server.token(alice)}, server.http])
        await asyncio.sleep(0.5)  # (time for the message to have been ignored)
        await expect(w.q("#status")).to_have_text("Waiting for the page to sign you in…")
        assert w.sockets == []
        await tell(w.page, {"type": "giftwire:init", "token": server.token(alice)})
        await embedded_gift(w, admin, bob)
    said = await heard(w.page)
    assert [m["state"] for m in said if m["type"] == "giftwire:state"] == ["connecting", "open"]
    sent = [m for m in said if m["type"] == "giftwire:sent"]
    assert [(m["to"], m["asset"], m["count"], m["state"]) for m in sent] == [(bob, "note.do", 2, "confirmed")]
    w.check_clean()


async def test_widget_responses_carry_a_strict_content_security_policy(server: Proc) -> None:
    """Widget page, files and client carry a CSP: self only, the gateway's WebSocket, no inline code."""
    # A missing file is the API's JSON 404, a method other than GET or HEAD 405 (with `Allow`); they and
    # the redirect to the page carry the CSP too.
    async with httpx.AsyncClient(base_url=server.http) as http:
        for path in ("/widget/", "/widget/widget.js", "/widget/giftwire.js", "/widget/i18n.js",
                     "/widget/widget.css", "/widget/icon.svg"):
            r = await http.get(path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self';" in csp
            assert f"connect-src 'self' ws://127.0.0.1:{server.port} wss://127.0.0.1:{server.port};" in csp
            assert "unsafe" not in csp and "http" not in csp.replace("https", "")
            assert r.headers["x-content-type-options"] == "nosniff"
        client_js = await http.get("/widget/giftwire.js", headers={"Origin": "https://platform.example"})
        assert client_js.headers["content-type"].startswith("text/javascript")
        # importable as a module from the platform's own pages (module scripts use CORS)
        assert client_js.headers["access-control-allow-origin"] == "*"
        again = await http.get("/widget?lang=zh")
        # relative: behind a proxy's path prefix the browser stays under it
        assert again.status_code == 307 and again.headers["location"] == "widget/?lang=zh"
        missing = await http.get("/widget/nothing-here.js")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        refused = [await http.request(method, path) for method, path in (
            ("POST", "/widget/"), ("DELETE", "/widget/widget.js"), ("POST", "/widget/giftwire.js"),
            ("PUT", "/widget"))]
        for r in refused:
            assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed"), r.url
            assert r.headers["allow"] == "GET, HEAD"
        for r in (again, missing, *refused):  # every widget response, not only the files found
            assert r.headers["content-security-policy"] == csp, r.url
            assert r.headers["x-content-type-options"] == "nosniff"
        page = (await http.get("/widget/")).text
        assert "<script>" not in page and "style=" not in page and "http" not in page


def test_every_rejection_has_chinese_words_and_both_languages_have_every_string(tmp_path: Path) -> None:
    """i18n.js: Chinese for every rejection and error code, words for each final close, same keys in both."""
    # Only known codes have words; English and Chinese have the same keys.
    from protocol.errors import ERRORS

    node = shutil.which("node")
    if node is None:  # .ci/run requires node (GIFTWIRE_REQUIRE_NODE=1): there, a failure
        if os.environ.get("GIFTWIRE_REQUIRE_NODE") == "1":
            pytest.fail("node is not installed (needed to read the widget's i18n.js)")
        pytest.skip("node is not installed (needed to read the widget's i18n.js)")
    module = tmp_path / "i18n.mjs"  # (node reads .js outside a "type": "module" package as CommonJS)
    shutil.copy(ROOT / "server" / "widget" / "static" / "i18n.js", module)
    out = subprocess.run(
        [node, "--input-type=module", "-e",
         f"import * as m from {json.dumps(module.as_uri())}; process.stdout.write(JSON.stringify(m))"],
        capture_output=True, text=True, timeout=30, check=True)
    got = json.loads(out.stdout)
    assert set(got["STRINGS"]["en"]) == set(got["STRINGS"]["zh"])
    reasons = set(got["REASONS_ZH"])
    assert set(REJECTIONS) | set(ERRORS) <= reasons  # every code a user may be shown
    assert reasons - set(REJECTIONS) - set(ERRORS) == {"lost"}
    # and words for every close that leaves the widget offline for good
    from protocol.errors import CLOSE_CODES

    final = {f"closed_{c.reason}" for c in CLOSE_CODES.values() if not c.reconnect}
    assert final <= set(got["STRINGS"]["en"]), final - set(got["STRINGS"]["en"])


async def test_a_complete_set_is_redeemed_from_the_widget(server: Proc, admin: Admin,
                                                          context: BrowserContext) -> None:
    """One card of each kind is a complete set in the widget; Redeem burns them for 100 coin and says so."""
    # The widget counts the set and its reward; after redeeming the count drops to 0 (the button off).
    u = uid("dana")
    await admin.user(u)
    kinds = (await admin.call("GET", "/notes"))["set_kinds"]
    for a in kinds:
        await admin.grant(u, 1, a)
    w = await Widget.open(context, server, u)
    have = w.q("#sets-have")
    await expect(have).to_have_text(re.compile(r"^Complete sets: 1 .*each earns 100 coin"))
    await w.root.get_by_role("button", name="Redeem a set").click()
    await expect(w.q("#sets-status")).to_have_text("Set redeemed: 100 coin")
    await expect(have).to_have_text(re.compile(r"^Complete sets: 0 "))
    await expect(w.root.get_by_role("button", name="Redeem a set")).to_be_disabled()
    assert await admin.balances(u) == {"coin": 100}
    await w.page.get_by_role("button", name="切换到中文").click()
    await expect(have).to_have_text(re.compile("^已集齐 0 套"))
    w.check_clean()


def _contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two `rgb(...)` colours."""
    def luminance(css: str) -> float:
        parts = [int(x) / 255 for x in re.findall(r"\d+", css)[:3]]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in parts]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


async def test_filled_buttons_and_badges_keep_their_contrast_in_light_and_dark(
        server: Proc, browser: Browser) -> None:
    """Send, Accept, Grab, Like and the badge have text at 4.5:1 or more on their fill, light and dark."""
    for scheme in ("light", "dark"):
        ctx = await browser.new_context(viewport=PHONE, color_scheme=scheme)
        try:
            page = await ctx.new_page()
            await page.goto(f"{server.http}/widget/?lang=en")
            colours = await page.evaluate("""() => {
                const make = (tag, cls, parent) => {
                  const outer = parent ? document.createElement("div") : null;
                  if (outer) { outer.className = parent; document.body.append(outer); }
                  const e = document.createElement(tag);
                  e.className = cls;
                  e.textContent = "x";
                  (outer ?? document.body).append(e);
                  const st = getComputedStyle(e);
                  return [cls, st.color, st.backgroundColor];
                };
                return [make("button", "primary"), make("button", "accept", "offers"),
                        make("button", "grab", "envelopes"), make("button", "like"),
                        make("span", "badge")];
            }""")
            for cls, fg, bg in colours:
                assert _contrast(fg, bg) >= 4.5, (scheme, cls, fg, bg)
        finally:
            await ctx.close()


async def test_a_risk_decision_is_said_in_words(server: Proc, admin: Admin, redis: Any,
                                                context: BrowserContext) -> None:
    """A `risk.notice` (the account frozen until a time, then lifted) shows in the status line."""
    from server.store import keys
    from server.store.scripts import Scripts

    alice = uid("alice")
    await admin.user(alice, real_name_verified=True)
    a = await Widget.open(context, server, alice)
    scripts = Scripts(redis)
    scripts.load("server.risk")
    uk = keys.user(alice)
    now = int(time.time() * 1000)  # (the shared server's clock is the real one)

    async def decide(action: str) -> None:
        await scripts["risk_apply"](
            keys=[uk.profile, uk.events, uk.channel, uk.risk_actions, uk.risk_judged],
            args=[action, now + 48 * 3_600_000, "case-1", "medium", "ip_cluster", "phone_bill",
                  now, "100:3600:p"])

    await decide("freeze")
    await expect(a.q("#send-status")).to_have_text(
        re.compile(r"^Your account is frozen until .+\. You can appeal\.$"))
    await decide("lift")
    await expect(a.q("#send-status")).to_have_text(
        "Your appeal succeeded: your account is back to normal.")
    a.check_clean()
