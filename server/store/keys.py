"""Every Redis key giftwire uses is built here, and only here.

All keys of one owner share the hash tag `{u:<id>}` so each Lua call touches
one Redis Cluster slot. Scripts receive keys through KEYS, never build them.

Per user (`gw:{u:<id>}:…`):
  p   profile hash: registered_at_ms, real_name, vip, banned, confirm, mentor,
      free_used, mentor_rewarded, seq (last event number)
  b   balances hash: asset → amount (never negative)
  s   system accounts of this slot: `mint|burn|promo|escrow:<asset>` → amount
  x   transfer records: transfer id → JSON (idempotency + outcome)
  f   follows: followee → since_ms
  bl  users this user blocked;  bb  users who blocked this user
  d:<yyyymmdd>  daily counters: `sent`, `to:<recipient>`, `refused`; refusals past the day's
                recorded ones (`r:<transfer id>`: their records, kept as long as the counters)
  o   pending offers to this user: transfer id → JSON
  lk  likes given, creator → total;  lv  fan-club level, creator → level
  lr  recent like batches (sorted by ms), for the like speed rule
  lt  like tasks, `<creator>:d|n|done|streak`: today's day and likes, last day done, streak
  if  creators this fan is an iron fan of (set by the platform; a group entry rule)
  ra  the risk engine's recent action times (ms, newest first, bounded)
  pl  popularity lots: lot id → expiry ms;  pv  lot id → points left in it
  ps  popularity state: signin day and streak, frozen_at, frozen_total (ms of lifted
      freezes), violation_at, uses:<day>, posts:<cycle>, category, followers (the platform's
      figures);  pu  card uses: use id → JSON
  ent, ento  an enterprise account's figures and ROI, and its counted orders
  erased  when the user's data was erased (the id is never registered again)
  l   ledger stream (one entry per balance change)
  e   event stream (per-user, bounded)
  c   pub/sub channel of the user's live events
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

PREFIX = "gw"


def user_tag(user: str) -> str:
    return f"{PREFIX}:{{u:{user}}}"


@dataclass(frozen=True)
class UserKeys:
    user: str

    @property
    def tag(self) -> str:
        return user_tag(self.user)

    @property
    def profile(self) -> str:
        return f"{self.tag}:p"

    @property
    def account(self) -> list[str]:
        """The keys of a step that moves the user's cards through the ledger and tells them
        (grants, red envelopes, popularity): profile, balances, system accounts, transfer
        records, ledger, event log, channel — in this order, as the scripts name them."""
        return [self.profile, self.balances, self.system, self.transfers, self.ledger,
                self.events, self.channel]

    @property
    def balances(self) -> str:
        return f"{self.tag}:b"

    @property
    def system(self) -> str:
        return f"{self.tag}:s"

    @property
    def transfers(self) -> str:
        return f"{self.tag}:x"

    @property
    def follows(self) -> str:
        return f"{self.tag}:f"

    @property
    def blocks(self) -> str:
        return f"{self.tag}:bl"

    @property
    def blocked_by(self) -> str:
        return f"{self.tag}:bb"

    def day(self, day_key: str) -> str:
        return f"{self.tag}:d:{day_key}"

    @property
    def offers(self) -> str:
        return f"{self.tag}:o"

    @property
    def like_totals(self) -> str:
        return f"{self.tag}:lk"

    @property
    def like_levels(self) -> str:
        return f"{self.tag}:lv"

    @property
    def like_recent(self) -> str:
        return f"{self.tag}:lr"

    @property
    def like_tasks(self) -> str:
        return f"{self.tag}:lt"

    @property
    def enterprise(self) -> str:
        """An enterprise account's figures and stats: brand_verified, fans, shop_window,
        group_active (the platform's), orders, gmv_fen, cards (its orders' gifts)."""
        return f"{self.tag}:ent"

    @property
    def enterprise_orders(self) -> str:
        """Its orders that counted: order → `<buyer>|<fen>|<cards>` (each counted once)."""
        return f"{self.tag}:ento"

    @property
    def erased(self) -> str:
        """Set when the user's data was erased (GDPR): the ms it was; the id stays taken."""
        return f"{self.tag}:erased"

    @property
    def iron_fan_of(self) -> str:
        return f"{self.tag}:if"

    @property
    def risk_actions(self) -> str:
        return f"{self.tag}:ra"

    @property
    def risk_judged(self) -> str:
        """The actions the automation rule judges for regularity (not likes), newest first."""
        return f"{self.tag}:rj"

    def grab_check(self, group: str, envelope: str, route: str) -> str:
        """A red-envelope grab request (its route) whose grabber passed the check (not banned
        or frozen; expires with the envelope)."""
        return f"{self.tag}:rg:{group}:{envelope}:{route}"

    @property
    def lots(self) -> str:
        return f"{self.tag}:pl"

    @property
    def lot_points(self) -> str:
        return f"{self.tag}:pv"

    @property
    def popularity(self) -> str:
        return f"{self.tag}:ps"

    @property
    def card_uses(self) -> str:
        return f"{self.tag}:pu"

    @property
    def ledger(self) -> str:
        return f"{self.tag}:l"

    @property
    def events(self) -> str:
        return f"{self.tag}:e"

    @property
    def channel(self) -> str:
        return f"{self.tag}:c"


