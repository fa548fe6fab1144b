"""Fan-group messages of protocol v1 (seed 003): membership and roles, chat with history,
polls, red envelopes and moderation. A group's live events arrive as `group.frame`s,
coalesced per tick and at most once like room frames (`from`/`to` show a gap;
`group.state` and `group.history` fill it); what is yours (an envelope share, a mention)
keeps the exactly-once per-user path."""

from __future__ import annotations

from protocol.schema import (
    AMOUNT_MAX,
    ASSET_PATTERN,
    FRAME_EVENTS_MAX,
    ID_PATTERN,
    INVISIBLE,
    SPACES,
    Field,
    MessageType,
    req_id,
    user_field,
)

TEXT_MAX = 500  # characters in a message
MENTIONS_MAX = 20  # members one message may mention
HISTORY_PAGE_MAX = 100  # messages in one `group.history` page
POLL_OPTIONS_MAX = 10
POLL_OPTION_MAX = 80  # characters in one option (and 200 in the question)
ENVELOPE_SHARES_MAX = 1000  # grabbers one red envelope may have
ROLES = ("owner", "admin", "member")
GROUP_TYPES = ("core", "cocreation", "perks")
ENTRY_RULES = ("iron_fan", "level", "invite", "approval")
NOT_BLANK = rf"^[\s\S]*[^{SPACES}{INVISIBLE}][\s\S]*$"  # some character that shows
OPTION_PATTERN = rf"^(?=[\s\S]*[^{SPACES}{INVISIBLE}])[\s\S]{{1,{POLL_OPTION_MAX}}}$"  # not blank, bounded
MANAGE_ACTIONS = ("promote", "demote", "remove", "mute", "unmute", "approve", "reject")

_GROUP = Field("group", "str", "group id", pattern=ID_PATTERN)
_ENVELOPE = Field("envelope", "str", "red envelope id (the sender's choice; one envelope per id)",
                  pattern=ID_PATTERN)
_POLL = Field("poll", "str", "poll id", pattern=ID_PATTERN)
_MESSAGE = Field("message", "object", "a message: `{id, from, role, badge, text, mentions?, all?, "
                 "at_ms}` (`id` is the group's message id, `badge` the sender's fan-club level "
                 "with the group's creator)")
_POLL_STATE = Field("poll", "object", "a poll: `{poll, question, options, multi, changeable, "
                    "ends_at_ms, closed, counts, voters}` (counts per option, in order)")
_SEQ = Field("seq", "int", "per-user event sequence number", minimum=1)

