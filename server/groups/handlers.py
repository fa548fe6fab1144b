"""Groups' requests at the gateway. Membership, chat, polls and moderation act on the
group's slot directly (one Lua call each: nothing here moves money); red envelopes go
to settlement like gifts. What a rule needs from the user's own slot (an iron-fan tag,
a fan-club level) is read first and handed to the group's script."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from protocol.messages import encode
from server import days
from server.admin.validate import stream_id
from server.gateway.connection import Connection
from server.gateway.endpoint import error_frame
from server.groups import envelopes
from server.groups.metrics import POSTED
from server.groups.moderation import ad_found
from server.groups.view import envelope_view, poll_view
from server.store import keys
from server.store.outcomes import Status, status

if TYPE_CHECKING:
    from server.gateway.endpoint import Gateway

EXT = "groups"  # the key of this module's state in `Gateway.ext`
log = logging.getLogger("giftwire.groups")
HISTORY_PAGE_DEFAULT = 50
OPEN_LISTED_MAX = 100  # open polls / envelopes a snapshot lists


class GroupWatch:
    """This gateway's side of groups: frames per group through the shared broadcast, and
    each group's owner (fixed at creation) cached for badges."""

    def __init__(self, gw: Gateway, p: Any) -> None:
        self.gw = gw
        self.p = p
        self.owners: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        gw.broadcast.watchers.append(self.on_event)

    def on_event(self, channel: str, event_json: str) -> None:
        """A member removed (or gone) stops watching on every connection here, after the
        tick that tells them so: a removed member reads nothing more."""
        if '"kind":"removed"' not in event_json and '"kind":"leave"' not in event_json:
            return
        user = orjson.loads(event_json).get("user")
        out = [c for c in self.gw.hub.on(channel) if c.user == user]
        if out:
            task = asyncio.get_running_loop().create_task(self._drop(channel, out))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drop(self, channel: str, conns: list[Connection]) -> None:
        await asyncio.sleep(2 * self.gw.s.room_tick_ms / 1000)  # their last frame goes out first
        for conn in conns:
            await self.gw.hub.leave(conn, channel)
        self.gw.broadcast.close_if_unwatched(channel)

    def channel(self, group: str) -> str:
        return keys.group(group).channel

    def watching(self, conn: Connection) -> int:
        return sum(1 for c in conn.channels if c.endswith(":c") and "{g:" in c)

    async def open(self, conn: Connection, group: str) -> None:
        ch = self.channel(group)
        self.gw.broadcast.open(ch, "group.frame", "group", group)
        await self.gw.hub.join(conn, ch)

    async def close(self, conn: Connection, group: str) -> None:
        ch = self.channel(group)
        await self.gw.hub.leave(conn, ch)
        self.gw.broadcast.close_if_unwatched(ch)

    async def owner(self, group: str) -> str | None:
        owner = self.owners.get(group)
        if owner is None:
            owner = await self.gw.redis.hget(keys.group(group).profile, "owner")
            if owner is not None and len(self.owners) < OWNERS_CACHED_MAX:
                self.owners[group] = owner
        return owner


OWNERS_CACHED_MAX = 100_000


def watch(gw: Gateway) -> GroupWatch:
    w: GroupWatch = gw.ext[EXT]
    return w


async def snapshot(gw: Gateway, group: str, user: str, request_id: str | None) -> str | None:
    """The `group.snapshot` frame for a member, or None when the group or membership is gone."""
    g = keys.group(group)
    pipe = gw.redis.pipeline(transaction=False)
    pipe.hgetall(g.profile)
    pipe.hget(g.members, user)
    pipe.hget(g.mutes, user)
    pipe.zrange(g.envelopes, 0, OPEN_LISTED_MAX - 1)
    pipe.zrange(g.polls, 0, OPEN_LISTED_MAX - 1)
    prof, role, muted, env_ids, poll_ids = await pipe.execute()
    if "owner" not in prof or role is None:
        return None
    pipe = gw.redis.pipeline(transaction=False)
    for e in env_ids:
        pipe.hgetall(g.envelope(e))
    for pid in poll_ids:
        pipe.hgetall(g.poll(pid))
    got = await pipe.execute()
    envs = [envelope_view(e, h) for e, h in zip(env_ids, got[:len(env_ids)], strict=True) if h]
    polls = [poll_view(pid, h) for pid, h in zip(poll_ids, got[len(env_ids):], strict=True) if h]
    until = int(muted or 0)
    return encode("group.snapshot", id=request_id, group=group, owner=prof["owner"],
                  group_type=prof["type"], rule=prof["rule"], capacity=int(prof["capacity"]),
                  members=int(prof.get("members", 0)), role=role, gseq=int(prof.get("gseq", 0)),
                  muted_until_ms=until if until > gw.clock.now_ms() else None,
                  envelopes=envs, polls=polls).decode()


