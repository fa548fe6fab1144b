// giftwire.d.ts: the types of giftwire.js. GENERATED from the protocol schema
// (protocol/messages.py, protocol/errors.py) by `python -m protocol.typescript`: do not
// edit; a test fails when it drifts.

export type JsonObject = { [key: string]: unknown };

// ---- client → server ---------------------------------------------------------------------

/** Authenticate (first message) unless the token was in the query string. */
export interface AuthMessage {
  type: "auth";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** platform-signed token */
  token: string;
  /** resume: the last event `seq` you saw */
  since?: number;
}

/** Liveness probe; answered by `pong`. */
export interface PingMessage {
  type: "ping";
  /** client-chosen request id, echoed by the reply */
  id: string;
}

/** Read your balances. Replied by `balance`. */
export interface BalanceGetMessage {
  type: "balance.get";
  /** client-chosen request id, echoed by the reply */
  id: string;
}

/** Send `count` cards of `asset` to `to`. Replied by `gift.confirmed` or `gift.rejected`. */
export interface GiftSendMessage {
  type: "gift.send";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** sender-chosen gift id (idempotency key) */
  gift_id: string;
  /** recipient user id */
  to: string;
  /** asset name, e.g. `note.do` */
  asset: string;
  /** cards the recipient gets */
  count: number;
  /** live room the gift was sent in */
  room?: string;
  /** fan group the gift was sent in (both must be members; the group sees it) */
  group?: string;
}

/** Accept a pending offer. Replied by `gift.received` or `gift.rejected` (e.g. `offer_expired` after the timeout, `offer_declined` after a decline, `recipient_banned` when your account was banned since: the offer waits for a decline or its timeout; `accept_balance_full`, temporary: your balance would pass what an account may hold, the offer stays open). */
export interface GiftAcceptMessage {
  type: "gift.accept";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** `transfer_id` of the offer */
  offer_id: string;
}

/** Redeem the festival's time-limited avatar frame: on a festival day (the platform's calendar), once you sent a gift that day. Replied by `festival.framed` (the same frame again when asked again that day), or `error` (`not_festival`, `frame_needs_gift`, `not_registered`). */
export interface FestivalFrameMessage {
  type: "festival.frame";
  /** client-chosen request id, echoed by the reply */
  id: string;
}

/** Decline a pending offer. Replied by `gift.voided` or `gift.rejected` (e.g. `offer_accepted` when it was accepted first). */
export interface GiftDeclineMessage {
  type: "gift.decline";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** `transfer_id` of the offer */
  offer_id: string;
}

/** Watch a room: its frames reach you until you leave or disconnect. Replied by `room.snapshot`. */
export interface RoomJoinMessage {
  type: "room.join";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** room id */
  room: string;
}

/** Stop watching a room. Replied by `room.left`. */
export interface RoomLeaveMessage {
  type: "room.leave";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** room id */
  room: string;
}

/** The whole room state now (after a gap in `rseq`). Replied by `room.snapshot`. */
export interface RoomStateMessage {
  type: "room.state";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** room id */
  room: string;
}

/** The streamer opens (`open: true`, with `asset`, `target` and optionally `ends_at_ms`) or closes the room's gift wish (礼物许愿). While it is open, gifts of that asset in the room are priced by the audience tier. Replied by `room.snapshot`, or `error` (`not_streamer`, `not_live`). */
export interface RoomWishMessage {
  type: "room.wish";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** room id */
  room: string;
  /** open (true) or close (false) */
  open: boolean;
  /** the wished asset */
  asset?: string;
  /** cards wished for */
  target?: number;
  /** when the wish ends by itself, Unix ms */
  ends_at_ms?: number;
}

/** Like the room's streamer `count` times (clients batch taps). Replied by `room.liked` with what was counted: likes beyond the speed limit are not. */
export interface RoomLikeMessage {
  type: "room.like";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** room id */
  room: string;
  /** taps in this batch */
  count: number;
}

/** Your place on the live session's contribution board. Replied by `room.rank`, or `error` `room_unknown`. */
export interface RoomRankGetMessage {
  type: "room.rank.get";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** room id */
  room: string;
}

/** The room's streamer starts (`live: true`) or ends a live session. Replied by `room.snapshot`, or `error` `not_streamer`. */
export interface RoomLiveMessage {
  type: "room.live";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** room id */
  room: string;
  /** start (true) or end (false) */
  live: boolean;
}

/** Become a member, by the group's entry rule: iron-fan tag, fan-club level, an invite code (`invite`), or an application an admin approves. Replied by `group.snapshot` (a member now, watching), `group.applied` (approval groups), or `error` (`group_full`, `not_eligible`, `invite_invalid`, `group_removed`, `group_unknown`, `not_registered`, `too_many_groups`; `not_member` if you were removed at once). */
export interface GroupJoinMessage {
  type: "group.join";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** an invite code */
  invite?: string;
}

/** Watch a group you are a member of: its frames reach you until `group.close` or you disconnect. Replied by `group.snapshot`, or `error` (`not_member`: not a member, or no such group; `too_many_groups`). */
export interface GroupOpenMessage {
  type: "group.open";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
}

/** Stop watching a group (you stay a member). Replied by `group.closed`. */
export interface GroupCloseMessage {
  type: "group.close";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
}

/** Leave a group (the owner cannot; leaving a group you are not in is answered the same), or withdraw your application to join an approval group. Replied by `group.left`, or `error` (`owner_cannot_leave`, `group_unknown`). */
export interface GroupLeaveMessage {
  type: "group.leave";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
}

/** The group now (after a gap). Replied by `group.snapshot`, or `error` `not_member` (not a member, or no such group). */
export interface GroupStateMessage {
  type: "group.state";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
}

/** Post a text message; `msg_id` makes it idempotent (a retry shows once). Owner and admins may `all` (@all); `mentions` reach those members even when they do not watch the group. Replied by `group.posted`; an ad or flooding is refused with `error` `group_violation` (the first a warning) or `group_removed` (the second: you are out); other `error`s: `group_removed` (removed before), `group_muted`, `not_group_admin` (`all` by a member), `not_member`, `group_unknown`, `risk_banned`. */
export interface GroupPostMessage {
  type: "group.post";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** your id for this message */
  msg_id: string;
  /** the text, up to 500 characters, not blank */
  text: string;
  /** members to mention */
  mentions?: string[];
  /** @all (owner and admins) */
  all?: boolean;
}

/** Messages newest first, a page at a time: `before` is the `next` of the previous page. Replied by `group.messages`, or `error` `not_member`. */
export interface GroupHistoryMessage {
  type: "group.history";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** continue below this message id */
  before?: string;
  /** messages in the page */
  limit?: number;
}