CLIENT_TYPES: tuple[MessageType, ...] = (
    MessageType("group.join", "client",
                "Become a member, by the group's entry rule: iron-fan tag, fan-club level, an "
                "invite code (`invite`), or an application an admin approves. Replied by "
                "`group.snapshot` (a member now, watching), `group.applied` (approval "
                "groups), or `error` (`group_full`, `not_eligible`, `invite_invalid`, "
                "`group_removed`, `group_unknown`, `not_registered`, `too_many_groups`; "
                "`not_member` if you were removed at once).",
                (req_id(), _GROUP, Field("invite", "str", "an invite code", False,
                                         pattern=ID_PATTERN))),
    MessageType("group.open", "client",
                "Watch a group you are a member of: its frames reach you until `group.close` "
                "or you disconnect. Replied by `group.snapshot`, or `error` (`not_member`: not a "
                "member, or no such group; `too_many_groups`).", (req_id(), _GROUP)),
    MessageType("group.close", "client", "Stop watching a group (you stay a member). Replied "
                "by `group.closed`.", (req_id(), _GROUP)),
    MessageType("group.leave", "client", "Leave a group (the owner cannot; leaving a group "
                "you are not in is answered the same), or withdraw your application to join "
                "an approval group. Replied by `group.left`, or `error` "
                "(`owner_cannot_leave`, `group_unknown`).", (req_id(), _GROUP)),
    MessageType("group.state", "client", "The group now (after a gap). Replied by "
                "`group.snapshot`, or `error` `not_member` (not a member, or no such "
                "group).", (req_id(), _GROUP)),
    MessageType("group.post", "client",
                "Post a text message; `msg_id` makes it idempotent (a retry shows once). Owner "
                "and admins may `all` (@all); `mentions` reach those members even when they "
                "do not watch the group. Replied by `group.posted`; an ad or flooding is "
                "refused with `error` `group_violation` (the first a warning) or "
                "`group_removed` (the second: you are out); other `error`s: "
                "`group_removed` (removed before), `group_muted`, `not_group_admin` (`all` "
                "by a member), `not_member`, `group_unknown`, `risk_banned`.",
                (req_id(), _GROUP, Field("msg_id", "str", "your id for this message",
                                         pattern=ID_PATTERN),
                 Field("text", "str", f"the text, up to {TEXT_MAX} characters, not blank",
                       pattern=NOT_BLANK, max_length=TEXT_MAX),
                 Field("mentions", "strs", "members to mention", False, pattern=ID_PATTERN,
                       max_length=MENTIONS_MAX),
                 Field("all", "bool", "@all (owner and admins)", False))),
    MessageType("group.history", "client",
                "Messages newest first, a page at a time: `before` is the `next` of the "
                "previous page. Replied by `group.messages`, or `error` `not_member`.",
                (req_id(), _GROUP,
                 Field("before", "str", "continue below this message id", False,
                       pattern=r"^\d{1,20}-\d{1,20}$", max_length=41),
                 Field("limit", "int", "messages in the page", False, minimum=1,
                       maximum=HISTORY_PAGE_MAX))),
    MessageType("group.manage", "client",
                "Owner and admins act on a member: `promote`/`demote` an admin (owner only), "
                "`remove`, `mute` (for `minutes`), `unmute`, `approve`/`reject` an "
                "application (`approve` also readmits a removed member, whatever the entry "
                "rule). Each that changes something is in the group's moderation log (a "
                "promote of an admin, a demote of a member or an unmute of one not muted is "
                "answered and changes nothing). Replied by "
                "`group.managed`, or `error` (`not_group_admin`: not yours to do, or the "
                "user is the owner or, for an admin, another admin; `not_member`: the user is "
                "not a member, or has no application (nor, for `approve`, was removed); "
                "`group_full`: approving into a full group, the application stays; "
                "`missing_field`: a mute without `minutes`; `group_unknown`).",
                (req_id(), _GROUP, Field("action", "str", "what to do", enum=MANAGE_ACTIONS),
                 Field("user", "str", "the member (or applicant)", pattern=ID_PATTERN),
                 Field("minutes", "int", "how long a mute lasts", False, minimum=1,
                       maximum=60 * 24 * 30))),
    MessageType("group.invite", "client",
                "Owner and admins make an invite code: `uses` joins within `ttl_s`. Replied by "
                "`group.invited`, or `error` (`not_group_admin`, `too_many_invites`, "
                "`group_unknown`).",
                (req_id(), _GROUP, Field("uses", "int", "joins it allows", minimum=1, maximum=1000),
                 Field("ttl_s", "int", "lifetime", minimum=60, maximum=30 * 86400))),
    MessageType("group.poll.create", "client",
                "Owner and admins open a poll (the same poll id, creator and question "
                "again answers the poll as it is). Replied by `group.poll`, or `error` "
                "(`not_group_admin`, `poll_id_conflict`, `poll_closed`: the deadline is "
                "past, `too_many_polls`, `bad_field`: fewer than 2 options, "
                "`group_unknown`).",
                (req_id(), _GROUP, _POLL,
                 Field("question", "str", "up to 200 characters, not blank", pattern=NOT_BLANK,
                       max_length=200),
                 Field("options", "strs", f"2 to {POLL_OPTIONS_MAX} options, each up to "
                       f"{POLL_OPTION_MAX} characters", pattern=OPTION_PATTERN,
                       max_length=POLL_OPTIONS_MAX),
                 Field("multi", "bool", "several choices per ballot", False),
                 Field("changeable", "bool", "a ballot may be changed before the deadline", False),
                 Field("ends_at_ms", "int", "the deadline, Unix ms", minimum=0,
                       maximum=AMOUNT_MAX * 10))),
    MessageType("group.vote", "client",
                "Cast (or change, if the poll allows) your ballot: option indexes from 0 "
                "(the same ballot again, in any order, is answered as a success and changes "
                "nothing). Replied by `group.poll`, or `error` (`poll_closed`, `already_voted`: "
                "another ballot where the poll does not let it change, "
                "`bad_choice`, `poll_unknown`, `not_member`, `group_unknown`).",
                (req_id(), _GROUP, _POLL, Field("choices", "ints", "chosen options", minimum=0,
                                                maximum=POLL_OPTIONS_MAX - 1,
                                                max_length=POLL_OPTIONS_MAX))),
    MessageType("group.poll.get", "client", "A poll's results, open or closed. Replied by "
                "`group.poll`, or `error` (`not_member`, `poll_unknown`).",
                (req_id(), _GROUP, _POLL)),
    MessageType("envelope.send", "client",
                "Put `total` cards of `asset` into a red envelope for `shares` grabbers in a "
                "group (1 ≤ shares ≤ total). Settled like a gift: replied by `envelope.sent` "
                "(an event of yours), or `error` (`envelope_insufficient`, `envelope_asset`, "
                "`not_member`, `envelope_id_conflict`, `group_unknown`, `too_many_envelopes`, "
                "`bad_field`: more shares than cards, `not_registered`, `account_banned`, `risk_restricted`, "
                "`risk_frozen`, `risk_banned`, `settlement_failed`).",
                (req_id(), _GROUP, _ENVELOPE, Field("asset", "str", "a note card kind",
                                                    pattern=ASSET_PATTERN),
                 Field("total", "int", "cards in the envelope", minimum=1, maximum=AMOUNT_MAX),
                 Field("shares", "int", "how many members can grab a share", minimum=1,
                       maximum=ENVELOPE_SHARES_MAX))),
    MessageType("envelope.grab", "client",
                "Grab a share of a red envelope (once per member). Replied by "
                "`envelope.grabbed` (an event of yours), or `error` (`envelope_empty`, "
                "`envelope_expired`, `envelope_unknown`, `not_member`, `account_banned`, `risk_frozen`, "
                "`risk_banned`, `balance_full`: the share would take your balance past the "
                "bound; it stays yours, and grabbing again credits it once there is room).",
                (req_id(), _GROUP, Field("envelope", "str", "the envelope's id as the group "
                                         "shows it, `<sender>:<envelope id>`",
                                         pattern=r"^[A-Za-z0-9_-]{1,64}:[A-Za-z0-9_-]{1,64}$",
                                         max_length=129))),
)