async def _send_snapshot(gw: Gateway, conn: Connection, group: str, rid: str) -> None:
    frame = await snapshot(gw, group, conn.user, rid)
    if frame is None:
        await watch(gw).close(conn, group)
        gw.error(conn, "not_member", rid)
    else:
        conn.push(frame)


async def join(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    w, g = watch(gw), keys.group(d["group"])
    owner = await w.owner(d["group"])
    if owner is None:
        gw.error(conn, "group_unknown", d["id"])
        return
    uk = keys.user(conn.user)
    pipe = gw.redis.pipeline(transaction=False)
    pipe.sismember(uk.iron_fan_of, owner)
    pipe.hget(uk.like_levels, owner)
    pipe.hexists(uk.profile, "registered_at_ms")
    iron, level, registered = await pipe.execute()
    if not registered:
        gw.error(conn, "not_registered", d["id"])
        return
    if watch_full(gw, conn, d["group"]):
        gw.error(conn, "too_many_groups", d["id"])
        return
    reply = await w.p.scripts["group_join"](
        keys=[g.profile, g.members, g.removed, g.applications, g.invites, g.channel],
        args=[conn.user, 1 if iron else 0, int(level or 0), d.get("invite", ""),
              gw.clock.now_ms(), gw.s.publish_mode])
    if status(reply) is Status.REJECTED:
        gw.error(conn, str(reply[1]), d["id"])
    elif reply[1] == "applied":
        conn.push(encode("group.applied", id=d["id"], group=d["group"]).decode())
    else:
        await w.open(conn, d["group"])  # subscribe first: frames after the snapshot are not missed
        await _send_snapshot(gw, conn, d["group"], d["id"])


def watch_full(gw: Gateway, conn: Connection, group: str) -> bool:
    return keys.group(group).channel not in conn.channels \
        and watch(gw).watching(conn) >= gw.s.groups_per_connection_max


async def open_(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    if watch_full(gw, conn, d["group"]):
        gw.error(conn, "too_many_groups", d["id"])
        return
    # a member before subscribing: an outsider on the channel, even until the snapshot said
    # no, was written the group's frames (its messages) meanwhile
    if await gw.redis.hget(keys.group(d["group"]).members, conn.user) is None:
        gw.error(conn, "not_member", d["id"])
        return
    await watch(gw).open(conn, d["group"])
    await _send_snapshot(gw, conn, d["group"], d["id"])


async def close(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    await watch(gw).close(conn, d["group"])
    conn.push(encode("group.closed", id=d["id"], group=d["group"]).decode())


async def state(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    frame = await snapshot(gw, d["group"], conn.user, d["id"])
    if frame is None:
        gw.error(conn, "not_member", d["id"])
    else:
        conn.push(frame)


async def leave(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    g = keys.group(d["group"])
    reply = await watch(gw).p.scripts["group_leave"](
        keys=[g.profile, g.members, g.mutes, g.channel, g.applications],
        args=[conn.user, gw.s.publish_mode, gw.clock.now_ms()])
    if status(reply) is Status.REJECTED:
        gw.error(conn, str(reply[1]), d["id"])
        return
    await watch(gw).close(conn, d["group"])
    conn.push(encode("group.left", id=d["id"], group=d["group"]).decode())


async def post(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    """A message: the ad matcher runs here (pure), everything else on the group's slot."""
    w, g, s = watch(gw), keys.group(d["group"]), gw.s
    owner = await w.owner(d["group"])
    if owner is None:
        gw.error(conn, "group_unknown", d["id"])
        return
    # one round trip on the poster's slot: their badge, and the risk engine's ban re-checked
    # (a ban that landed before the gateway's cached view heard of it: the post is refused)
    uk = keys.user(conn.user)
    pipe = gw.redis.pipeline(transaction=False)
    pipe.hget(uk.like_levels, owner)
    pipe.hget(uk.profile, "risk_banned")
    level, banned = await pipe.execute()
    if banned == "1":
        gw.error(conn, "risk_banned", d["id"])
        return
    badge = int(level or 0)
    now = gw.clock.now_ms()
    day = days.today_key(now, s.timezone)
    reply = await w.p.scripts["group_post"](
        keys=[g.profile, g.members, g.mutes, g.removed, g.warnings, g.history,
              g.posted(conn.user, d["msg_id"]), g.flood, g.modlog, g.day(day), g.speakers(day),
              g.channel, g.dedupe],
        args=[conn.user, d["msg_id"], d["text"], orjson.dumps(d.get("mentions", [])),
              1 if d.get("all") else 0, 1 if ad_found(d["text"], s.group_ad_terms) else 0,
              badge, now, s.group_flood_messages, s.group_flood_window_ms, s.group_history_max,
              s.group_history_max_age_s * 1000, s.group_posted_ttl_s, s.publish_mode,
              s.group_log_max, s.group_day_ttl_s, s.group_strikes])
    if status(reply) is Status.REJECTED:
        if reply[1] == "group_removed":
            await w.close(conn, d["group"])
        gw.error(conn, str(reply[1]), d["id"])
        return
    if status(reply) is Status.APPLIED:
        POSTED.inc()
    mentioned = orjson.loads(reply[2]) or []
    if status(reply) is Status.APPLIED and mentioned:  # a retry does not mention again
        for user in mentioned:  # one call per member: each is their own slot
            uk = keys.user(user)
            try:
                await w.p.scripts["mention"](keys=[uk.profile, uk.events, uk.channel],
                                             args=[d["group"], reply[1], s.events_bound])
            except RedisError:  # the message is posted: its reply must still be the only one
                log.warning("mention of %s in %s not delivered", user, d["group"])
    conn.push(encode("group.posted", id=d["id"], group=d["group"],
                     message=orjson.loads(reply[1])).decode())


async def history(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    """Newest first; members only (a removed member reads nothing); only what is kept."""
    g = keys.group(d["group"])
    if await gw.redis.hget(g.members, conn.user) is None:
        gw.error(conn, "not_member", d["id"])
        return
    limit = d.get("limit", HISTORY_PAGE_DEFAULT)
    oldest = max(0, gw.clock.now_ms() - gw.s.group_history_max_age_s * 1000)
    top = "+"
    if "before" in d:  # a message id (the schema's \d also takes other scripts' digits)
        before = stream_id(d["before"])
        if before is None:
            conn.push(error_frame("bad_field", d["id"], "before must be a message id"))
            return
        if before == (0, 0):  # nothing is older than the smallest id (Redis refuses "(0-0")
            conn.push(encode("group.messages", id=d["id"], group=d["group"], messages=[],
                             next=None).decode())
            return
        top = "(" + d["before"]
    entries = await gw.redis.xrevrange(g.history, max=top, min=str(oldest), count=limit + 1)
    page = entries[:limit]
    messages = [{**orjson.loads(f["m"]), "id": eid} for eid, f in page]
    conn.push(encode("group.messages", id=d["id"], group=d["group"], messages=messages,
                     next=page[-1][0] if len(entries) > limit else None).decode())


async def manage(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    g, s = keys.group(d["group"]), gw.s
    if d["action"] == "mute" and "minutes" not in d:
        gw.error(conn, "missing_field", d["id"], "group.manage mute needs 'minutes'")
        return
    reply = await watch(gw).p.scripts["group_manage"](
        keys=[g.profile, g.members, g.mutes, g.removed, g.applications, g.modlog, g.channel],
        args=[conn.user, d["action"], d["user"], d.get("minutes", 0), gw.clock.now_ms(),
              s.publish_mode, s.group_log_max])
    if status(reply) is Status.REJECTED:
        gw.error(conn, str(reply[1]), d["id"])
        return
    conn.push(encode("group.managed", id=d["id"], group=d["group"], action=d["action"],
                     user=d["user"], role=str(reply[1]) or None).decode())


async def invite(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    g = keys.group(d["group"])
    code = secrets.token_urlsafe(9)  # [A-Za-z0-9_-]: a valid id
    expires = gw.clock.now_ms() + d["ttl_s"] * 1000
    reply = await watch(gw).p.scripts["group_invite"](
        keys=[g.profile, g.members, g.invites],
        args=[conn.user, code, d["uses"], expires, gw.clock.now_ms(), gw.s.group_invites_max])
    if status(reply) is Status.REJECTED:
        gw.error(conn, str(reply[1]), d["id"])
        return
    conn.push(encode("group.invited", id=d["id"], group=d["group"], code=code, uses=d["uses"],
                     expires_at_ms=expires).decode())


async def poll_create(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    g, s = keys.group(d["group"]), gw.s
    if len(d["options"]) < 2:
        gw.error(conn, "bad_field", d["id"], "a poll needs at least 2 options")
        return
    reply = await watch(gw).p.scripts["poll_create"](
        keys=[g.profile, g.members, g.poll(d["poll"]), g.polls, g.channel],
        args=[conn.user, d["poll"], d["question"], orjson.dumps(d["options"]),
              1 if d.get("multi") else 0, 1 if d.get("changeable") else 0, d["ends_at_ms"],
              gw.clock.now_ms(), s.publish_mode, s.polls_open_max])
    if status(reply) is Status.REJECTED:
        gw.error(conn, str(reply[1]), d["id"])
        return
    # the workers' poll tick closes it at its deadline
    await gw.redis.zadd(keys.POLLS_DUE, {f"{d['group']} {d['poll']}": d["ends_at_ms"]})
    conn.push(encode("group.poll", id=d["id"], group=d["group"],
                     poll=orjson.loads(reply[1])).decode())


async def vote(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    g, s = keys.group(d["group"]), gw.s
    now = gw.clock.now_ms()
    day = days.today_key(now, s.timezone)
    reply = await watch(gw).p.scripts["poll_vote"](
        keys=[g.profile, g.members, g.poll(d["poll"]), g.ballots(d["poll"]), g.voters(day),
              g.channel],
        args=[conn.user, d["poll"], orjson.dumps(d["choices"]), now, s.publish_mode,
              s.group_day_ttl_s, s.poll_throttle_ms])
    if status(reply) is Status.REJECTED:
        gw.error(conn, str(reply[1]), d["id"])
        return
    if reply[2] == "dirty":  # the workers' poll tick publishes the results held back
        await gw.redis.sadd(keys.POLLS_DIRTY, f"{d['group']} {d['poll']}")
    conn.push(encode("group.poll", id=d["id"], group=d["group"],
                     poll=orjson.loads(reply[1])).decode())


async def poll_get(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    g = keys.group(d["group"])
    if await gw.redis.hget(g.members, conn.user) is None:
        gw.error(conn, "not_member", d["id"])
        return
    h = await gw.redis.hgetall(g.poll(d["poll"]))
    if not h:
        gw.error(conn, "poll_unknown", d["id"])
        return
    conn.push(encode("group.poll", id=d["id"], group=d["group"], poll=poll_view(d["poll"], h)).decode())


async def envelope_send(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    if d["asset"] not in gw.s.note_assets:
        gw.error(conn, "envelope_asset", d["id"])
        return
    if d["shares"] > d["total"]:
        gw.error(conn, "bad_field", d["id"], "shares must be at most total (each share is 1 card or more)")
        return
    await gw.enqueue(conn, d["id"], envelopes.SEND, envelopes.send_payload(d))


async def envelope_grab(gw: Gateway, conn: Connection, d: dict[str, Any]) -> None:
    await gw.enqueue(conn, d["id"], envelopes.GRAB, envelopes.grab_payload(d))