/** Owner and admins act on a member: `promote`/`demote` an admin (owner only), `remove`, `mute` (for `minutes`), `unmute`, `approve`/`reject` an application (`approve` also readmits a removed member, whatever the entry rule). Each that changes something is in the group's moderation log (a promote of an admin, a demote of a member or an unmute of one not muted is answered and changes nothing). Replied by `group.managed`, or `error` (`not_group_admin`: not yours to do, or the user is the owner or, for an admin, another admin; `not_member`: the user is not a member, or has no application (nor, for `approve`, was removed); `group_full`: approving into a full group, the application stays; `missing_field`: a mute without `minutes`; `group_unknown`). */
export interface GroupManageMessage {
  type: "group.manage";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** what to do */
  action: "promote" | "demote" | "remove" | "mute" | "unmute" | "approve" | "reject";
  /** the member (or applicant) */
  user: string;
  /** how long a mute lasts */
  minutes?: number;
}

/** Owner and admins make an invite code: `uses` joins within `ttl_s`. Replied by `group.invited`, or `error` (`not_group_admin`, `too_many_invites`, `group_unknown`). */
export interface GroupInviteMessage {
  type: "group.invite";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** joins it allows */
  uses: number;
  /** lifetime */
  ttl_s: number;
}

/** Owner and admins open a poll (the same poll id, creator and question again answers the poll as it is). Replied by `group.poll`, or `error` (`not_group_admin`, `poll_id_conflict`, `poll_closed`: the deadline is past, `too_many_polls`, `bad_field`: fewer than 2 options, `group_unknown`). */
export interface GroupPollCreateMessage {
  type: "group.poll.create";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** poll id */
  poll: string;
  /** up to 200 characters, not blank */
  question: string;
  /** 2 to 10 options, each up to 80 characters */
  options: string[];
  /** several choices per ballot */
  multi?: boolean;
  /** a ballot may be changed before the deadline */
  changeable?: boolean;
  /** the deadline, Unix ms */
  ends_at_ms: number;
}

/** Cast (or change, if the poll allows) your ballot: option indexes from 0 (the same ballot again, in any order, is answered as a success and changes nothing). Replied by `group.poll`, or `error` (`poll_closed`, `already_voted`: another ballot where the poll does not let it change, `bad_choice`, `poll_unknown`, `not_member`, `group_unknown`). */
export interface GroupVoteMessage {
  type: "group.vote";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** poll id */
  poll: string;
  /** chosen options */
  choices: number[];
}

/** A poll's results, open or closed. Replied by `group.poll`, or `error` (`not_member`, `poll_unknown`). */
export interface GroupPollGetMessage {
  type: "group.poll.get";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** poll id */
  poll: string;
}

