"""Stable error codes and WebSocket close codes of protocol v1, and the error codes
of the admin HTTP API.

Error replies (`{"type": "error", "code": ..., "message": ..., "temporary": ...}`)
keep the connection open. Close codes end it; each says whether a client should
reconnect. Admin errors are `{"error": {"code": ..., "message": ...}}` with the
code's HTTP status. Codes are part of the protocol: never renumber or reuse one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    code: str
    message: str
    temporary: bool = False


def _codes(*items: ErrorCode) -> dict[str, ErrorCode]:
    return {item.code: item for item in items}


# Replies to a malformed or refused request; the connection stays open.
ERRORS = _codes(
    ErrorCode("bad_json", "frame is not a JSON object"),
    ErrorCode("binary_frame", "binary frames are not accepted; send JSON text"),
    ErrorCode("frame_too_large", "frame exceeds the maximum frame size"),
    ErrorCode("unknown_type", "unknown message type"),
    ErrorCode("missing_field", "a required field is missing"),
    ErrorCode("unknown_field", "the message has a field its type does not declare"),
    ErrorCode("bad_field", "a field has the wrong type or is out of range"),
    ErrorCode("already_authenticated", "this connection is already authenticated"),
    ErrorCode("too_many_pending", "too many requests awaiting a reply", temporary=True),
    ErrorCode("rate_limited", "too many requests on this connection; slow down", temporary=True),
    ErrorCode("overloaded", "the settlement queue is full; retry later", temporary=True),
    ErrorCode("unavailable", "storage is unavailable; retry later", temporary=True),
    ErrorCode("internal", "internal error", temporary=True),
    ErrorCode("not_streamer", "only the room's streamer can do that (its live session, its wish)"),
    ErrorCode("room_unknown", "no such room"),
    ErrorCode("not_live", "the room has no live session"),
    ErrorCode("too_many_rooms", "this connection watches the most rooms it may; leave one first"),
    ErrorCode("not_registered", "your account is not registered with giftwire"),
    ErrorCode("timeout", "no answer came in time; send the request again (the same gift id is "
              "safe) to learn its outcome", temporary=True),
    ErrorCode("group_unknown", "no such group"),
    ErrorCode("group_full", "the group has as many members as it may"),
    ErrorCode("not_eligible", "you do not meet the group's entry rule (iron-fan tag or "
              "fan-club level)"),
    ErrorCode("invite_invalid", "the invite code is unknown, used up or expired"),
    ErrorCode("group_removed", "you were removed from this group"),
    ErrorCode("not_member", "you (or the member named) are not in this group"),
    ErrorCode("not_group_admin", "only the group's owner (or its admins) may do this"),
    ErrorCode("group_violation", "this message breaks the group's rules (an ad, or flooding) "
              "and was not posted; this is your warning: the next violation removes you"),
    ErrorCode("group_muted", "you are muted in this group for now", temporary=True),
    ErrorCode("too_many_groups", "this connection watches the most groups it may; close one"),
    ErrorCode("poll_unknown", "no such poll"),
    ErrorCode("poll_id_conflict", "this poll id is taken"),
    ErrorCode("poll_closed", "the poll is closed"),
    ErrorCode("already_voted", "you voted already and this poll does not allow changes"),
    ErrorCode("bad_choice", "the choices do not fit the poll (an option that does not exist, "
              "or several on a single-choice poll)"),
    ErrorCode("envelope_unknown", "no such red envelope in this group"),
    ErrorCode("envelope_empty", "every share of this red envelope was grabbed"),
    ErrorCode("envelope_expired", "this red envelope expired; what was left went back"),
    ErrorCode("envelope_id_conflict", "this envelope id was used with different parameters"),
    ErrorCode("envelope_insufficient", "not enough cards for this red envelope"),
    ErrorCode("not_festival", "today is not a festival day: the festival's avatar frame is "
              "redeemed on one"),
    ErrorCode("frame_needs_gift", "send a gift today first: the festival's avatar frame is for "
              "those who gift on the festival"),
    ErrorCode("account_banned", "your account is banned: it may not send or grab red envelopes"),
    ErrorCode("envelope_asset", "red envelopes carry note cards only"),
    ErrorCode("balance_full", "your share would take your balance past what an account may "
              "hold; it stays yours: grab again once there is room", temporary=True),
    ErrorCode("owner_cannot_leave", "the owner cannot leave their own group"),
    ErrorCode("too_many_invites", "the group has as many live invite codes as it may"),
    ErrorCode("too_many_polls", "the group has as many open polls as it may"),
    ErrorCode("too_many_envelopes", "the group has as many open red envelopes as it may"),
    ErrorCode("insufficient_points", "not enough popularity points"),
    ErrorCode("points_frozen", "your points are frozen by a fraud finding until an admin lifts it"),
    ErrorCode("use_limit", "today's card uses are used up (3 a day by default); more "
              "tomorrow", temporary=True),
    ErrorCode("category_mismatch", "points only boost into your own content category"),
    ErrorCode("not_enough_followers", "fan reach needs more followers (10,000 by default)"),
    ErrorCode("not_mature", "advanced cards are for mature accounts"),
    ErrorCode("content_taken", "another account already boosted this content (a re-upload)"),
    ErrorCode("targeting_region", "region: give radius_km (1–500) or provinces (1–34 names)"),
    ErrorCode("targeting_age", "age: give min and max, 13 ≤ min ≤ max ≤ 100"),
    ErrorCode("targeting_gender", "gender: any, female or male"),
    ErrorCode("targeting_interests", "interests: 3–5 core tags and at most 2 extended tags, "
              "each 1–24 characters without spaces or commas, none repeated"),
    ErrorCode("use_id_conflict", "this use id was used with different parameters"),
    ErrorCode("use_unknown", "no such card use of yours"),
    ErrorCode("use_started", "the use has started (or ended): it can no longer be cancelled"),
    ErrorCode("insufficient_cards", "not enough of that creator's small cards"),
    ErrorCode("points_full", "the points would take your balance past what an account may "
              "hold; nothing was spent", temporary=True),
    ErrorCode("insufficient_coin", "not enough coin"),
    ErrorCode("buy_unit", "coin buys points in whole yuan (GIFTWIRE_COIN_PER_YUAN coin a yuan)"),
    ErrorCode("buy_id_conflict", "this purchase id was used with another amount of coin"),
    ErrorCode("exchange_unit", "small cards exchange in whole units (10 by default)"),
    ErrorCode("exchange_id_conflict", "this exchange id was used with different parameters"),
    ErrorCode("set_incomplete", "you hold fewer complete sets than that (one card of each set "
              "kind a set)"),
    ErrorCode("redemption_id_conflict", "this redemption id was used with another count of sets"),
    ErrorCode("set_reward_full", "the reward would take your balance past what an account may "
              "hold; nothing was redeemed", temporary=True),
    ErrorCode("risk_restricted", "your account may not gift for now (one device served too many "
              "accounts); the event `risk.notice` says until when and how to appeal"),
    ErrorCode("risk_frozen", "your account is frozen for now (an IP cluster gifting one account); "
              "see `risk.notice` for when and how to appeal"),
    ErrorCode("risk_banned", "your account is banned (automated use); see `risk.notice` for how "
              "to appeal"),
    ErrorCode("settlement_failed", "the request could not be settled and was set aside for an "
              "operator; once they retried or voided it, the same request (same gift id) "
              "answers its outcome (until then, this error again)", temporary=True),
)

# Reasons a gift (or an offer action) is refused: `gift.rejected.code`.
REJECTIONS = _codes(
    ErrorCode("self_gift", "you cannot gift yourself"),
    ErrorCode("unknown_asset", "no such asset"),
    ErrorCode("not_transferable", "this asset cannot be gifted"),
    ErrorCode("sender_unknown", "your account is not registered with giftwire"),
    ErrorCode("recipient_unknown", "the recipient is not registered with giftwire"),
    ErrorCode("sender_banned", "your account is banned"),
    ErrorCode("recipient_banned", "the recipient's account is banned"),
    ErrorCode("real_name_required", "complete real-name verification to send gifts"),
    ErrorCode("not_following", "you must follow the recipient to gift them"),
    ErrorCode("follow_too_recent", "you must have followed the recipient long enough"),
    ErrorCode("blocked", "one of you has blocked the other"),
    ErrorCode("daily_limit", "you have used today's gift quota", temporary=True),
    ErrorCode("pair_limit", "the recipient has taken today's gifts from you", temporary=True),
    ErrorCode("insufficient_balance", "not enough cards"),
    ErrorCode("amount_too_large",
              "too many cards: more than one gift may carry, or more than an account may hold"),
    ErrorCode("accept_balance_full", "accepting would take your balance past what an account "
              "may hold; the offer stays open: accept again once your balance has room",
              temporary=True),
    ErrorCode("offers_full", "the recipient has too many pending offers", temporary=True),
    ErrorCode("gift_id_conflict", "this gift id was used with different parameters"),
    ErrorCode("offer_not_found", "no such pending offer"),
    ErrorCode("not_group_member", "a gift in a group goes between its members (and the group "
              "must exist)"),
    ErrorCode("no_such_room", "the gift names a room that was never created"),
    ErrorCode("offer_accepted", "this offer was already accepted"),
    ErrorCode("offer_declined", "this offer was already declined; the cards went back to the sender"),
    ErrorCode("offer_expired", "this offer timed out; the cards went back to the sender"),
    ErrorCode("sender_restricted", "your account may not gift for now (risk engine)"),
    ErrorCode("sender_frozen", "your account is frozen for now (risk engine)"),
    ErrorCode("approval_pending", "this gift waits for a third party's approval (your region's "
              "rule): it is theirs to approve or deny, not yours to accept or decline"),
    ErrorCode("approval_denied", "the gift's approver denied it; the cards went back to the sender"),
    ErrorCode("operator_voided", "the gift could not be settled and an operator voided it; "
              "the cards went back to the sender"),
)


@dataclass(frozen=True)
class AdminCode:
    code: str
    status: int
    message: str  # the default; a raise may give a more specific detail instead


# Every code the admin HTTP API can answer with, and its HTTP status. Each one is written
# out (never built from parts) so this table, the README's and the raises can be compared.
ADMIN_ERRORS = {
    c.code: c
    for c in (
        AdminCode("bad_json", 400, "the body is not valid JSON"),
        AdminCode("bad_body", 400, "the body must be a JSON object"),
        AdminCode("unknown_field", 400, "the body has a field this endpoint does not take"),
        AdminCode("missing_field", 400, "the body lacks a required field"),
        AdminCode("bad_field", 400, "a field, query parameter or path segment is invalid"),
        AdminCode("bad_cursor", 400, "cursor must be a next_cursor from a page: "
                  "<ms>-<seq>, each an integer in [0, 2^64)"),
        AdminCode("unknown_asset", 400, "no such asset"),
        AdminCode("amount_too_large", 400, "the amount, or the balance it would make, exceeds "
                  "the account bound (GIFTWIRE_AMOUNT_MAX)"),
        AdminCode("asset_not_grantable", 400, "popularity points are not granted or revoked "
                  "directly (they arrive as expiring lots: sign-ins, tasks, purchases), and "
                  "fan-club small cards are not granted (they come from the daily like task)"),
        AdminCode("self_relation", 400, "a user cannot follow or block themselves, or be "
                  "their own iron fan"),
        # refused by the HTTP layer before any route (server/gateway/http_limits.py), on every path
        AdminCode("bad_request", 400, "the request is not valid HTTP (its request line, a header, "
                  "or the body's framing)"),
        AdminCode("request_line_too_long", 414, "the request line is longer than "
                  "GIFTWIRE_HTTP_HEAD_MAX_BYTES"),
        AdminCode("head_too_large", 431, "the request head is larger than "
                  "GIFTWIRE_HTTP_HEAD_MAX_BYTES or has more than GIFTWIRE_HTTP_HEADERS_MAX headers"),
        AdminCode("handshake_timeout", 408, "the request head did not arrive within "
                  "GIFTWIRE_HANDSHAKE_TIMEOUT_S"),
        AdminCode("address_busy", 429, "this address holds its share of the connections still "
                  "in their handshake (GIFTWIRE_HANDSHAKES_PER_ADDRESS_MAX); retry shortly"),
        AdminCode("too_many_handshakes", 503, "the server holds GIFTWIRE_HANDSHAKES_MAX connections "
                  "still in their handshake; retry shortly"),
        AdminCode("unauthorized", 401, "a valid admin key is required"),
        AdminCode("clock_locked", 403, "the clock moves only in a deployment started with "
                  "GIFTWIRE_TEST_CLOCK=1"),
        AdminCode("user_unknown", 404, "no such user"),
        AdminCode("room_unknown", 404, "no such room"),
        AdminCode("group_unknown", 404, "no such group"),
        AdminCode("owner_fixed", 409, "a group's owner is set when it is created"),
        AdminCode("group_full", 409, "the capacity is below the group's members"),
        AdminCode("not_found", 404, "no such endpoint"),
        AdminCode("method_not_allowed", 405, "this endpoint does not take this method"),
        AdminCode("insufficient_balance", 409, "the user's balance is smaller than the amount"),
        AdminCode("grant_id_conflict", 409, "this id was used with different parameters"),
        AdminCode("order_id_conflict", 409, "this order id was reported with other figures"),
        AdminCode("stock_empty", 409, "the note-card stock holds fewer cards of the kinds that "
                  "can be drawn than the reward asks: refill it (nothing was drawn)"),
        AdminCode("refill_id_conflict", 409, "this refill id was used with another asset or amount"),
        AdminCode("reward_id_conflict", 409, "this reward id was used for the user with another card count"),
        AdminCode("redemption_id_conflict", 409, "this redemption id was used with another count "
                  "of sets"),
        AdminCode("set_incomplete", 409, "the user holds fewer complete sets than that"),
        AdminCode("balance_not_zero", 409, "the user still holds a balance: revoke it first "
                  "(popularity points: a violation burns them), so the ledger stays exact"),
        AdminCode("gifts_in_flight", 409, "an offer waits for the user's answer: erase once it "
                  "is resolved"),
        AdminCode("user_erased", 409, "this user's data was erased: the id is not registered "
                  "again"),
        AdminCode("enterprise_not_eligible", 409, "the enterprise account does not qualify for this "
                  "service (the message says what it needs)"),
        AdminCode("issuance_id_conflict", 409, "this issuance id was used with other cards or users"),
        AdminCode("settling", 409, "the gift is still settling; send the same request again "
                  "shortly"),
        AdminCode("recipient_banned", 409, "the gift's recipient is banned (by the platform or "
                  "the risk engine): no cards reach the account; deny the gift, or it times out"),
        AdminCode("dead_letter_busy", 409, "another retry or void of this dead letter is "
                  "running; look again shortly"),
        AdminCode("offer_resolved", 409, "the gift held for approval was resolved already (the "
                  "message says how: accepted, denied, expired)"),
        AdminCode("wrong_evidence", 409, "this case's level needs other evidence: face "
                  "verification (low), a phone bill (medium), offline notarization (high)"),
        AdminCode("case_resolved", 409, "this case was resolved already"),
        AdminCode("case_unknown", 404, "no such risk case"),
        AdminCode("revoke_id_conflict", 409, "this id was used with different parameters"),
        AdminCode("not_newcomer", 409, "only a newcomer can bind a mentor"),
        AdminCode("mentor_already_bound", 409, "this user already has a mentor"),
        AdminCode("already_gifted", 409, "the newcomer has already posted a gift: a mentor "
                  "bound now would never be rewarded"),
        AdminCode("body_timeout", 408, "the body did not arrive in time"),
        AdminCode("body_too_large", 413, "the body is too large"),
        AdminCode("too_many_items", 413, "the bulk request has too many items"),
        AdminCode("internal", 500, "the server failed on this request; retrying will not help"),
        AdminCode("unavailable", 503, "storage is unavailable; retry later"),
    )
}


@dataclass(frozen=True)
class CloseCode:
    code: int
    reason: str
    reconnect: bool
    message: str


# Every close code a client can see, RFC 6455 ones included (those a proxy in front of the
# gateway sends too: a widget behind one must not stay offline after the proxy restarts),
# with the advice both clients follow. A code not listed here is final (a client must not
# hammer a server it does not understand).
CLOSE_CODES = {
    c.reason: c
    for c in (
        CloseCode(1000, "normal", False, "closed as asked (the client closed first; its "
                  "own code is echoed)"),
        CloseCode(1001, "going_away", True,
                  "never sent by the gateway: a proxy or load balancer in front of it going "
                  "away (a restart, a drain)"),
        CloseCode(1002, "protocol_error", False, "the client broke the WebSocket protocol"),
        CloseCode(1005, "no_status", True,
                  "never sent by the gateway: a close frame without a code (seen by clients; "
                  "a proxy's)"),
        CloseCode(1006, "abnormal", True,
                  "never sent: the connection dropped without a close frame (seen by clients)"),
        CloseCode(1007, "invalid_utf8", False, "a text frame was not valid UTF-8"),
        CloseCode(1009, "message_too_big", False,
                  "a message over GIFTWIRE_WS_MAX_BYTES (the transport limit)"),
        CloseCode(1011, "internal_error", True,
                  "an unexpected server error, no pong to the server's ping in time, or (reason "
                  "`unavailable`) the server's storage is away: reconnect shortly"),
        CloseCode(1012, "service_restart", True, "the server is restarting"),
        CloseCode(1013, "try_again_later", True,
                  "never sent by the gateway: a proxy in front of it is overloaded"),
        CloseCode(1014, "bad_gateway", True,
                  "never sent by the gateway: a proxy in front of it could not reach it"),
        CloseCode(4000, "shutdown", True, "the gateway is shutting down: reconnect (elsewhere)"),
        CloseCode(4001, "auth_required", False,
                  "the first message was not a valid `auth` (nor was a token in the URL)"),
        CloseCode(4002, "auth_invalid", False, "the token is forged or malformed"),
        CloseCode(4003, "auth_expired", False, "the token expired: get a new one"),
        CloseCode(4004, "auth_timeout", True, "no `auth` in time"),
        CloseCode(4005, "too_many_connections", False, "the user has too many connections here"),
        CloseCode(4008, "slow_consumer", True, "the client did not read its events fast enough"),
        CloseCode(4009, "abuse", False, "too many bad frames"),
        CloseCode(4011, "device_banned", False, "this device is blacklisted (automated use); no "
                  "account may connect with it"),
        CloseCode(4012, "auth_device_required", False, "this deployment requires a token that "
                  "carries a device fingerprint (v2): ask the platform for one"),
        CloseCode(4013, "account_erased", False, "this account's data was erased (GDPR): it "
                  "connects no more"),
        CloseCode(4010, "resync", True, "the gateway could not keep your live events complete "
                  "(a storage node moved): reconnect and resume with `since`"),
    )
}
RECONNECT = {c.code: c.reconnect for c in CLOSE_CODES.values()}


def close_code(reason: str) -> CloseCode:
    return CLOSE_CODES[reason]


def should_reconnect(code: int) -> bool:
    """The advice for a close code; unknown codes are final."""
    return RECONNECT.get(code, False)
