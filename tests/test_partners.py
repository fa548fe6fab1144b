"""Partner apps: tokens signed with a partner's secret name its channel, the channel travels
with its users' gifts to both sides, and its bonuses (points for the recipient, a joint
campaign) follow a delivered gift once. Rules first (pure), then a real server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol.client import Client
from server.config import Settings, problems
from server.gateway.auth import TokenError, make_token, verify_signed
from server.partners.rules import Partner, derived_secret, parse
from server.store.embedded import EmbeddedValkey
from tests.support import Admin, Proc, metric, run_audit

PARTNERS = "huoshan:points=2,duoshan:campaign,toutiao"
TOUTIAO_SECRET = "t" * 24
ENV = {"GIFTWIRE_PARTNERS": PARTNERS, "GIFTWIRE_PARTNER_SECRETS": f"toutiao={TOUTIAO_SECRET}"}


def test_partners_and_their_bonuses_are_parsed_and_checked() -> None:
    """Partners read `<channel>[:<bonus>[+<bonus>]]`; bad ones are refused at start naming the variable."""
    # A bad channel, bonus (or one given twice) or secret.
    assert parse(("huoshan:points=2", "duoshan:campaign+points=1", "toutiao")) == {
        "huoshan": Partner("huoshan", 2), "duoshan": Partner("duoshan", 1, True),
        "toutiao": Partner("toutiao")}
    for bad in [("Huoshan",), ("a:points=0",), ("a:points=x",), ("a:gold",), ("a", "a"),
                ("a:points=2+points=3",), ("a:campaign+campaign",),
                tuple(f"p{i}" for i in range(33))]:
        assert isinstance(parse(bad), str), bad
        assert any(p.startswith("GIFTWIRE_PARTNERS") for p in problems(Settings(partners=bad)))
    two = ("huoshan", "duoshan")
    for secrets in [("huoshan=short",), ("nobody=" + "x" * 20,), ("huoshan",),
                    ("huoshan=" + "x" * 20, "duoshan=" + "x" * 20),
                    ("huoshan=" + "x" * 20, "huoshan=" + "y" * 20)]:
        found = problems(Settings(partners=two, partner_secrets=secrets))
        assert any(p.startswith("GIFTWIRE_PARTNER_SECRETS") for p in found), secrets
        assert not any("x" * 16 in p for p in found)  # a secret is never echoed
    same = Settings(partners=two, partner_secrets=("huoshan=" + "p" * 20,), token_secret="p" * 20)
    assert any("platform" in p for p in problems(same))


def test_a_token_names_the_channel_whose_secret_signed_it() -> None:
    """A token names the channel whose secret signed it: the platform's (''), or a partner's own."""
    # A derived secret differs per channel and is not the platform's.
    platform = "p" * 32
    secrets = {"": platform, "huoshan": derived_secret(platform, "huoshan"),
               "duoshan": derived_secret(platform, "duoshan")}
    assert len(set(secrets.values())) == 3
    exp = int(time.time()) + 60
    assert verify_signed(secrets, make_token(platform, "al", exp), time.time()) == ("al", "")
    tok = make_token(secrets["duoshan"], "al", exp, device="dev1")
    assert verify_signed(secrets, tok, time.time()) == ("al", "duoshan")
    forged = verify_signed(secrets, make_token("x" * 32, "al", exp), time.time())
    assert isinstance(forged, TokenError) and forged.reason == "auth_invalid"
    odd = verify_signed(secrets, f"v1.al.{exp}.sig\u00e9", time.time())  # not a verdict crash
    assert isinstance(odd, TokenError) and odd.reason == "auth_invalid"


@pytest.fixture
def partner_server(own_server: Callable[..., tuple[Proc, EmbeddedValkey]]
                   ) -> tuple[Proc, EmbeddedValkey]:
    srv, vk = own_server(ENV)
    return srv, vk


def partner_token(srv: Proc, channel: str, user: str) -> str:
    secret = TOUTIAO_SECRET if channel == "toutiao" else derived_secret(
        srv.secrets["token_secret"], channel)
    return make_token(secret, user, int(time.time()) + 3600)


async def test_partner_gifts_carry_their_channel_and_bonuses(
        partner_server: tuple[Proc, EmbeddedValkey]) -> None:
    """Partner gifts carry their channel to both sides and earn their partner's bonuses, once."""
    # A huoshan gift earns the recipient 2 popularity points per card, once (a resend earns nothing more); a
    # duoshan gift puts both sides in duoshan's campaign; a toutiao gift carries its channel and no bonus; the
    # platform's own users see no channel; the audit holds.
    srv, vk = partner_server
    async with Admin(srv) as admin:
        s, r = await admin.pair(30)
        async with await Client.connect(srv.ws, partner_token(srv, "huoshan", s)) as a, \
                await Client.connect(srv.ws, srv.token(r)) as b:
            assert a.welcome.get("channel") == "huoshan" and "channel" not in b.welcome
            sent = await a.send_gift(r, "note.do", 3, gift_id="h1")
            assert (sent["type"], sent["channel"]) == ("gift.confirmed", "huoshan"), sent
            got = await b.next_event("gift.received")
            assert (got["count"], got["channel"]) == (3, "huoshan")
            points = await b.next_event("popularity.points")
            assert (points["delta"], points["reason"], points["balance"]) == (6, "partner", 6)
            again = await a.send_gift(r, "note.do", 3, gift_id="h1")
            assert again == {**sent, "id": again["id"]}  # the stored answer
        async with await Client.connect(srv.ws, partner_token(srv, "toutiao", s)) as other:
            # the gift id is the sender's, whatever the app: the first answer, its channel
            elsewhere = await other.send_gift(r, "note.do", 3, gift_id="h1")
            assert (elsewhere["transfer_id"], elsewhere["channel"]) == (sent["transfer_id"],
                                                                        "huoshan")
            # one user's requests settle in order, each entry's steps before the next one's:
            # once this later gift (toutiao: no bonus) is confirmed, the resends' steps ran
            assert (await other.send_gift(r, "note.do", 1, gift_id="h2"))["type"] == "gift.confirmed"
        assert (await admin.balances(r)) == {"note.do": 4, "popularity": 6}
        s2, r2 = await admin.pair(30)
        async with await Client.connect(srv.ws, partner_token(srv, "duoshan", s2)) as a:
            assert (await a.send_gift(r2, "note.do", 1))["channel"] == "duoshan"
        for _ in range(200):  # the bonus steps run after the sender's confirmation
            camp = await admin.call("GET", "/partners/duoshan/campaign")
            if camp["total"] == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(m["user"] for m in camp["members"]) == sorted([s2, r2])
        assert camp["total"] == 2 and camp["next"] is None
        assert await admin.balances(r2) == {"note.do": 1}  # no points bonus on duoshan
        s3, r3 = await admin.pair(30)
        async with await Client.connect(srv.ws, partner_token(srv, "toutiao", s3)) as a, \
                await Client.connect(srv.ws, srv.token(s3)) as own:
            assert (await a.send_gift(r3, "note.do", 1))["channel"] == "toutiao"
            assert "channel" not in await own.send_gift(r3, "note.do", 1)
        listing = {x["channel"]: x for x in (await admin.call("GET", "/partners"))["partners"]}
        assert listing["huoshan"] == {"channel": "huoshan", "points_per_card": 2,
                                      "campaign": False, "campaign_members": 0}
        assert listing["duoshan"]["campaign_members"] == 2
        r404 = await admin.call("GET", "/partners/huoshan/campaign", ok=False)
        assert (r404.status_code, r404.json()["error"]["code"]) == (404, "not_found")
        # one gift earned points, two users joined a campaign: counted once each
        assert await metric(srv, "giftwire_partner_bonuses_total") == 3
    rc, out = await run_audit(vk.url)
    assert rc == 0, out