SERVER_TYPES: tuple[MessageType, ...] = (
    MessageType("group.snapshot", "server",
                "The group: its profile, your role, how many members it has, your mute, "
                "open polls and envelopes, and `gseq` (frames continue from it).",
                (req_id(False), _GROUP, Field("owner", "str", "the creator", pattern=ID_PATTERN),
                 Field("group_type", "str", "core fans, co-creation or perks", enum=GROUP_TYPES),
                 Field("rule", "str", "how members get in", enum=ENTRY_RULES),
                 Field("capacity", "int", "members at most", minimum=1),
                 Field("members", "int", "members now", minimum=0),
                 Field("role", "str", "your role", enum=ROLES),
                 Field("gseq", "int", "the group's latest event number", minimum=0),
                 Field("muted_until_ms", "int", "your mute ends then", False, minimum=0),
                 Field("envelopes", "objects", "open red envelopes: `{envelope, from, asset, "
                       "total, shares, left, left_shares, expires_at_ms, state}` (state "
                       "`open`)", max_length=100),
                 Field("polls", "objects", "open polls (see `group.poll`)", max_length=100))),
    MessageType("group.applied", "server", "Reply to `group.join` of an approval group: your "
                "application waits for an admin.", (req_id(), _GROUP)),
    MessageType("group.closed", "server", "Reply to `group.close`.", (req_id(), _GROUP)),
    MessageType("group.left", "server", "Reply to `group.leave`.", (req_id(), _GROUP)),
    MessageType("group.posted", "server", "Reply to `group.post`: the message as the group "
                "shows it (the same on a retry).", (req_id(), _GROUP, _MESSAGE)),
    MessageType("group.messages", "server",
                "Reply to `group.history`: newest first; `next` continues below (absent at "
                "the end of what is kept).",
                (req_id(), _GROUP, Field("messages", "objects", "messages, newest first",
                                         max_length=HISTORY_PAGE_MAX),
                 Field("next", "str", "`before` for the next page", False, max_length=41))),
    MessageType("group.managed", "server", "Reply to `group.manage`: what was done.",
                (req_id(), _GROUP, Field("action", "str", "the action", enum=MANAGE_ACTIONS),
                 user_field("user", "the member"),
                 Field("role", "str", "their role now (absent when out)", False, enum=ROLES))),
    MessageType("group.invited", "server", "Reply to `group.invite`.",
                (req_id(), _GROUP, Field("code", "str", "the invite code", pattern=ID_PATTERN),
                 Field("uses", "int", "joins it allows", minimum=1),
                 Field("expires_at_ms", "int", "when it stops working", minimum=0))),
    MessageType("group.poll", "server", "A poll and its results (reply to poll requests).",
                (req_id(False), _GROUP, _POLL_STATE)),
    MessageType("group.mention", "server",
                "You were mentioned in a group (an event of yours: exactly once, resumable, "
                "whether or not you watch the group).",
                (_GROUP, _MESSAGE, _SEQ)),
    MessageType("envelope.sent", "server",
                "Your red envelope is open in the group (an event of yours; the reply to "
                "`envelope.send`).",
                (req_id(False), _GROUP, Field("envelope", "str", "its id in the group, "
                                              "`<you>:<envelope id>`", max_length=129),
                 Field("asset", "str", "the cards", pattern=ASSET_PATTERN),
                 Field("total", "int", "cards in it", minimum=1),
                 Field("shares", "int", "grabbers it allows", minimum=1),
                 Field("balance", "int", "your balance of the asset now", minimum=0),
                 Field("expires_at_ms", "int", "when what is left returns to you", minimum=0),
                 _SEQ)),
    MessageType("envelope.grabbed", "server",
                "Your share of a red envelope (an event of yours; the reply to "
                "`envelope.grab`, the same on a retry).",
                (req_id(False), _GROUP, Field("envelope", "str", "`<sender>:<envelope id>`",
                                              max_length=129),
                 Field("asset", "str", "the cards", pattern=ASSET_PATTERN),
                 Field("share", "int", "cards you got", minimum=1),
                 Field("balance", "int", "your balance of the asset now", minimum=0),
                 _SEQ)),
    MessageType(
        "group.frame", "server",
        "What happened in a group during one tick, encoded once for every member watching: "
        "events `gseq` `from`..`to`. Kinds: `message` {message}, `join` {user, role}, "
        "`leave` {user}, `removed` {user, reason}, `muted` {user, until_ms}, `role` {user, "
        "role}, `poll` {poll} (results, at most once a second per poll, and at its close), "
        "`envelope` {envelope, from, asset, total, shares, expires_at_ms}, `grab` {envelope, "
        "user, share, left, left_shares}, `envelope_done` {envelope, reason: grabbed | "
        "expired, refunded}, `gift` {transfer_id, from, to, asset, count}.",
        (_GROUP, Field("from", "int", "first event number in this frame", minimum=1),
         Field("to", "int", "last event number in this frame", minimum=1),
         Field("events", "objects", "the events, oldest first", max_length=FRAME_EVENTS_MAX)),
    ),
)