/** Put `total` cards of `asset` into a red envelope for `shares` grabbers in a group (1 ≤ shares ≤ total). Settled like a gift: replied by `envelope.sent` (an event of yours), or `error` (`envelope_insufficient`, `envelope_asset`, `not_member`, `envelope_id_conflict`, `group_unknown`, `too_many_envelopes`, `bad_field`: more shares than cards, `not_registered`, `account_banned`, `risk_restricted`, `risk_frozen`, `risk_banned`, `settlement_failed`). */
export interface EnvelopeSendMessage {
  type: "envelope.send";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** red envelope id (the sender's choice; one envelope per id) */
  envelope: string;
  /** a note card kind */
  asset: string;
  /** cards in the envelope */
  total: number;
  /** how many members can grab a share */
  shares: number;
}

/** Grab a share of a red envelope (once per member). Replied by `envelope.grabbed` (an event of yours), or `error` (`envelope_empty`, `envelope_expired`, `envelope_unknown`, `not_member`, `account_banned`, `risk_frozen`, `risk_banned`, `balance_full`: the share would take your balance past the bound; it stays yours, and grabbing again credits it once there is room). */
export interface EnvelopeGrabMessage {
  type: "envelope.grab";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** the envelope's id as the group shows it, `<sender>:<envelope id>` */
  envelope: string;
}

/** Your points and lots. Replied by `popularity.points`. */
export interface PopularityGetMessage {
  type: "popularity.get";
  /** client-chosen request id, echoed by the reply */
  id: string;
}

/** The daily sign-in: 50 points on the first day of a streak, 25 more each unbroken day, at most 200; once per local day. Replied by `popularity.points` (`reason: signin`, or no `delta` when you signed in today already). */
export interface PopularitySigninMessage {
  type: "popularity.signin";
  /** client-chosen request id, echoed by the reply */
  id: string;
}

/** Exchange one creator's fan-club small cards (`small_card.<creator>`) for points (10 cards → 100 points by default; `cards` a multiple of 10) as a fresh lot. Replied by `popularity.points`, or `error` (`insufficient_cards`, `exchange_unit`, `points_full`, `exchange_id_conflict`: the id used with other `cards` or another `creator`). */
export interface PopularityExchangeMessage {
  type: "popularity.exchange";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** your id for this exchange (idempotent) */
  exchange: string;
  /** whose fan club's small cards */
  creator: string;
  /** small cards to exchange */
  cards: number;
}

/** Spend coin on points: 8 points per yuan of coin (`GIFTWIRE_POINTS_PER_YUAN`; a yuan is `GIFTWIRE_COIN_PER_YUAN` coin, 1 by default, and `coin` a whole number of yuan), no cap, as a fresh lot. The coin goes (a `balance.changed`, reason `purchase`, to every connection); replied by `popularity.points` (`reason: purchase`), or `error` (`insufficient_coin`, `buy_unit`, `points_full`, `buy_id_conflict`: the id used with another `coin`, `not_registered`). */
export interface PopularityBuyMessage {
  type: "popularity.buy";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** your id for this purchase (idempotent) */
  buy: string;
  /** coin to spend */
  coin: number;
}

/** Spend points on a card use boosting your content in your own category, now or at `start_at_ms` (points are taken when it is scheduled). Replied by `popularity.used`, or `error` (`insufficient_points`, `points_frozen`, `use_limit`, `category_mismatch`, `not_enough_followers`, `not_mature`, `content_taken`, `targeting_region`, `targeting_age`, `targeting_gender`, `targeting_interests`, `use_id_conflict`, `not_registered`, `bad_field`: `start_at_ms` in the past or more than 30 days ahead). */
export interface PopularityUseMessage {
  type: "popularity.use";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** your id for this card use (idempotent) */
  use: string;
  /** which card */
  card: "video_heating" | "live_recommendation" | "fan_reach";
  /** basic: the one content; advanced (mature accounts): the content and your live room together */
  cover?: "basic" | "advanced";
  /** the content boosted */
  content: string;
  /** advanced cards: your live room, boosted together with the content (without it only the content is boosted) */
  live_room?: string;
  /** the content's hash (a re-upload of content another account boosted is refused) */
  content_hash: string;
  /** the content's category (垂类): must be yours */
  category: string;
  /** `{region: {radius_km} | {provinces: [...]}, age: {min, max}, gender: any|female|male, interests: {core: [3–5 tags], extended: [≤ 2 tags]}}` */
  targeting: JsonObject;
  /** a later start, at most 30 days ahead (absent: now) */
  start_at_ms?: number;
}

/** Cancel a scheduled use before it starts: its points come back as the lots they came from, each expiring as it would have (a `popularity.points` event, `reason: refund`; none when they have expired since or a violation burned them). Replied by `popularity.use.state` (`cancelled`), or `error` (`use_unknown`: no such use, or one refused or still settling; `use_started`). */
export interface PopularityCancelMessage {
  type: "popularity.cancel";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** your id for this card use (idempotent) */
  use: string;
}

/** The published odds of a task reward's draw (each card's kind), which kinds are in stock, and what a complete set is and earns. Replied by `notes.info`. */
export interface NotesGetMessage {
  type: "notes.get";
  /** client-chosen request id, echoed by the reply */
  id: string;
}

/** Redeem complete sets: one card of each set kind per set is burned and the set's reward granted, in one step. Replied by `notes.redeemed`, or `error` (`set_incomplete`: fewer than `sets` of some kind; `redemption_id_conflict`: the id used with another `sets`; `set_reward_full`; `not_registered`). The balances also change by `balance.changed` events (`set_redeem`, `set_reward`). */
export interface NotesRedeemMessage {
  type: "notes.redeem";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** your id for this redemption (idempotent) */
  redemption: string;
  /** sets to redeem (absent: 1) */
  sets?: number;
}

export type ClientMessage =
  | AuthMessage
  | PingMessage
  | BalanceGetMessage
  | GiftSendMessage
  | GiftAcceptMessage
  | FestivalFrameMessage
  | GiftDeclineMessage
  | RoomJoinMessage
  | RoomLeaveMessage
  | RoomStateMessage
  | RoomWishMessage
  | RoomLikeMessage
  | RoomRankGetMessage
  | RoomLiveMessage
  | GroupJoinMessage
  | GroupOpenMessage
  | GroupCloseMessage
  | GroupLeaveMessage
  | GroupStateMessage
  | GroupPostMessage
  | GroupHistoryMessage
  | GroupManageMessage
  | GroupInviteMessage
  | GroupPollCreateMessage
  | GroupVoteMessage
  | GroupPollGetMessage
  | EnvelopeSendMessage
  | EnvelopeGrabMessage
  | PopularityGetMessage
  | PopularitySigninMessage
  | PopularityExchangeMessage
  | PopularityBuyMessage
  | PopularityUseMessage
  | PopularityCancelMessage
  | NotesGetMessage
  | NotesRedeemMessage;

/** Message type name → its interface. */
export interface ClientMessages {
  "auth": AuthMessage;
  "ping": PingMessage;
  "balance.get": BalanceGetMessage;
  "gift.send": GiftSendMessage;
  "gift.accept": GiftAcceptMessage;
  "festival.frame": FestivalFrameMessage;
  "gift.decline": GiftDeclineMessage;
  "room.join": RoomJoinMessage;
  "room.leave": RoomLeaveMessage;
  "room.state": RoomStateMessage;
  "room.wish": RoomWishMessage;
  "room.like": RoomLikeMessage;
  "room.rank.get": RoomRankGetMessage;
  "room.live": RoomLiveMessage;
  "group.join": GroupJoinMessage;
  "group.open": GroupOpenMessage;
  "group.close": GroupCloseMessage;
  "group.leave": GroupLeaveMessage;
  "group.state": GroupStateMessage;
  "group.post": GroupPostMessage;
  "group.history": GroupHistoryMessage;
  "group.manage": GroupManageMessage;
  "group.invite": GroupInviteMessage;
  "group.poll.create": GroupPollCreateMessage;
  "group.vote": GroupVoteMessage;
  "group.poll.get": GroupPollGetMessage;
  "envelope.send": EnvelopeSendMessage;
  "envelope.grab": EnvelopeGrabMessage;
  "popularity.get": PopularityGetMessage;
  "popularity.signin": PopularitySigninMessage;
  "popularity.exchange": PopularityExchangeMessage;
  "popularity.buy": PopularityBuyMessage;
  "popularity.use": PopularityUseMessage;
  "popularity.cancel": PopularityCancelMessage;
  "notes.get": NotesGetMessage;
  "notes.redeem": NotesRedeemMessage;
}
export type ClientType = keyof ClientMessages;

// ---- server → client ---------------------------------------------------------------------

/** Authentication succeeded. */
export interface WelcomeMessage {
  type: "welcome";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** the authenticated user */
  user: string;
  /** protocol version */
  protocol: number;
  /** server clock, Unix ms */
  server_time_ms: number;
  /** your latest event `seq`: live events continue from it */
  seq: number;
  /** when resuming: true if every missed event follows, false if the log no longer holds them (re-read your balances) */
  recovered?: boolean;
  /** the partner app whose secret signed your token (your gifts carry it); absent: the platform's own */
  channel?: string;
}

/** Reply to `ping`. */
export interface PongMessage {
  type: "pong";
  /** client-chosen request id, echoed by the reply */
  id: string;
}

/** A request was malformed or refused; the connection stays open. */
export interface ErrorMessage {
  type: "error";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** stable error code */
  code: string;
  /** human-readable explanation */
  message: string;
  /** true when retrying later may succeed */
  temporary: boolean;
}

/** Reply to `balance.get`. */
export interface BalanceMessage {
  type: "balance";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** asset → amount (absent means 0) */
  balances: Record<string, number>;
}

/** To the sender: the gift settled (`delivery: instant`) or awaits the recipient's confirmation (`delivery: pending`), or, with `approval: true`, a third party's approval (the recipient's region's rule). */
export interface GiftConfirmedMessage {
  type: "gift.confirmed";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** `<sender>:<gift_id>`, unique */
  transfer_id: string;
  /** sender-chosen gift id (idempotency key) */
  gift_id: string;
  /** recipient */
  to: string;
  /** asset name, e.g. `note.do` */
  asset: string;
  /** cards the recipient gets */
  count: number;
  /** cards debited (festival pricing, free quota) */
  cost: number;
  /** cards paid by the newcomer promotion */
  free: number;
  /** instant or pending */
  delivery: "instant" | "pending";
  /** your balance of `asset` after this event */
  balance: number;
  /** gifts you may still send today */
  quota_left: number;
  /** live room the gift was sent in */
  room?: string;
  /** the partner app the gift was sent from (its users' tokens are signed by it); absent: the platform's own */
  channel?: string;
  /** the live-stream boost tier the cost includes (a gift wish was open in the room): the 1-based row of the room's wish tiers, not the multiplier */
  tier?: number;
  /** true (with `delivery: pending`): the gift waits for a third party's approval (the recipient's region's rule), not for the recipient; absent otherwise */
  approval?: boolean;
  /** per-user event sequence number */
  seq: number;
}

/** The gift (or offer action) was refused; nothing moved or all was refunded. */
export interface GiftRejectedMessage {
  type: "gift.rejected";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** `<sender>:<gift_id>`, unique */
  transfer_id: string;
  /** sender-chosen gift id (idempotency key) */
  gift_id: string;
  /** stable rejection code */
  code: string;
  /** human-readable explanation */
  message: string;
  /** true when trying again later may succeed: with a new `gift_id` (the same one gets this answer again) */
  temporary: boolean;
  /** sender balance after any refund */
  balance?: number;
  /** asset of the gift */
  asset?: string;
  /** per-user event sequence number */
  seq?: number;
}

/** To the recipient: cards were credited (instantly, or on accepting an offer). */
export interface GiftReceivedMessage {
  type: "gift.received";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** `<sender>:<gift_id>`, unique */
  transfer_id: string;
  /** sender-chosen gift id (idempotency key) */
  gift_id: string;
  /** sender */
  from: string;
  /** asset name, e.g. `note.do` */
  asset: string;
  /** cards the recipient gets */
  count: number;
  /** live room the gift was sent in */
  room?: string;
  /** the partner app the gift was sent from (its users' tokens are signed by it); absent: the platform's own */
  channel?: string;
  /** your balance of `asset` after this event */
  balance: number;
  /** per-user event sequence number */
  seq: number;
}

/** To a recipient who confirms gifts: accept or decline before `expires_at_ms`. Or, with `approval: true`, a gift held for a third party's approval (your region's rule): you are told, they decide. */
export interface GiftOfferMessage {
  type: "gift.offer";
  /** `<sender>:<gift_id>`, unique */
  transfer_id: string;
  /** sender-chosen gift id (idempotency key) */
  gift_id: string;
  /** sender */
  from: string;
  /** asset name, e.g. `note.do` */
  asset: string;
  /** cards the recipient gets */
  count: number;
  /** live room the gift was sent in */
  room?: string;
  /** the partner app the gift was sent from (its users' tokens are signed by it); absent: the platform's own */
  channel?: string;
  /** when the offer times out, Unix ms */
  expires_at_ms: number;
  /** true: your region needs a third party's approval of this gift (a guardian's): it is theirs to approve or deny, not yours to accept (`approval_pending`); absent: yours */
  approval?: boolean;
  /** sequence number of the event that offered it */
  seq: number;
}

/** To the sender: the recipient accepted a pending gift. */
export interface GiftAcceptedMessage {
  type: "gift.accepted";
  /** `<sender>:<gift_id>`, unique */
  transfer_id: string;
  /** sender-chosen gift id (idempotency key) */
  gift_id: string;
  /** recipient */
  to: string;
  /** asset name, e.g. `note.do` */
  asset: string;
  /** cards the recipient gets */
  count: number;
  /** per-user event sequence number */
  seq: number;
}

/** To both sides: a pending gift was declined, denied by its approver or timed out; the sender got the cards and the daily quota back. */
export interface GiftVoidedMessage {
  type: "gift.voided";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** `<sender>:<gift_id>`, unique */
  transfer_id: string;
  /** sender-chosen gift id (idempotency key) */
  gift_id: string;
  /** asset name, e.g. `note.do` */
  asset: string;
  /** cards the recipient gets */
  count: number;
  /** declined, denied (by the approver a region requires) or timeout */
  reason: "declined" | "denied" | "timeout";
  /** your balance of `asset` now */
  balance?: number;
  /** sender only: gifts left today */
  quota_left?: number;
  /** sender only: the recipient */
  to?: string;
  /** per-user event sequence number */
  seq: number;
}

/** Your festival avatar frame (the reply to `festival.frame`): the festival day it was redeemed on and until when it shows (the end of that day plus `GIFTWIRE_FESTIVAL_FRAME_DAYS`). The platform shows it on your avatar (`GET /admin/v1/users/{id}` `avatar_frame`). */
export interface FestivalFramedMessage {
  type: "festival.framed";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** the festival day, `YYYY-MM-DD` */
  day: string;
  /** until when the frame shows */
  expires_at_ms: number;
}

/** A grant, revocation or reward changed your balance. */
export interface BalanceChangedMessage {
  type: "balance.changed";
  /** the transfer's id, unique: a grant's `$grant:<id>`, a revocation's `$revoke:<id>`, a mentor reward's `$mentor:<gift>`, a task reward's `$reward:<id>`, a set redemption's `$set:<id>`, an enterprise's `$ent:<enterprise>:<issuance>` or `$eorder:<enterprise>:<order>`, ... */
  transfer_id: string;
  /** asset name, e.g. `note.do` */
  asset: string;
  /** signed change */
  delta: number;
  /** grant, revoke, mentor_reward, like_task (a day's like task for a streamer done: a small card of their fan club, `small_card.<streamer>`), like_streak (7 days in a row: a rare one, `small_card_rare.<streamer>`), envelope_refund (what was left in your red envelope came back, or the group refused it), task_reward (a task's note cards, drawn by the published odds), set_redeem (a redemption burned `sets` cards of each set kind: one event per kind, `delta: -sets`) and set_reward (what the sets earned), enterprise (an enterprise account issued you cards: a brand's batch, an order's gift, a fan-level tier), exchange (`popularity.exchange` burned these fan-club cards for popularity points: `delta: -cards`, `transfer_id` `$px:<exchange>`), purchase (`popularity.buy` spent this coin on popularity points: `delta: -coin`, `transfer_id` `$pc:<buy>`) */
  reason: "grant" | "revoke" | "mentor_reward" | "like_task" | "like_streak" | "envelope_refund" | "task_reward" | "set_redeem" | "set_reward" | "enterprise" | "exchange" | "purchase";
  /** your balance of `asset` after this event */
  balance: number;
  /** per-user event sequence number */
  seq: number;
}

/** The room state: who streams, the session, audience, board, wish, likes and the effects fired. */
export interface RoomSnapshotMessage {
  type: "room.snapshot";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** room id */
  room: string;
  /** the room's streamer */
  streamer?: string;
  /** a live session is on */
  live: boolean;
  /** the live session's id, `<room>:<n>`; absent when not live */
  session?: string;
  /** viewers in the room, over every gateway */
  audience: number;
  /** the room's latest event number: frames continue from it */
  rseq: number;
  /** the session's contribution board, best first: `{user, cards}` */
  board: JsonObject[];
  /** the open gift wish: `{wish, asset, target, progress, ends_at_ms}` (`ends_at_ms` 0: no end set) */
  wish?: JsonObject;
  /** the live session's likes (0 when not live) */
  likes: number;
  /** the room effects this session's likes have fired, in the order of their thresholds */
  effects: string[];
}

/** Reply to `room.leave`. */
export interface RoomLeftMessage {
  type: "room.left";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** room id */
  room: string;
}

/** Reply to `room.like`: likes counted and refused (too fast), your total for this streamer and your fan-club level (0: none yet). */
export interface RoomLikedMessage {
  type: "room.liked";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** room id */
  room: string;
  /** likes counted */
  counted: number;
  /** likes over the speed limit, not counted */
  refused: number;
  /** your likes for this streamer, ever */
  total: number;
  /** your fan-club level with this streamer */
  level: number;
  /** your counted likes for this streamer today (the daily task needs 30) */
  today: number;
  /** daily tasks done in a row for this streamer */
  streak: number;
}

/** Your fan-club level with a streamer went up (an event of yours: exactly once, resumable). */
export interface LikesLevelMessage {
  type: "likes.level";
  /** the streamer */
  creator: string;
  /** the new level */
  level: number;
  /** your likes for this streamer */
  total: number;
  /** per-user event sequence number */
  seq: number;
}

/** Reply to `room.rank.get`: your rank (1 = first) and what your gifts in this session cost (each gift's `cost`); no `rank` when you are not on the board. */
export interface RoomRankMessage {
  type: "room.rank";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** room id */
  room: string;
  /** your place, 1 first */
  rank?: number;
  /** the sum of your gifts' `cost` in this session */
  cards: number;
}

/** The session's contribution board changed: its top entries, pushed at most once a second per room (at most once, like room frames). */
export interface RoomBoardMessage {
  type: "room.board";
  /** room id */
  room: string;
  /** best first: `{user, cards}` */
  board: JsonObject[];
}

/** What happened in a room during one tick, encoded once for every viewer: events `rseq` `from`..`to` (a frame that starts after your last `to` + 1 means you missed some: send `room.state`). Event kinds: `live` {session, live}, `audience` {audience}, `gift` {transfer_id, from, to, asset, count, cost, at_ms: when it settled, tier?: the wish tier (1-based: the row of `GIFTWIRE_WISH_TIERS` the audience fell in, not the multiplier), badge?: the sender's fan-club level with the recipient}, `wish` {wish, state (open, progress, reached, closed, ended), asset, target, progress; ends_at_ms on open, 0: no end set}, `likes` {likes: the session's total}, `effect` {effect, likes: the session's total when its threshold was passed} (a threshold of likes reached, once per session). */
export interface RoomFrameMessage {
  type: "room.frame";
  /** room id */
  room: string;
  /** first event number in this frame */
  from: number;
  /** last event number in this frame */
  to: number;
  /** the events, oldest first */
  events: JsonObject[];
}

/** The group: its profile, your role, how many members it has, your mute, open polls and envelopes, and `gseq` (frames continue from it). */
export interface GroupSnapshotMessage {
  type: "group.snapshot";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** group id */
  group: string;
  /** the creator */
  owner: string;
  /** core fans, co-creation or perks */
  group_type: "core" | "cocreation" | "perks";
  /** how members get in */
  rule: "iron_fan" | "level" | "invite" | "approval";
  /** members at most */
  capacity: number;
  /** members now */
  members: number;
  /** your role */
  role: "owner" | "admin" | "member";
  /** the group's latest event number */
  gseq: number;
  /** your mute ends then */
  muted_until_ms?: number;
  /** open red envelopes: `{envelope, from, asset, total, shares, left, left_shares, expires_at_ms, state}` (state `open`) */
  envelopes: JsonObject[];
  /** open polls (see `group.poll`) */
  polls: JsonObject[];
}

/** Reply to `group.join` of an approval group: your application waits for an admin. */
export interface GroupAppliedMessage {
  type: "group.applied";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
}

/** Reply to `group.close`. */
export interface GroupClosedMessage {
  type: "group.closed";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
}

/** Reply to `group.leave`. */
export interface GroupLeftMessage {
  type: "group.left";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
}

/** Reply to `group.post`: the message as the group shows it (the same on a retry). */
export interface GroupPostedMessage {
  type: "group.posted";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** a message: `{id, from, role, badge, text, mentions?, all?, at_ms}` (`id` is the group's message id, `badge` the sender's fan-club level with the group's creator) */
  message: JsonObject;
}

/** Reply to `group.history`: newest first; `next` continues below (absent at the end of what is kept). */
export interface GroupMessagesMessage {
  type: "group.messages";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** messages, newest first */
  messages: JsonObject[];
  /** `before` for the next page */
  next?: string;
}

/** Reply to `group.manage`: what was done. */
export interface GroupManagedMessage {
  type: "group.managed";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** the action */
  action: "promote" | "demote" | "remove" | "mute" | "unmute" | "approve" | "reject";
  /** the member */
  user: string;
  /** their role now (absent when out) */
  role?: "owner" | "admin" | "member";
}

/** Reply to `group.invite`. */
export interface GroupInvitedMessage {
  type: "group.invited";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** group id */
  group: string;
  /** the invite code */
  code: string;
  /** joins it allows */
  uses: number;
  /** when it stops working */
  expires_at_ms: number;
}

/** A poll and its results (reply to poll requests). */
export interface GroupPollMessage {
  type: "group.poll";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** group id */
  group: string;
  /** a poll: `{poll, question, options, multi, changeable, ends_at_ms, closed, counts, voters}` (counts per option, in order) */
  poll: JsonObject;
}

/** You were mentioned in a group (an event of yours: exactly once, resumable, whether or not you watch the group). */
export interface GroupMentionMessage {
  type: "group.mention";
  /** group id */
  group: string;
  /** a message: `{id, from, role, badge, text, mentions?, all?, at_ms}` (`id` is the group's message id, `badge` the sender's fan-club level with the group's creator) */
  message: JsonObject;
  /** per-user event sequence number */
  seq: number;
}

/** Your red envelope is open in the group (an event of yours; the reply to `envelope.send`). */
export interface EnvelopeSentMessage {
  type: "envelope.sent";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** group id */
  group: string;
  /** its id in the group, `<you>:<envelope id>` */
  envelope: string;
  /** the cards */
  asset: string;
  /** cards in it */
  total: number;
  /** grabbers it allows */
  shares: number;
  /** your balance of the asset now */
  balance: number;
  /** when what is left returns to you */
  expires_at_ms: number;
  /** per-user event sequence number */
  seq: number;
}

/** Your share of a red envelope (an event of yours; the reply to `envelope.grab`, the same on a retry). */
export interface EnvelopeGrabbedMessage {
  type: "envelope.grabbed";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** group id */
  group: string;
  /** `<sender>:<envelope id>` */
  envelope: string;
  /** the cards */
  asset: string;
  /** cards you got */
  share: number;
  /** your balance of the asset now */
  balance: number;
  /** per-user event sequence number */
  seq: number;
}

/** What happened in a group during one tick, encoded once for every member watching: events `gseq` `from`..`to`. Kinds: `message` {message}, `join` {user, role}, `leave` {user}, `removed` {user, reason}, `muted` {user, until_ms}, `role` {user, role}, `poll` {poll} (results, at most once a second per poll, and at its close), `envelope` {envelope, from, asset, total, shares, expires_at_ms}, `grab` {envelope, user, share, left, left_shares}, `envelope_done` {envelope, reason: grabbed | expired, refunded}, `gift` {transfer_id, from, to, asset, count}. */
export interface GroupFrameMessage {
  type: "group.frame";
  /** group id */
  group: string;
  /** first event number in this frame */
  from: number;
  /** last event number in this frame */
  to: number;
  /** the events, oldest first */
  events: JsonObject[];
}

/** Your points changed (an event of yours), or the reply to a points request: `delta` and `reason` (signin, task, purchase, exchange, refund, expire, violation, partner) when they changed. */
export interface PopularityPointsMessage {
  type: "popularity.points";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** your points now (expired lots already gone) */
  balance: number;
  /** unexpired lots, soonest to expire first: `{points, expires_at_ms}` (absent: none) */
  lots?: JsonObject[];
  /** the change */
  delta?: number;
  /** why (partner: a gift you received from a partner app's channel earned them) */
  reason?: "signin" | "task" | "purchase" | "exchange" | "refund" | "expire" | "violation" | "partner";
  /** a fraud finding froze your points (they neither spend nor expire until lifted) */
  frozen: boolean;
  /** sign-in days in a row (as of your last sign-in) */
  streak: number;
  /** per-user event sequence number */
  seq?: number;
}

/** Your card use is paid (the reply to `popularity.use`, an event of yours). */
export interface PopularityUsedMessage {
  type: "popularity.used";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** your id for this card use (idempotent) */
  use: string;
  /** the card */
  card: "video_heating" | "live_recommendation" | "fan_reach";
  /** the content */
  content: string;
  /** points paid */
  price: number;
  /** when the boost starts */
  starts_at_ms: number;
  /** when it ends */
  ends_at_ms: number;
  /** your points now (expired lots already gone) */
  balance: number;
  /** card uses today (at most 3) */
  uses_today: number;
  /** per-user event sequence number */
  seq: number;
}

/** A use started, ended or was cancelled (an event of yours; the reply to `popularity.cancel`). */
export interface PopularityUseStateMessage {
  type: "popularity.use.state";
  /** client-chosen request id, echoed by the reply */
  id?: string;
  /** your id for this card use (idempotent) */
  use: string;
  /** what happened */
  state: "started" | "ended" | "cancelled";
  /** your points (after a cancel's refund) */
  balance?: number;
  /** per-user event sequence number */
  seq: number;
}

/** The platform's figures for one of your boosts (an event of yours), in basis points (1/100 of a percent), and warnings for figures past their threshold. */
export interface PopularityDashboardMessage {
  type: "popularity.dashboard";
  /** your id for this card use (idempotent) */
  use: string;
  /** `{completion_bp, interaction_bp, followers_per_hour, bounce_bp}` */
  figures: JsonObject;
  /** figures that crossed their threshold with this report (once per crossing): completion, interaction, bounce */
  warnings?: string[];
  /** per-user event sequence number */
  seq: number;
}

/** The risk engine acted on your account (an event of yours): `restricted` (low risk: one device served too many accounts; this notice is the warning, and gifting stops until `until_ms`), `frozen` (medium: an IP cluster gifting one account; gifting and grabbing stop until `until_ms`), `banned` (high: automated use; permanent, the device blacklisted), or `lifted` (an appeal succeeded). `appeal` says what evidence the platform needs. */
export interface RiskNoticeMessage {
  type: "risk.notice";
  /** what happened */
  action: "restricted" | "frozen" | "banned" | "lifted";
  /** the rule's risk level */
  level: "low" | "medium" | "high";
  /** shared_device, ip_cluster, automation_rate, automation_regular */
  reason: "shared_device" | "ip_cluster" | "automation_rate" | "automation_regular";
  /** the case id (quote it in an appeal): `<reason>-<user>-<ms>`, at most 128 characters */
  case: string;
  /** when it ends by itself (absent: permanent) */
  until_ms?: number;
  /** the evidence an appeal needs */
  appeal: "face_verification" | "phone_bill" | "notarization";
  /** per-user event sequence number */
  seq: number;
}

/** The reply to `notes.get`: `kinds` lists every note card `{asset, odds, odds_now, in_stock}` — `odds` the published chance of one card (weight over the total), `odds_now` the chance with the kinds out of stock left out; `set_kinds` and `set_reward` `{asset, amount}` per set. */
export interface NotesInfoMessage {
  type: "notes.info";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** every note card's odds */
  kinds: JsonObject[];
  /** the assets a complete set holds one of */
  set_kinds: string[];
  /** `{asset, amount}` each set earns */
  set_reward: JsonObject;
}

/** Your sets are redeemed (the reply to `notes.redeem`; a repeat of the same id answers the same, `replayed: true`). */
export interface NotesRedeemedMessage {
  type: "notes.redeemed";
  /** client-chosen request id, echoed by the reply */
  id: string;
  /** your id for this redemption (idempotent) */
  redemption: string;
  /** sets redeemed */
  sets: number;
  /** `{asset, amount}` granted for them all */
  reward: JsonObject;
  /** your balances of the set's kinds and the reward's asset after it */
  balances: Record<string, number>;
  /** this id was redeemed before */
  replayed: boolean;
}

export type ServerMessage =
  | WelcomeMessage
  | PongMessage
  | ErrorMessage
  | BalanceMessage
  | GiftConfirmedMessage
  | GiftRejectedMessage
  | GiftReceivedMessage
  | GiftOfferMessage
  | GiftAcceptedMessage
  | GiftVoidedMessage
  | FestivalFramedMessage
  | BalanceChangedMessage
  | RoomSnapshotMessage
  | RoomLeftMessage
  | RoomLikedMessage
  | LikesLevelMessage
  | RoomRankMessage
  | RoomBoardMessage
  | RoomFrameMessage
  | GroupSnapshotMessage
  | GroupAppliedMessage
  | GroupClosedMessage
  | GroupLeftMessage
  | GroupPostedMessage
  | GroupMessagesMessage
  | GroupManagedMessage
  | GroupInvitedMessage
  | GroupPollMessage
  | GroupMentionMessage
  | EnvelopeSentMessage
  | EnvelopeGrabbedMessage
  | GroupFrameMessage
  | PopularityPointsMessage
  | PopularityUsedMessage
  | PopularityUseStateMessage
  | PopularityDashboardMessage
  | RiskNoticeMessage
  | NotesInfoMessage
  | NotesRedeemedMessage;

/** Message type name → its interface. */
export interface ServerMessages {
  "welcome": WelcomeMessage;
  "pong": PongMessage;
  "error": ErrorMessage;
  "balance": BalanceMessage;
  "gift.confirmed": GiftConfirmedMessage;
  "gift.rejected": GiftRejectedMessage;
  "gift.received": GiftReceivedMessage;
  "gift.offer": GiftOfferMessage;
  "gift.accepted": GiftAcceptedMessage;
  "gift.voided": GiftVoidedMessage;
  "festival.framed": FestivalFramedMessage;
  "balance.changed": BalanceChangedMessage;
  "room.snapshot": RoomSnapshotMessage;
  "room.left": RoomLeftMessage;
  "room.liked": RoomLikedMessage;
  "likes.level": LikesLevelMessage;
  "room.rank": RoomRankMessage;
  "room.board": RoomBoardMessage;
  "room.frame": RoomFrameMessage;
  "group.snapshot": GroupSnapshotMessage;
  "group.applied": GroupAppliedMessage;
  "group.closed": GroupClosedMessage;
  "group.left": GroupLeftMessage;
  "group.posted": GroupPostedMessage;
  "group.messages": GroupMessagesMessage;
  "group.managed": GroupManagedMessage;
  "group.invited": GroupInvitedMessage;
  "group.poll": GroupPollMessage;
  "group.mention": GroupMentionMessage;
  "envelope.sent": EnvelopeSentMessage;
  "envelope.grabbed": EnvelopeGrabbedMessage;
  "group.frame": GroupFrameMessage;
  "popularity.points": PopularityPointsMessage;
  "popularity.used": PopularityUsedMessage;
  "popularity.use.state": PopularityUseStateMessage;
  "popularity.dashboard": PopularityDashboardMessage;
  "risk.notice": RiskNoticeMessage;
  "notes.info": NotesInfoMessage;
  "notes.redeemed": NotesRedeemedMessage;
}
export type ServerType = keyof ServerMessages;

// ---- codes ----------------------------------------------------------------------------

/** Codes of `error` replies (the connection stays open). */
export type ErrorCode =
  | "bad_json"
  | "binary_frame"
  | "frame_too_large"
  | "unknown_type"
  | "missing_field"
  | "unknown_field"
  | "bad_field"
  | "already_authenticated"
  | "too_many_pending"
  | "rate_limited"
  | "overloaded"
  | "unavailable"
  | "internal"
  | "not_streamer"
  | "room_unknown"
  | "not_live"
  | "too_many_rooms"
  | "not_registered"
  | "timeout"
  | "group_unknown"
  | "group_full"
  | "not_eligible"
  | "invite_invalid"
  | "group_removed"
  | "not_member"
  | "not_group_admin"
  | "group_violation"
  | "group_muted"
  | "too_many_groups"
  | "poll_unknown"
  | "poll_id_conflict"
  | "poll_closed"
  | "already_voted"
  | "bad_choice"
  | "envelope_unknown"
  | "envelope_empty"
  | "envelope_expired"
  | "envelope_id_conflict"
  | "envelope_insufficient"
  | "not_festival"
  | "frame_needs_gift"
  | "account_banned"
  | "envelope_asset"
  | "balance_full"
  | "owner_cannot_leave"
  | "too_many_invites"
  | "too_many_polls"
  | "too_many_envelopes"
  | "insufficient_points"
  | "points_frozen"
  | "use_limit"
  | "category_mismatch"
  | "not_enough_followers"
  | "not_mature"
  | "content_taken"
  | "targeting_region"
  | "targeting_age"
  | "targeting_gender"
  | "targeting_interests"
  | "use_id_conflict"
  | "use_unknown"
  | "use_started"
  | "insufficient_cards"
  | "points_full"
  | "insufficient_coin"
  | "buy_unit"
  | "buy_id_conflict"
  | "exchange_unit"
  | "exchange_id_conflict"
  | "set_incomplete"
  | "redemption_id_conflict"
  | "set_reward_full"
  | "risk_restricted"
  | "risk_frozen"
  | "risk_banned"
  | "settlement_failed";
/** Codes of `gift.rejected`. */
export type RejectionCode =
  | "self_gift"
  | "unknown_asset"
  | "not_transferable"
  | "sender_unknown"
  | "recipient_unknown"
  | "sender_banned"
  | "recipient_banned"
  | "real_name_required"
  | "not_following"
  | "follow_too_recent"
  | "blocked"
  | "daily_limit"
  | "pair_limit"
  | "insufficient_balance"
  | "amount_too_large"
  | "accept_balance_full"
  | "offers_full"
  | "gift_id_conflict"
  | "offer_not_found"
  | "not_group_member"
  | "no_such_room"
  | "offer_accepted"
  | "offer_declined"
  | "offer_expired"
  | "sender_restricted"
  | "sender_frozen"
  | "approval_pending"
  | "approval_denied"
  | "operator_voided";
/** Every close code a client can see. */
export type CloseCode =
  | 1000
  | 1001
  | 1002
  | 1005
  | 1006
  | 1007
  | 1009
  | 1011
  | 1012
  | 1013
  | 1014
  | 4000
  | 4001
  | 4002
  | 4003
  | 4004
  | 4005
  | 4008
  | 4009
  | 4010
  | 4011
  | 4012
  | 4013;

export declare const PROTOCOL_VERSION: 1;
/** Each close code's reason and reconnect advice. */
export declare const CLOSE_CODES: Readonly<Record<CloseCode, Readonly<{ reason: string; reconnect: boolean }>>>;

// ---- the client ------------------------------------------------------------------------

export interface Verdict {
  /** pass the frame on (to a waiting request or as an event) */
  deliver: boolean;
  /** the newest event seq seen, this frame included */
  lastSeq: number;
}

/** Anything with a `type`: a frame as parsed (the pure rules take any). */
export interface Frame {
  type: string;
  [field: string]: unknown;
}

/** The close code's reconnect advice (a code not in CLOSE_CODES is final). */
export declare function shouldReconnect(code: number): boolean;
/** Where event numbering stands after a welcome (`since`: what the connection resumed from). */
export declare function seqAfterWelcome(welcome: WelcomeMessage, since: number | null | undefined): number;
/** Whether the offers known before a connection still stand (a recovered resume). */
export declare function keepsOffers(welcome: WelcomeMessage, since: number | null | undefined): boolean;
/** Pass a frame on or drop it (an event seen already), and the newest seq seen. */
export declare function accept(lastSeq: number, msg: Frame | ServerMessage, isReply: boolean): Verdict;
/** The offers still waiting after a frame passed on, by transfer id (a new object). */
export declare function trackOffers(
  offers: Readonly<Record<string, GiftOfferMessage>>, msg: Frame | ServerMessage,
): Record<string, GiftOfferMessage>;
/** The pause after failed attempt `attempt` (0 first), `jitter` a uniform draw in [0, 1). */
export declare function backoff(attempt: number, base: number, max: number, jitter: number): number;
/** The user a token names, or null when it is not a giftwire token. */
export declare function userOfToken(token: string): string | null;
/** A fresh id for a gift or an envelope (32 hex digits). */
export declare function newId(): string;

/** A request got no reply: not connected, the connection was lost first (send it again once
 * reconnected: gift ids make that safe), or none came in time; or `balances()` was refused
 * (`code` is then the refusal's). */
export declare class ConnectionError extends Error {
  readonly code: "disconnected" | "timeout" | "closed" | string;
  constructor(message: string, code?: string);
}

/** Where the last seq and the waiting offers are kept (localStorage by default). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface ClientOptions {
  /** reconnect by itself when a close code says to (default true) */
  autoReconnect?: boolean;
  /** attempts per outage before giving up (default 8, as protocol/client.py; Infinity: never) */
  maxAttempts?: number;
  /** first pause between attempts (default 100 ms), doubling up to `maxDelayMs` (5000), ±50 % */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** a request without a reply fails after this (default 10000 ms) */
  requestTimeoutMs?: number;
  /** an attempt without a welcome fails after this (default 10000 ms) */
  connectTimeoutMs?: number;
  /** a connection lost sooner than this after its welcome counts as a failed attempt: it
   * backs off and counts toward maxAttempts (default 5000 ms) */
  stableMs?: number;
  /** the clock stableMs is measured with (default Date.now) */
  now?: () => number;
  /** where the last seq is kept across page reloads (default localStorage; null: nowhere) */
  storage?: StorageLike | null;
  /** the storage key (default `giftwire:<user of the token>` for a token string;
   * `giftwire:default` when the token is a function: pass one per user then) */
  storageKey?: string;
  /** resume from this seq on the first connection instead of the stored one (null: fresh) */
  since?: number | null;
  /** the WebSocket class (default globalThis.WebSocket) */
  WebSocket?: typeof WebSocket;
  /** uniform draws in [0, 1) for the jitter (default Math.random) */
  random?: () => number;
}

export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface LifecycleEvents {
  /** welcomed: `resumed` when every missed event follows (else re-read what you show) */
  open: { welcome: WelcomeMessage; resumed: boolean; reconnect: boolean };
  /** the connection ended; `final` when no reconnection follows */
  close: { code: number; reason: string; final: boolean };
  /** the next attempt starts in `delayMs` */
  reconnecting: { attempt: number; delayMs: number; code: number };
  state: ClientState;
}

type Fields<K extends ClientType> = Omit<ClientMessages[K], "type" | "id">;
type Refusal = ErrorMessage;

export declare class GiftwireClient {
  constructor(url: string, token: string | (() => string | Promise<string>), options?: ClientOptions);
  readonly url: string;
  /** the newest event seq seen (sent as `since` on the next connection) */
  readonly lastSeq: number;
  readonly welcome: WelcomeMessage | null;
  readonly state: ClientState;
  readonly reconnects: number;
  /** events dropped because their seq was seen already (a server keeping its promise: 0) */
  readonly duplicates: number;
  /** rooms joined and groups opened: joined and opened again after every reconnect */
  readonly rooms: ReadonlySet<string>;
  readonly groups: ReadonlySet<string>;
  /** the offers waiting for your answer, oldest first (kept across reloads) */
  readonly offers: GiftOfferMessage[];