def user(user_id: str) -> UserKeys:
    return UserKeys(user_id)


def room_tag(room: str) -> str:
    return f"{PREFIX}:{{r:{room}}}"


@dataclass(frozen=True)
class RoomKeys:
    """A live room's slot `{r:<room>}`:
    p      profile hash: streamer, live (0|1), session (`<room>:<n>`), sessions (n), rseq
    aud    hash: gateway id → viewers watching there (its share)
    audx   sorted set: gateway id → when its share expires (ms); a dead gateway's lapses
    board  sorted set: the live session's contribution board, user → cards paid
    x      hash: transfer id → `<session>|<sender>|<cost>`, the gifts recorded in this room
    q      hash: transfer id → `num/den/tier/audience`, the price quoted for a gift in it
    lb     hash: gateway id → the last like batch of that gateway added to the room's total
    c      the room's pub/sub channel (at-most-once room events)
    """

    room: str

    @property
    def tag(self) -> str:
        return room_tag(self.room)

    @property
    def profile(self) -> str:
        return f"{self.tag}:p"

    @property
    def audience(self) -> str:
        return f"{self.tag}:aud"

    @property
    def audience_expiry(self) -> str:
        return f"{self.tag}:audx"

    @property
    def board(self) -> str:
        return f"{self.tag}:board"

    @property
    def recorded(self) -> str:
        return f"{self.tag}:x"

    @property
    def quotes(self) -> str:
        """Quotes stored before this release (transfer id → price): read, no longer written."""
        return f"{self.tag}:q"

    @property
    def like_batches(self) -> str:
        return f"{self.tag}:lb"

    @property
    def channel(self) -> str:
        return f"{self.tag}:c"


def room(room_id: str) -> RoomKeys:
    return RoomKeys(room_id)


def group_tag(group: str) -> str:
    return f"{PREFIX}:{{g:{group}}}"


