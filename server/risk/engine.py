"""The risk engine's worker side: every `risk_engine_tick_ms` a worker reads the risk streams (a
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
import time
import uuid
from typing import Any

import orjson
from redis.exceptions import ResponseError

from protocol.risk import EVIDENCE
from server.config import Settings
from server.gateway.peers import in_networks, network_of, parse_trusted
from server.risk import rules, signals
from server.risk.gate import SIGNALS_DROPPED
from server.store import keys
from server.store.outcomes import Status, status
from server.store.pipeline import TRANSIENT, Call, run_calls
from server.store.scripts import Scripts

log = logging.getLogger("giftwire.risk")
GROUP = "risk-engine"
READ_MAX = 64  # stream entries one read takes (a batch entry holds up to signals.PER_ENTRY)
JUDGE_MAX = 2048  # signals judged together (bounds a call's arguments: one user's actions)
BUDGET_TICKS = 4  # a tick reads on while reads come back full, for up to this many ticks
STALE_ROUNDS_MAX = 100  # XAUTOCLAIM rounds a check
STALE_CHECK_S = 60.0  # how often an engine looks for entries a killed engine left
CONSUMER_IDLE_MS = 3_600_000  # an engine's consumer idle this long (and owing nothing) is gone
ACTIONS = ("gift", "grab", "like", "post", rules.LIKE_REFUSED)


def like_refused(report: dict[str, str]) -> dict[str, str]:
    """The like speed rule's report (`server/rooms/handlers.py`: a field map, `signal`
    `like_speed`) as a signal: an action for the rate rule, of the kind its refusals count as
    (none, so it is left out, when its time is unreadable)."""
    at_ms = report.get("at_ms", "")
    if not (at_ms.isascii() and at_ms.isdigit()):
        return {}
    return {"kind": rules.LIKE_REFUSED, "user": report.get("user", ""), "device": "", "ip": "",
            "to": "", "at_ms": at_ms}


class Engine:
    def __init__(self, scripts: Scripts, s: Settings) -> None:
        self.scripts = scripts
        self.redis = scripts.redis
        self.s = s
        self.consumer = f"risk-{uuid.uuid4().hex[:8]}"
        self.dropped_now = 0  # signals of the batch in hand whose calls failed (counted)
        self.ready: set[str] = set()
        self.exempt_networks = parse_trusted(s.risk_exempt_networks)
        self.next_stale_check = 0.0

    async def run(self, now_ms: int) -> int:
        """One tick: read, judge, acknowledge every partition's new signals — read after read
        while reads come back full, for up to `BUDGET_TICKS` ticks (a backlog is caught up,
        and a flood cannot hold the engine on one partition for ever)."""
        handled = 0  # stream entries
        deadline = time.monotonic() + BUDGET_TICKS * self.s.risk_engine_tick_ms / 1000
        for partition in range(self.s.partitions):
            stream = keys.risk_stream(partition)
            if stream not in self.ready:
                try:
                    await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self.ready.add(stream)
            if time.monotonic() >= self.next_stale_check:
                await self.drop_stale(stream)
            while True:
                got = await self.redis.xreadgroup(GROUP, self.consumer, {stream: ">"},
                                                  count=READ_MAX)
                entries = [e for _, batch in got or [] for e in batch]
                if not entries:
                    break
                await self.judge_entries(entries)
                await self.redis.xack(stream, GROUP, *(eid for eid, _ in entries))
                handled += len(entries)
                if len(entries) < READ_MAX or time.monotonic() > deadline:
                    break
        if time.monotonic() >= self.next_stale_check:
            self.next_stale_check = time.monotonic() + STALE_CHECK_S
        return handled

    async def judge_entries(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Entries' signals, at most `JUDGE_MAX` to a judgement (bounded calls)."""
        sigs: list[dict[str, str]] = []
        for eid, fields in entries:
            try:
                sigs.extend(signals.decode(fields))
            except (ValueError, TypeError):  # a malformed entry is dropped alone, not its neighbours
                log.error("risk stream entry %s unreadable: %r", eid, fields)
        for i in range(0, len(sigs), JUDGE_MAX):
            batch = sigs[i:i + JUDGE_MAX]
            self.dropped_now = 0  # counted by `calls` for the calls that failed alone
            try:
                await self.judge(batch)
            except TRANSIENT as exc:  # Redis away (a cluster's failed calls are their own)
                log.warning("%d risk signals not judged: %s", len(batch), exc)
                SIGNALS_DROPPED.inc(max(0, len(batch) - self.dropped_now))
            except Exception:  # a bad batch never stops the engine
                log.exception("risk signals not judged")
                SIGNALS_DROPPED.inc(max(0, len(batch) - self.dropped_now))

    async def drop_stale(self, stream: str) -> None:
        """Entries an engine read and never acknowledged (it was killed mid-batch): dropped,
        not judged again — their counts may be in already, and counting an action twice
        could ban a person; missing one only delays a detection."""
        start = "0-0"
        for _ in range(STALE_ROUNDS_MAX):
            start, items, _ = await self.redis.xautoclaim(stream, GROUP, self.consumer,
                                                          min_idle_time=self.s.claim_idle_ms,
                                                          start_id=start, count=READ_MAX)
            ids = [eid for eid, _ in items]
            if ids:
                await self.redis.xack(stream, GROUP, *ids)
                SIGNALS_DROPPED.inc(len(ids))
                log.warning("dropped %d risk stream entries a stopped engine left", len(ids))
            if start == "0-0":
                break
        # and the consumers engines that stopped left behind (each start names a new one)
        for c in await self.redis.xinfo_consumers(stream, GROUP):
            if (c["name"] != self.consumer and int(c["pending"]) == 0
                    and int(c["idle"]) > CONSUMER_IDLE_MS):
                await self.redis.xgroup_delconsumer(stream, GROUP, c["name"])

    async def judge(self, batch: list[dict[str, str]]) -> None:
        """A batch of signals, in their order: each rule's counts in one pipelined round trip
        (each call on its owner's slot), then the decisions they call for."""
        s = self.s
        signals = [like_refused(f) if f.get("signal") == "like_speed" else f for f in batch]
        signals = [f for f in signals if f.get("kind") and f.get("user")]
        decisions: list[tuple[list[str], str, str, str, int, int, dict[str, Any]]] = []

        # low: a device serves the accounts that connect on it
        connects = [f for f in signals if f["kind"] == "connect" and f.get("device")]
        replies = await self.calls("risk_device", [
            ([keys.device_accounts(f["device"]), keys.device_ban(f["device"])],
             [f["user"], int(f["at_ms"]), s.device_window_s * 1000, rules.DEVICE_ACCOUNTS_KEPT])
            for f in connects], [1] * len(connects))
        for f, r in zip(connects, replies, strict=True):
            if r is not None and int(r[1]) > s.device_accounts_max:
                at = int(f["at_ms"])
                decisions.append(([f["user"]], "restrict", "low", "shared_device", at,
                                  at + s.restriction_s * 1000,
                                  {"device": f["device"], "accounts_in_window": int(r[2]),
                                   "place": int(r[1]), "window_s": s.device_window_s,
                                   "ip": f.get("ip", "")}))

        # medium: a network's accounts gifting one recipient, one call per network and
        # recipient a batch
        clusters: dict[tuple[str, str], list[dict[str, str]]] = {}
        exempt: dict[str, bool] = {}
        for f in signals:
            ip = f.get("ip")
            if f["kind"] != "gift" or not ip or not f.get("to"):
                continue
            if ip not in exempt:
                exempt[ip] = self.exempt(ip)
            if not exempt[ip]:
                net = network_of(ip, s.cluster_prefix_v4, s.cluster_prefix_v6)
                clusters.setdefault((net, f["to"]), []).append(f)
        replies = await self.calls("risk_cluster", [
            ([keys.cluster_gifts(net, to)],
             [s.cluster_window_s * 1000, s.cluster_accounts, rules.CLUSTER_ACCOUNTS_KEPT,
              *(x for f in fs for x in (f["user"], int(f["at_ms"])))])
            for (net, to), fs in clusters.items()], [len(fs) for fs in clusters.values()])
        for (net, to), r in zip(clusters, replies, strict=True):
            if r is not None and r[2]:
                at, accounts = int(r[3]), orjson.loads(r[2])
                decisions.append((accounts, "freeze", "medium", "ip_cluster", at,
                                  at + s.freeze_s * 1000,
                                  {"network": net, "recipient": to, "accounts": accounts[:100],
                                   "count": int(r[1]), "window_s": s.cluster_window_s}))

        # high: a user's recent actions, judged after each one; one call per user a batch
        acts: dict[str, list[dict[str, str]]] = {}
        for f in signals:
            if f["kind"] in ACTIONS:
                acts.setdefault(f["user"], []).append(f)
        keep, keep_judged = rules.kept_times(s), rules.kept_judged(s)

        recorded = {user: [f"{f['at_ms']}:{f['kind']}" for f in fs] for user, fs in acts.items()}
        judged_of = {user: [e for e, f in zip(recorded[user], fs, strict=True)
                            if f["kind"] not in rules.RATE_ONLY] for user, fs in acts.items()}
        replies = await self.calls("risk_actions", [
            ([keys.user(user).risk_actions, keys.user(user).risk_judged],
             [keep, s.device_window_s * 1000, keep_judged, len(fs), *recorded[user],
              *judged_of[user]])
            for user, fs in acts.items()], [len(fs) for fs in acts.values()])
        for (user, fs), r in zip(acts.items(), replies, strict=True):
            if r is None:
                continue
            recent = [rules.parse_action(x) for x in r[1].split(",") if x]
            recent_judged = [rules.parse_action(x) for x in r[2].split(",") if x]
            judged_in_call = len(judged_of[user])
            judged_so_far = 0
            for i, f in enumerate(fs):  # oldest first: the kept times after each action
                if f["kind"] not in rules.RATE_ONLY:
                    judged_so_far += 1
                if f["kind"] == rules.LIKE_REFUSED:
                    # counted, not judged: its request's own signal (a gateway's, with the
                    # device to blacklist) follows within a gateway tick and is judged
                    continue
                actions = recent[len(fs) - 1 - i:][:keep]
                judged = recent_judged[judged_in_call - judged_so_far:][:keep_judged]
                verdict = rules.automation(actions, s, judged)
                if verdict:
                    decisions.append(([user], "ban", "high", verdict, int(f["at_ms"]), 0,
                                      {"device": f.get("device", ""), "ip": f.get("ip", ""),
                                       "recent_ms": [t for t, _ in actions][:60],
                                       "likes_refused": sum(1 for _, k in actions
                                                            if k == rules.LIKE_REFUSED),
                                       "window_s": s.bot_window_s}))
                    break

        decided: set[tuple[str, str]] = set()  # one decision per account and kind a batch
        for users, action, level, reason, at, until, evidence in decisions:
            fresh = [u for u in users if (u, action) not in decided]
            decided.update((u, action) for u in fresh)
            if not fresh:
                continue
            opened = await self.decide_many(fresh, action, level, reason, at, until, evidence)
            device = evidence.get("device")
            if action == "ban" and device and opened[0]:
                await self.scripts["device_ban"](keys=[keys.device_ban(device)],
                                                 args=["set", opened[0]])

    async def calls(self, script: str, calls: list[Call], signals_of: list[int]) -> list[Any]:
        """One pipelined round trip; a failed call's reply is None (logged, its signals counted
        dropped). On a cluster a call that meets trouble (its slot moving, its node away)
        fails alone: the other users' signals are judged."""
        if not calls:
            return []
        replies = await run_calls(self.redis, self.s.redis_cluster, self.scripts[script], calls,
                                  transient="return")
        out: list[Any] = []
        for reply, n in zip(replies, signals_of, strict=True):
            if isinstance(reply, Exception):
                log.error("%s failed: %r", script, reply)
                SIGNALS_DROPPED.inc(n)
                self.dropped_now += n
                out.append(None)
            else:
                out.append(reply)
        return out

    def exempt(self, ip: str) -> bool:
        return in_networks(ip, self.exempt_networks)

    async def decide_many(self, users: list[str], action: str, level: str, reason: str, at: int,
                          until: int, evidence: dict[str, Any]) -> list[str | None]:
        """One decision for many accounts (a cluster), one pipelined round trip: only the
        accounts it is new for keep a case. The cases are recorded *before* the decision
        lands, so a user who hears of one always has a case to appeal, even if this process
        dies in between (its re-run finds its own case in force and keeps it); the cases of
        accounts it was not new for are then removed."""
        cases = {user: f"{reason}-{user}-{at}" for user in users}  # the same on a re-run
        calls: list[Call] = []
        pipe = self.redis.pipeline(transaction=True)  # one slot: `{risk}`
        for user in users:
            uk = keys.user(user)
            calls.append(([uk.profile, uk.events, uk.channel, uk.risk_actions, uk.risk_judged],
                          [action, until, cases[user], level, reason, EVIDENCE[level],
                           at, self.s.events_bound]))
            record = {"case": cases[user], "user": user, "level": level, "reason": reason,
                      "action": action, "until_ms": until or None, "opened_ms": at,
                      "evidence": evidence, "status": "open"}
            pipe.set(keys.risk_case(cases[user]), orjson.dumps(record))
            pipe.zadd(keys.RISK_CASES, {cases[user]: at})
        await pipe.execute()
        # (on a cluster a user whose slot is moving fails alone: dropped below, case removed)
        replies = await run_calls(self.redis, self.s.redis_cluster, self.scripts["risk_apply"], calls,
                                  transient="return")
        opened: list[str | None] = []
        dropped: list[str] = []
        for user, reply in zip(users, replies, strict=True):
            case = cases[user]
            st = None if isinstance(reply, Exception) else status(reply)
            if st is Status.APPLIED or (st is Status.EXISTS and len(reply) > 2 and reply[2] == case):
                opened.append(case)
                if st is Status.APPLIED:
                    log.info("risk decision: %s %s (%s)", action, user, reason)
            else:  # in force already (another case), cleared by an appeal, or failed
                opened.append(None)
                dropped.append(case)
        if dropped:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zrem(keys.RISK_CASES, *dropped)
            pipe.delete(*(keys.risk_case(c) for c in dropped))
            await pipe.execute()
        if any(opened):
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
