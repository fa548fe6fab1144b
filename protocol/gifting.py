"""Gifting messages of protocol v1: sending a gift, answering an offer, and the
events a gift or a grant produces. Declarations and the `gift.rejected` builder;
the codec is `protocol.schema`, the catalogue `protocol.messages`."""

from __future__ import annotations

from protocol.errors import REJECTIONS
from protocol.schema import (
    AMOUNT_MAX,
    ASSET_PATTERN,
    ID_PATTERN,
    TRANSFER_ID_PATTERN,
    Field,
    MessageType,
    encode,
    req_id,
    user_field,
)

_TID = Field("transfer_id", "str", "`<sender>:<gift_id>`, unique", pattern=TRANSFER_ID_PATTERN)
_GIFT_ID = Field("gift_id", "str", "sender-chosen gift id (idempotency key)", pattern=ID_PATTERN)
_OFFER_ID = Field("offer_id", "str", "`transfer_id` of the offer", pattern=TRANSFER_ID_PATTERN)
_ASSET = Field("asset", "str", "asset name, e.g. `note.do`", pattern=ASSET_PATTERN)
_COUNT = Field("count", "int", "cards the recipient gets", minimum=1, maximum=AMOUNT_MAX)
_ROOM = Field("room", "str", "live room the gift was sent in", False, ID_PATTERN)
_GROUP = Field("group", "str", "fan group the gift was sent in (both must be members; the group "
               "sees it)", False, ID_PATTERN)
_SEQ = Field("seq", "int", "per-user event sequence number", minimum=1)
CHANNEL_PATTERN = r"^[a-z0-9_]{1,24}$"
_CHANNEL = Field("channel", "str", "the partner app the gift was sent from (its users' tokens "
                 "are signed by it); absent: the platform's own", False, CHANNEL_PATTERN)
_BALANCE = Field("balance", "int", "your balance of `asset` after this event", minimum=0)
_QUOTA = Field("quota_left", "int", "gifts you may still send today", minimum=0)

CLIENT_TYPES: tuple[MessageType, ...] = (
    MessageType(
        "gift.send",
        "client",
        "Send `count` cards of `asset` to `to`. Replied by `gift.confirmed` or `gift.rejected`.",
        (req_id(), _GIFT_ID, user_field("to", "recipient user id"), _ASSET, _COUNT, _ROOM, _GROUP),
    ),
    MessageType(
        "gift.accept",
        "client",
        "Accept a pending offer. Replied by `gift.received` or `gift.rejected` (e.g. "
        "`offer_expired` after the timeout, `offer_declined` after a decline, "
        "`recipient_banned` when your account was banned since: the offer waits for a "
        "decline or its timeout; `accept_balance_full`, temporary: your balance would pass "
        "what an account may hold, the offer stays open).",
        (req_id(), _OFFER_ID),
    ),
    MessageType(
        "festival.frame",
        "client",
        "Redeem the festival's time-limited avatar frame: on a festival day (the platform's "
        "calendar), once you sent a gift that day. Replied by `festival.framed` (the same "
        "frame again when asked again that day), or `error` (`not_festival`, "
        "`frame_needs_gift`, `not_registered`).",
        (req_id(),),
    ),
    MessageType(
        "gift.decline",
        "client",
        "Decline a pending offer. Replied by `gift.voided` or `gift.rejected` (e.g. "
        "`offer_accepted` when it was accepted first).",
        (req_id(), _OFFER_ID),
    ),
)