@dataclass(frozen=True)
class GroupKeys:
    """A fan group's slot `{g:<group>}`:
    p      profile: owner, type, rule, capacity, min_level, members, gseq, created_ms
    m      members: user → role (owner | admin | member)
    mu     mutes: user → muted until ms;  w  warnings: user → violations so far
    rm     removed users (they may not read, post or join again unless approved)
    ap     applications: user → applied ms (approval groups)
    inv    invite codes: code → `<uses left>:<expires ms>`
    h      history stream of messages (bounded by count and age);  dd  `<user>:<msg_id>`
           → message id (a retried post shows once);  fl  flood windows: user → `<ms>:<n>`
    log    moderation log stream (bounded)
    poll:<id> / pv:<id>  a poll / its ballots (voter → chosen options)
    env:<id> / eg:<id>   a red envelope / its grabs (grabber → share)
    d:<day> / ds:<day> / dv:<day>  the day's counters / speakers / voters (exact)
    x      gifts recorded in the group (transfer id → 1), so a retry shows once
    gc     in-chat gifts checked (transfer id → ok | no): a re-run gets the first answer
    de:<day>  red envelopes opened that day (their claim rate)
    c      the group's pub/sub channel (at-most-once group events)
    """

    group: str

    @property
    def tag(self) -> str:
        return group_tag(self.group)

    @property
    def profile(self) -> str:
        return f"{self.tag}:p"

    @property
    def members(self) -> str:
        return f"{self.tag}:m"

    @property
    def mutes(self) -> str:
        return f"{self.tag}:mu"

    @property
    def warnings(self) -> str:
        return f"{self.tag}:w"

    @property
    def removed(self) -> str:
        return f"{self.tag}:rm"

    @property
    def applications(self) -> str:
        return f"{self.tag}:ap"

    @property
    def invites(self) -> str:
        return f"{self.tag}:inv"

    @property
    def history(self) -> str:
        return f"{self.tag}:h"

    @property
    def dedupe(self) -> str:
        """Posts answered before this release (`<sender>:<msg_id>` → answer): read, no longer
        written (a field's expiry was the whole hash's, refreshed by every post)."""
        return f"{self.tag}:dd"

    def posted(self, sender: str, msg_id: str) -> str:
        """A post's answer, for its retries, kept `GIFTWIRE_GROUP_POSTED_TTL_S` on its own."""
        return f"{self.tag}:pp:{sender}:{msg_id}"

    @property
    def flood(self) -> str:
        return f"{self.tag}:fl"

    @property
    def modlog(self) -> str:
        return f"{self.tag}:log"

    def poll(self, poll_id: str) -> str:
        return f"{self.tag}:poll:{poll_id}"

    def ballots(self, poll_id: str) -> str:
        return f"{self.tag}:pv:{poll_id}"

    @property
    def polls(self) -> str:
        """Open polls: poll id → deadline ms."""
        return f"{self.tag}:polls"

    def envelope(self, envelope: str) -> str:
        return f"{self.tag}:env:{envelope}"

    def grabs(self, envelope: str) -> str:
        return f"{self.tag}:eg:{envelope}"

    @property
    def envelopes(self) -> str:
        """Open red envelopes: envelope id → expiry ms."""
        return f"{self.tag}:envs"

    def day(self, day_key: str) -> str:
        return f"{self.tag}:d:{day_key}"

    def speakers(self, day_key: str) -> str:
        return f"{self.tag}:ds:{day_key}"

    def voters(self, day_key: str) -> str:
        return f"{self.tag}:dv:{day_key}"

    @property
    def recorded(self) -> str:
        return f"{self.tag}:x"

    @property
    def gift_checks(self) -> str:
        """In-chat gifts checked before this release (transfer id → answer): read, no longer
        written (a field's expiry was the whole hash's, refreshed by every gift)."""
        return f"{self.tag}:gc"

    def gift_check(self, transfer_id: str) -> str:
        """An in-chat gift's membership check (`ok`, or `no:<route>` for the request refused),
        kept `GIFTWIRE_ROOM_RECORDED_TTL_S` on its own."""
        return f"{self.tag}:gc:{transfer_id}"

    def day_envelopes(self, day_key: str) -> str:
        return f"{self.tag}:de:{day_key}"

    @property
    def channel(self) -> str:
        return f"{self.tag}:c"


def group(group_id: str) -> GroupKeys:
    return GroupKeys(group_id)


def content_owner(content_hash: str) -> str:
    """The account that first boosted content with this hash (its own slot `{h:<hash>}`)."""
    return f"{PREFIX}:{{h:{content_hash}}}:o"


def content_owner_uses(content_hash: str) -> str:
    """The owner's card uses of this hash (same slot): the hash is given back when the last
    one is cancelled before it boosted."""
    return f"{PREFIX}:{{h:{content_hash}}}:u"


def content_boosts(content: str) -> str:
    """A content's card uses, `<owner>:<use>` → `<start ms>:<end ms>` (slot `{c:<content>}`)."""
    return f"{PREFIX}:{{c:{content}}}:b"


def purchase_order(order: str) -> str:
    """A payment's order, platform-wide: `user`, `fen`, `points` as first reported (slot
    `{po:<order>}`); the order's one record, so it pays one user one amount once."""
    return f"{PREFIX}:{{po:{order}}}:o"


def device_accounts(device: str) -> str:
    """A device's accounts in the risk window: account → first seen ms (slot `{d:<device>}`)."""
    return f"{PREFIX}:{{d:{device}}}:a"


