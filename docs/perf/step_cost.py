"""python docs/perf/step_cost.py [stock|first|parsed] [N] — Valkey's time per gift debit
(`send_debit`) called directly, N times in pipelines of 500 from 200 senders on a private
Valkey (`INFO commandstats`, usec ÷ calls). `first` returns at the script's first line (the
FCALL itself: KEYS/ARGV in, a reply out), `parsed` right after the arguments are parsed and
before the first command; `stock` is the whole step. Measurement only; not imported by
giftwire or the harness."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import uvloop
from redis.asyncio import Redis

from server.config import Settings
from server.gifting.flow import GiftFlow, GiftItem
from server.gifting.steps import Today
from server.ledger.grants import grant_call
from server.settlement.replies import Replies
from server.store import keys
from server.store import scripts as sm
from server.store.embedded import EmbeddedValkey

VARIANT = sys.argv[1] if len(sys.argv) > 1 else "stock"
MARKERS = {"first": "local k_profile, k_balances, k_system, k_transfers = KEYS[1]",
           "parsed": "local stored = redis.call('HGET', k_transfers, transfer_id)"}
PIPELINE = 500
DAY_MS = 86_400_000
_library = sm.library


def cut(package: str) -> tuple[str, dict[str, str]]:
    """The gifting library with `send_debit` returning early at the variant's line."""
    text, functions = _library(package)
    if package == "server.gifting" and VARIANT in MARKERS:
        at = text.index(MARKERS[VARIANT], text.index("local function send_debit(KEYS, ARGV)"))
        text = text[:at] + "if true then return {'conflict', ''} end\n" + text[at:]
    return text, functions


async def main(n: int) -> None:
    sm.library = cut
    vk = EmbeddedValkey(Path(tempfile.mkdtemp(prefix="gw-step-")))
    vk.start()
    r = Redis.from_url(vk.url, decode_responses=True)
    try:
        s = Settings().replace(gifts_per_day=10**9, pair_gifts_per_day=10**9)
        sc = sm.Scripts(r)
        for package in ("server.ledger", "server.gifting", "server.settlement"):
            sc.load(package)
            await sm.Library(r, package).load()
        flow = GiftFlow(r, sc, s, Replies(r, cluster=False))
        now = int(time.time() * 1000)
        today = Today(now, "20261207", festival=False)
        pairs = [(f"s{i}", f"r{i}") for i in range(200)]
        for sender, recipient in pairs:
            for u in (sender, recipient):
                await r.hset(keys.user(u).profile, mapping={"registered_at_ms": now - 30 * DAY_MS,
                                                            "real_name": "1"})
            await r.hset(keys.user(sender).follows, recipient, now - 4 * DAY_MS)
            k, a = grant_call(s, sender, "g" + sender, "note.do", 10**6, "mint", "grant", now)
            await sc["grant"](keys=k, args=a)
        await r.config_resetstat()
        for base in range(0, n, PIPELINE):
            pipe = r.pipeline(transaction=False)
            for j in range(base, min(n, base + PIPELINE)):
                sender, recipient = pairs[j % len(pairs)]
                item = GiftItem(sender=sender, gift_id=f"x{j}", to=recipient, asset="note.do",
                                count=1, room="", route="")
                k, a = flow.debit_call(item, today)
                pipe.fcall(sc["send_debit"].name, len(k), *k, *a)
            await pipe.execute()
        st = (await r.info("commandstats"))["cmdstat_fcall"]
        print(f"{VARIANT}: {st['usec'] / st['calls']:.1f} µs per send_debit ({st['calls']} calls)")
    finally:
        await r.aclose()
        vk.stop()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[2]) if len(sys.argv) > 2 else 10_000))