SERVER_TYPES: tuple[MessageType, ...] = (
    MessageType(
        "gift.confirmed",
        "server",
        "To the sender: the gift settled (`delivery: instant`) or awaits the "
        "recipient's confirmation (`delivery: pending`), or, with `approval: true`, a third "
        "party's approval (the recipient's region's rule).",
        (
            req_id(False), _TID, _GIFT_ID, user_field("to", "recipient"), _ASSET, _COUNT,
            Field("cost", "int", "cards debited (festival pricing, free quota)", minimum=0),
            Field("free", "int", "cards paid by the newcomer promotion", minimum=0),
            Field("delivery", "str", "instant or pending", enum=("instant", "pending")),
            _BALANCE, _QUOTA, _ROOM, _CHANNEL,
            Field("tier", "int", "the live-stream boost tier the cost includes (a gift wish was "
                  "open in the room): the 1-based row of the room's wish tiers, not the "
                  "multiplier", False, minimum=1),
            Field("approval", "bool", "true (with `delivery: pending`): the gift waits for a "
                  "third party's approval (the recipient's region's rule), not for the "
                  "recipient; absent otherwise", False),
            _SEQ,
        ),
    ),
    MessageType(
        "gift.rejected",
        "server",
        "The gift (or offer action) was refused; nothing moved or all was refunded.",
        (
            req_id(False), _TID, _GIFT_ID,
            Field("code", "str", "stable rejection code"),
            Field("message", "str", "human-readable explanation"),
            Field("temporary", "bool", "true when trying again later may succeed: with a new "
                  "`gift_id` (the same one gets this answer again)"),
            Field("balance", "int", "sender balance after any refund", False, minimum=0),
            Field("asset", "str", "asset of the gift", False, ASSET_PATTERN),
            Field("seq", "int", "per-user event sequence number", False, minimum=1),
        ),
    ),
    MessageType(
        "gift.received",
        "server",
        "To the recipient: cards were credited (instantly, or on accepting an offer).",
        (req_id(False), _TID, _GIFT_ID, user_field("from", "sender"), _ASSET, _COUNT, _ROOM,
         _CHANNEL, _BALANCE, _SEQ),
    ),
    MessageType(
        "gift.offer",
        "server",
        "To a recipient who confirms gifts: accept or decline before `expires_at_ms`. Or, "
        "with `approval: true`, a gift held for a third party's approval (your region's "
        "rule): you are told, they decide.",
        (
            _TID, _GIFT_ID, user_field("from", "sender"), _ASSET, _COUNT, _ROOM, _CHANNEL,
            Field("expires_at_ms", "int", "when the offer times out, Unix ms", minimum=0),
            Field("approval", "bool", "true: your region needs a third party's approval of this "
                  "gift (a guardian's): it is theirs to approve or deny, not yours to accept "
                  "(`approval_pending`); absent: yours", False),
            Field("seq", "int", "sequence number of the event that offered it", minimum=1),
        ),
    ),
    MessageType(
        "gift.accepted",
        "server",
        "To the sender: the recipient accepted a pending gift.",
        (_TID, _GIFT_ID, user_field("to", "recipient"), _ASSET, _COUNT, _SEQ),
    ),
    MessageType(
        "gift.voided",
        "server",
        "To both sides: a pending gift was declined, denied by its approver or timed out; "
        "the sender got the cards and the daily quota back.",
        (
            req_id(False), _TID, _GIFT_ID, _ASSET, _COUNT,
            Field("reason", "str", "declined, denied (by the approver a region requires) or "
                  "timeout", enum=("declined", "denied", "timeout")),
            Field("balance", "int", "your balance of `asset` now", False, minimum=0),
            Field("quota_left", "int", "sender only: gifts left today", False, minimum=0),
            Field("to", "str", "sender only: the recipient", False, pattern=ID_PATTERN),
            _SEQ,
        ),
    ),
    MessageType(
        "festival.framed",
        "server",
        "Your festival avatar frame (the reply to `festival.frame`): the festival day it was "
        "redeemed on and until when it shows (the end of that day plus "
        "`GIFTWIRE_FESTIVAL_FRAME_DAYS`). The platform shows it on your avatar "
        "(`GET /admin/v1/users/{id}` `avatar_frame`).",
        (req_id(), Field("day", "str", "the festival day, `YYYY-MM-DD`",
                         pattern=r"^\d{4}-\d{2}-\d{2}$", max_length=10),
         Field("expires_at_ms", "int", "until when the frame shows", minimum=0)),
    ),
    MessageType(
        "balance.changed",
        "server",
        "A grant, revocation or reward changed your balance.",
        (
            Field("transfer_id", "str", "the transfer's id, unique: a grant's `$grant:<id>`, a "
                  "revocation's `$revoke:<id>`, a mentor reward's `$mentor:<gift>`, a task "
                  "reward's `$reward:<id>`, a set redemption's `$set:<id>`, an enterprise's "
                  "`$ent:<enterprise>:<issuance>` or `$eorder:<enterprise>:<order>`, ...",
                  pattern=TRANSFER_ID_PATTERN),
            _ASSET,
            Field("delta", "int", "signed change", minimum=-AMOUNT_MAX, maximum=AMOUNT_MAX),
            Field("reason", "str", "grant, revoke, mentor_reward, like_task (a day's like task "
                  "for a streamer done: a small card of their fan club, `small_card.<streamer>`), "
                  "like_streak (7 days in a row: a rare one, `small_card_rare.<streamer>`), "
                  "envelope_refund (what was left in your red envelope came back, or the group "
                  "refused it), task_reward (a task's note cards, drawn by the published odds), "
                  "set_redeem (a redemption burned `sets` cards of each set kind: one event per "
                  "kind, `delta: -sets`) and set_reward (what the sets earned), enterprise (an "
                  "enterprise account issued you cards: a brand's batch, an order's gift, a "
                  "fan-level tier), exchange (`popularity.exchange` burned these fan-club "
                  "cards for popularity points: `delta: -cards`, `transfer_id` "
                  "`$px:<exchange>`), purchase (`popularity.buy` spent this coin on "
                  "popularity points: `delta: -coin`, `transfer_id` `$pc:<buy>`)",
                  enum=("grant", "revoke", "mentor_reward", "like_task", "like_streak",
                        "envelope_refund", "task_reward", "set_redeem", "set_reward",
                        "enterprise", "exchange", "purchase")),
            _BALANCE, _SEQ,
        ),
    ),
)


def rejection(tid: str, gift_id: str, code: str, request_id: str | None = None) -> str:
    """A `gift.rejected` reply that no Lua step emitted (checked at the gateway, or a replay
    conflict): the code's message and temporary flag come from `protocol.errors`."""
    r = REJECTIONS[code]
    return encode("gift.rejected", id=request_id, transfer_id=tid, gift_id=gift_id, code=code,
                  message=r.message, temporary=r.temporary).decode()