def device_ban(device: str) -> str:
    """Set while the device is blacklisted: the case id (slot `{d:<device>}`)."""
    return f"{PREFIX}:{{d:{device}}}:ban"


def cluster_gifts(network: str, recipient: str) -> str:
    """Accounts of one /24 (/64) gifting `recipient`: account → last gift ms (slot `{n:<net>}`)."""
    return f"{PREFIX}:{{n:{network}}}:r:{recipient}"


# the note economy's stock, one owner (`{notes}`): a draw and the stock it takes are one call
NOTE_STOCK = f"{PREFIX}:{{notes}}:stock"  # hash: `<asset>` → cards left, `issued:<asset>` → drawn
NOTE_REFILLS = f"{PREFIX}:{{notes}}:refills"  # hash: refill id → `<asset>|<amount>|<stock after>`
NOTE_TAKEN = f"{PREFIX}:{{notes}}:taken"  # hash: issuance id → `<asset>|<cards>` it took
# draws not yet settled (credited, or returned to the stock): `<user> <reward>` → the draw's
# JSON, and the same fields by the ms they were drawn (the sweep returns the forgotten ones)
NOTE_PENDING = f"{PREFIX}:{{notes}}:pending"
NOTE_PENDING_AT = f"{PREFIX}:{{notes}}:pending:at"


def partner_campaign(channel: str) -> str:
    """A partner's joint campaign: user → ms they joined (its own slot `{pc:<channel>}`)."""
    return f"{PREFIX}:{{pc:{channel}}}:m"


def issuance(enterprise: str, issuance_id: str) -> str:
    """A batch issuance of an enterprise: what it issues, once (its own slot)."""
    return f"{PREFIX}:{{ei:{enterprise}:{issuance_id}}}:i"


def issuance_plan(enterprise: str, issuance_id: str) -> str:
    """An issuance's plan, fixed by its first call: user → cards (same slot)."""
    return f"{PREFIX}:{{ei:{enterprise}:{issuance_id}}}:p"


def issuance_recipients(enterprise: str, issuance_id: str) -> str:
    """The users an issuance credited (same slot)."""
    return f"{PREFIX}:{{ei:{enterprise}:{issuance_id}}}:r"


RISK_CASES = f"{PREFIX}:{{risk}}:cases"  # zset: case id → opened ms (newest last)


def risk_case(case_id: str) -> str:
    return f"{PREFIX}:{{risk}}:case:{case_id}"


def risk_case_resolving(case_id: str) -> str:
    """Held (briefly) by the one appeal resolving a case: two at once resolve it once."""
    return f"{PREFIX}:{{risk}}:resolving:{case_id}"


def risk_stream(partition: int) -> str:
    """Signals for the risk engine (the like speed rule reports here), partitioned by user."""
    return f"{PREFIX}:{{risk:{partition}}}:s"


def settle_stream(partition: int) -> str:
    """Settlement stream partition; each has its own tag, so partitions spread over slots."""
    return f"{PREFIX}:{{settle:{partition}}}:s"


def dead_letters(partition: int) -> str:
    """Entries of a partition that failed `settle_attempts_max` times, with their error;
    beside the partition's stream, in its slot."""
    return f"{PREFIX}:{{settle:{partition}}}:dead"


def settle_failures(partition: int) -> str:
    """Hash: entry id → failed attempts so far (cleared when the entry leaves the stream)."""
    return f"{PREFIX}:{{settle:{partition}}}:fail"


def dead_letter_claim(partition: int, dead_id: str) -> str:
    """String: an operator's retry or void of one dead letter is running (expires)."""
    return f"{PREFIX}:{{settle:{partition}}}:deadclaim:{dead_id}"


def settle_dead_marks(partition: int) -> str:
    """Hash: a request's key (`<kind>:<user>:<digest of its fields>`) → the dead letter it is
    (a resend is answered from it, not run); cleared on retry, void or trim."""
    return f"{PREFIX}:{{settle:{partition}}}:deadmarks"


def settle_owner(partition: int) -> str:
    """String: the worker holding the partition's lease (expires unless renewed)."""
    return f"{PREFIX}:{{settle:{partition}}}:owner"


