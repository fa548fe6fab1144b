"""The risk engine's worker side: every `risk_tick_ms` a worker reads the risk streams (a
consumer group shared by all workers), counts each signal where its rule needs it, each
count on its own owner's slot — the device's accounts (`{d:<device>}`), a network's gifts
to one recipient (`{n:<net>}`), a user's action times (`{u:<user>}`) — judges, and applies
decisions on the user's slot (where the gateways' cached view and the settlement steps read
them), recording a case with its evidence for appeals.

    low     shared device: the accounts beyond `device_accounts_max` on one device within
            `device_window_s` are restricted from gifting for `restriction_s`
    medium  IP cluster: `cluster_accounts` accounts of one /24 (/64) gifting one recipient
            within `cluster_window_s` are frozen (gifting, grabbing) for `freeze_s`
    high    automation: a rate or a regularity no human keeps (rules.automation): banned for
            good and the device blacklisted
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from redis.exceptions import ResponseError

from protocol.risk import EVIDENCE
from server.config import Settings
from server.gateway.peers import in_networks, network_of, parse_trusted
from server.risk import rules
from server.store import keys
from server.store.outcomes import Status, status
from server.store.pipeline import Call, run_calls
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.risk")
GROUP = "risk-engine"
READ_MAX = 1024  # signals one worker judges per partition per tick
DEVICE_ACCOUNTS_KEPT = 200  # accounts a device's record keeps (the rule needs a handful)
CLUSTER_ACCOUNTS_KEPT = 1000
ACTIONS = ("gift", "grab", "like", "post")


class Engine:
    def __init__(self, scripts: Scripts, s: Settings) -> None:
        self.scripts = scripts
        self.redis = scripts.redis
        self.s = s
        self.consumer = f"risk-{uuid.uuid4().hex[:8]}"
        self.ready: set[str] = set()
        self.exempt_networks = parse_trusted(s.risk_exempt_networks)

    async def run(self, now_ms: int) -> int:
        """One tick: read, judge, acknowledge every partition's new signals."""
        handled = 0
        for partition in range(self.s.partitions):
            stream = keys.risk_stream(partition)
            if stream not in self.ready:
                try:
                    await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self.ready.add(stream)
            got = await self.redis.xreadgroup(GROUP, self.consumer, {stream: ">"}, count=READ_MAX)
            for _, entries in got or []:
                for entry_id, fields in entries:
                    try:
                        await self.judge(fields)
                    except Exception:  # a bad signal never stops the engine
                        log.exception("risk signal %s not judged", entry_id)
                    await self.redis.xack(stream, GROUP, entry_id)
                    handled += 1
        return handled

    async def judge(self, f: dict[str, str]) -> None:
        kind, user = f.get("kind", ""), f.get("user", "")
        if not kind or not user:
            return  # the like speed rule's own refusals: the like request was counted already
        at, s = int(f["at_ms"]), self.s
        device, ip = f.get("device", ""), f.get("ip", "")
        if device and kind == "connect":  # a device serves the accounts that connect on it
            r = await self.scripts["risk_device"](
                keys=[keys.device_accounts(device), keys.device_ban(device)],
                args=[user, at, s.device_window_s * 1000, DEVICE_ACCOUNTS_KEPT])
            place, count = int(r[1]), int(r[2])
            if place > s.device_accounts_max:
                await self.decide(user, "restrict", "low", "shared_device", at,
                                  at + s.restriction_s * 1000,
                                  {"device": device, "accounts_in_window": count, "place": place,
                                   "window_s": s.device_window_s, "ip": ip})
        if kind == "gift" and ip and f.get("to") and not self.exempt(ip):
            net = network_of(ip)
            r = await self.scripts["risk_cluster"](
                keys=[keys.cluster_gifts(net, f["to"])],
                args=[user, at, s.cluster_window_s * 1000, s.cluster_accounts,
                      CLUSTER_ACCOUNTS_KEPT])
            if r[2]:
                accounts = orjson.loads(r[2])
                await self.decide_many(accounts, "freeze", "medium", "ip_cluster", at,
                                       at + s.freeze_s * 1000,
                                       {"network": net, "recipient": f["to"],
                                        "accounts": accounts[:100], "count": int(r[1]),
                                        "window_s": s.cluster_window_s})
        if kind in ACTIONS:
            r = await self.scripts["risk_actions"](
                keys=[keys.user(user).risk_actions],
                args=[at, rules.kept_times(s), s.device_window_s * 1000, kind])
            actions = [rules.parse_action(x) for x in r[1]]
            times = [t for t, _ in actions]
            verdict = rules.automation(actions, s)
            if verdict:
                applied = await self.decide(user, "ban", "high", verdict, at, 0,
                                            {"device": device, "ip": ip, "recent_ms": times[:60],
                                             "window_s": s.bot_window_s})
                if applied and device:
                    await self.scripts["device_ban"](keys=[keys.device_ban(device)],
                                                     args=["set", applied])

    def exempt(self, ip: str) -> bool:
        return in_networks(ip, self.exempt_networks)

    async def decide(self, user: str, action: str, level: str, reason: str, at: int,
                     until: int, evidence: dict[str, Any]) -> str | None:
        """Apply a decision on the user's slot; when it is new, open its case. Returns the
        case id of a new decision."""
        return (await self.decide_many([user], action, level, reason, at, until, evidence))[0]

    async def decide_many(self, users: list[str], action: str, level: str, reason: str, at: int,
                          until: int, evidence: dict[str, Any]) -> list[str | None]:
        """One decision for many accounts (a cluster), one pipelined round trip: only the
        accounts it is new for get a case."""
        calls: list[Call] = []
        for user in users:
            uk = keys.user(user)
            calls.append(([uk.profile, uk.events, uk.channel, uk.risk_actions],
                          [action, until, f"{reason}-{user}-{at}", level, reason, EVIDENCE[level],
                           at, self.s.events_bound]))
        replies = await run_calls(self.redis, self.s.redis_cluster, self.scripts["risk_apply"], calls)
        opened: list[str | None] = []
        pipe = self.redis.pipeline(transaction=True)  # one slot: `{risk}`
        for user, reply in zip(users, replies, strict=True):
            if isinstance(reply, Exception) or status(reply) is not Status.APPLIED:
                opened.append(None)
                continue
            case = f"{reason}-{user}-{at}"
            record = {"case": case, "user": user, "level": level, "reason": reason,
                      "action": action, "until_ms": until or None, "opened_ms": at,
                      "evidence": evidence, "status": "open"}
            pipe.set(keys.risk_case(case), orjson.dumps(record))
            pipe.zadd(keys.RISK_CASES, {case: at})
            opened.append(case)
            log.info("risk decision: %s %s (%s)", action, user, reason)
        if any(opened):
            await pipe.execute()
            await self.trim()
        return opened

    async def trim(self) -> None:
        """Beyond `risk_cases_max`, the oldest resolved cases go (open ones stay: an appeal
        may still come)."""
        over = await self.redis.zcard(keys.RISK_CASES) - self.s.risk_cases_max
        if over <= 0:
            return
        old = await self.redis.zrange(keys.RISK_CASES, 0, 4 * over)
        records = await self.redis.mget([keys.risk_case(c) for c in old])
        done = [c for c, raw in zip(old, records, strict=True)
                if raw is None or orjson.loads(raw)["status"] != "open"][:over]
        if done:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zrem(keys.RISK_CASES, *done)
            pipe.delete(*(keys.risk_case(c) for c in done))
            await pipe.execute()