async def test_a_partner_offer_earns_its_bonus_when_accepted(
        partner_server: tuple[Proc, EmbeddedValkey]) -> None:
    """A huoshan gift's offer shows its channel and earns nothing until accepted, then cards and points."""
    # The recipient confirms gifts; on accepting they get the cards, `channel` and the points.
    srv, _ = partner_server
    async with Admin(srv) as admin:
        s, r = await admin.pair(10, recipient={"confirm_gifts": True})
        async with await Client.connect(srv.ws, partner_token(srv, "huoshan", s)) as a, \
                await Client.connect(srv.ws, srv.token(r)) as b:
            await a.send_gift(r, "note.do", 4)
            offer = await b.next_event("gift.offer")
            assert offer["channel"] == "huoshan"
            assert await admin.balances(r) == {}
            got = await b.request("gift.accept", offer_id=offer["transfer_id"])
            assert (got["type"], got["channel"]) == ("gift.received", "huoshan")
            points = await b.next_event("popularity.points")
            assert (points["delta"], points["reason"]) == (8, "partner")
        assert await admin.balances(r) == {"note.do": 4, "popularity": 8}


def test_the_cli_mints_a_partners_token(tmp_path: object) -> None:
    """`giftwire token --partner CHANNEL` signs with the secret `giftwire partner-secret CHANNEL` prints."""
    # An unknown channel exits 1 naming the partners.
    env = {"PATH": "/usr/bin:/bin", "GIFTWIRE_DATA_DIR": str(tmp_path), **ENV}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server.cli", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    secret = run("partner-secret", "huoshan").stdout.strip()
    platform = json.loads((Path(str(tmp_path)) / "secrets.json").read_text())["token_secret"]
    assert secret == derived_secret(platform, "huoshan") != platform
    token = run("token", "alice", "--partner", "huoshan").stdout.strip()
    assert verify_signed({"": platform, "huoshan": secret}, token, time.time()) == (
        "alice", "huoshan")
    assert run("partner-secret", "toutiao").stdout.strip() == TOUTIAO_SECRET
    bad = run("token", "alice", "--partner", "nope")
    assert bad.returncode == 1 and "huoshan, duoshan, toutiao" in bad.stderr