SETTLE_GROUP = "settlers"
SETTLE_WORKERS = f"{PREFIX}:{{settlers}}:live"  # zset: worker → ms its beat lapses
WISHES_DUE = f"{PREFIX}:{{rooms}}:wishes"  # zset: room → when its gift wish ends (ms)
POLLS_DUE = f"{PREFIX}:{{groups}}:polls"  # zset: `<group> <poll>` → its deadline (ms)
POLLS_DIRTY = f"{PREFIX}:{{groups}}:dirty"  # set: `<group> <poll>` with results held back
ENVELOPES_DUE = f"{PREFIX}:{{groups}}:envs"  # zset: `<group> <envelope>` → its expiry (ms)
USES_DUE = f"{PREFIX}:{{popularity}}:due"  # zset: `<user> <use>` → its next start or end (ms)
# zset: user → when the expiry sweep looks at their lots next (ms); written outside Lua
# and by the sweep's own script on this slot, never by a user's script
LOTS_DUE = f"{PREFIX}:{{popularity}}:lots"
SCAN_LOTS = f"{PREFIX}:{{u:*}}:pv"
OFFERS_DUE = f"{PREFIX}:{{offers}}:due"  # zset: `<recipient> <transfer id>` → expiry ms
FESTIVALS = f"{PREFIX}:{{cfg}}:festivals"  # set of yyyymmdd
CLOCK_OFFSET = f"{PREFIX}:{{cfg}}:clock"  # ms the test clock is ahead (GIFTWIRE_TEST_CLOCK only)
FESTIVALS_NEXT = f"{PREFIX}:{{cfg}}:festivals:next"  # a new calendar, before it is swapped in
# Payloads on a room's channel: `V<rseq> <json>`, one room event (at most once).
ROOM_EVENT_PREFIX = "V"
# Payloads on a user's channel (parsed by the gateway's hub):
#   `E<seq> <route> <json>` an event from a Lua step, for every connection of the user;
#                           when `route` is `<conn>/<n>` (not `-`) it is also the reply to
#                           request number n of that connection
#   `R<route> <json>`       a reply to one request only (a replay, a conflict): never an event
EVENT_PREFIX = "E"
REPLY_PREFIX = "R"
# `K<json>` on a user's channel: the user's risk state changed (the gateways' cached view)
RISK_STATE_PREFIX = "K"
# `X<close reason>` on a user's channel: every gateway closes that user's connections with
# it (an erased account's; the reason is one of protocol.errors' close codes)
CLOSE_PREFIX = "X"
NO_ROUTE = "-"


def route(conn_id: str, request_no: int) -> str:
    """Where a request's reply goes: `<conn>/<n>` (conn ids hold no `/` or space)."""
    return f"{conn_id}/{request_no}"

# SCAN patterns the auditor walks.
SCAN_BALANCES = f"{PREFIX}:{{u:*}}:b"
SCAN_SYSTEM = f"{PREFIX}:{{u:*}}:s"
SCAN_TRANSFERS = f"{PREFIX}:{{u:*}}:x"
SCAN_DEAD_LETTERS = f"{PREFIX}:{{settle:*}}:dead"
SCAN_ROOM_PROFILES = f"{PREFIX}:{{r:*}}:p"
SCAN_GROUP_ENVELOPES = f"{PREFIX}:{{g:*}}:env:*"
SCAN_ERASED = f"{PREFIX}:{{u:*}}:erased"


def room_of(key: str) -> str:
    """The room id inside a room key (`gw:{r:room1}:p` → `room1`)."""
    start = key.index("{r:") + 3
    return key[start : key.index("}", start)]


def owner_of(key: str) -> str:
    """The user id inside a per-user key (`gw:{u:alice}:b` → `alice`)."""
    start = key.index("{u:") + 3
    return key[start : key.index("}", start)]


def gateway_channel(gateway_id: str) -> str:
    return f"{PREFIX}:{{gw:{gateway_id}}}:c"


def partition_of(user: str, partitions: int) -> int:
    """A user's partition (settlement and risk streams): one user's requests stay in order."""
    return zlib.crc32(user.encode()) % partitions


def settle_stream_for(user: str, partitions: int) -> str:
    """The partition of the acting user: one user's requests stay in order."""
    return settle_stream(partition_of(user, partitions))