  on<K extends ServerType>(type: K, handler: (event: ServerMessages[K]) => void): () => void;
  on<K extends keyof LifecycleEvents>(type: K, handler: (event: LifecycleEvents[K]) => void): () => void;
  on(type: "*", handler: (event: ServerMessage) => void): () => void;
  off(type: string, handler: (event: never) => void): void;

  connect(): Promise<WelcomeMessage>;
  close(): void;
  setToken(token: string | (() => string | Promise<string>)): void;
  /** forget the stored seq and the offers, stored and in memory (on logout: after `close()`,
   * or a later frame stores the seq again) */
  forget(): void;

  request<K extends ClientType>(
    type: K, fields?: Fields<K>, options?: { timeoutMs?: number },
  ): Promise<ServerMessage>;
  ping(): Promise<PongMessage>;
  /** your balances; a refusal (`error`: `not_registered`, `rate_limited`, ...) rejects with a
   * ConnectionError carrying its code */
  balances(): Promise<Record<string, number>>;
  sendGift(to: string, asset: string, count: number, options?: {
    giftId?: string; room?: string; group?: string; timeoutMs?: number;
  }): Promise<GiftConfirmedMessage | GiftRejectedMessage | Refusal>;
  acceptOffer(offerId: string): Promise<GiftReceivedMessage | GiftRejectedMessage | Refusal>;
  declineOffer(offerId: string): Promise<GiftVoidedMessage | GiftRejectedMessage | Refusal>;
  joinRoom(room: string): Promise<RoomSnapshotMessage | Refusal>;
  leaveRoom(room: string): Promise<RoomLeftMessage | Refusal>;
  like(room: string, count: number): Promise<RoomLikedMessage | Refusal>;
  joinGroup(group: string, invite?: string): Promise<GroupSnapshotMessage | GroupAppliedMessage | Refusal>;
  openGroup(group: string): Promise<GroupSnapshotMessage | Refusal>;
  closeGroup(group: string): Promise<GroupClosedMessage | Refusal>;
  sendEnvelope(group: string, asset: string, total: number, shares: number, options?: {
    envelope?: string; timeoutMs?: number;
  }): Promise<EnvelopeSentMessage | Refusal>;
  grabEnvelope(
    group: string, envelope: string, options?: { timeoutMs?: number },
  ): Promise<EnvelopeGrabbedMessage | Refusal>;
  /** The note economy's published odds, which kinds are in stock, what a set is and earns. */
  noteOdds(options?: { timeoutMs?: number }): Promise<NotesInfoMessage | Refusal>;
  /** Redeem complete note-card sets (`redemption`: your idempotent id; `sets` default 1). */
  redeemSets(
    redemption: string, options?: { sets?: number; timeoutMs?: number },
  ): Promise<NotesRedeemedMessage | Refusal>;
}
