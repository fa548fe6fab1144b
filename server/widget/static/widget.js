// The giftwire widget: balances, a gift picker with pending → confirmed / rejected, gifts
// arriving live, offers to accept or decline, red envelopes in a group, and a live room's
// gift feed, board, wish and like button. Configured by its URL (query or #fragment) and/or
// by postMessage from the page that embeds it: see docs/widget.md.
import { CLOSE_CODES, GiftwireClient, newId, userOfToken } from "./giftwire.js";
import { EFFECTS_ZH, REASONS_EN, REASONS_ZH, STRINGS } from "./i18n.js";

const ID = /^[A-Za-z0-9_-]{1,64}$/;
const KIND_ORDER = ["do", "re", "mi", "fa", "sol", "la", "ti", "rare"];
const LIST_MAX = 50; // entries kept per list
const LIKE_BATCH_MAX = 50; // taps one room.like may carry (protocol/rooms.py)
// taps go out at most this often, each batch the taps since the last: a fixed window, so a
// steady tapper's batch stays small (the server counts a batch as arriving at once, and more
// than its speed rule allows in a second would be refused and reported as too fast)
const LIKE_FLUSH_MS = 400;
const SETTLE_TIMEOUT_MS = 70000; // the server answers `timeout` after 60 s itself
const RETRYABLE = new Set(["disconnected", "closed"]);

// ---- configuration ------------------------------------------------------------------------

function readParams() {
  const out = {};
  for (const source of [location.search, location.hash.replace(/^#/, "")]) {
    for (const [k, v] of new URLSearchParams(source)) out[k] = v;
  }
  return out;
}

const params = readParams();
const idOrNull = (v) => (typeof v === "string" && ID.test(v) ? v : null);
const ctx = {
  token: typeof params.token === "string" && params.token ? params.token : null,
  group: idOrNull(params.group),
  room: idOrNull(params.room),
  to: idOrNull(params.to),
  invite: idOrNull(params.invite), // an invite link's code, filled in for the join
};
// if given: the only origin whose messages count, as the browser spells origins (a trailing
// slash or a path in the parameter would otherwise make every message look foreign)
const hostOrigin = originOf(params.origin);
let learnedOrigin = null; // the origin of the host's `giftwire:init`

function originOf(raw) {
  if (!raw) return null;
  try {
    return new URL(raw).origin;
  } catch {
    return raw; // not a URL: compared as given, so nothing matches it
  }
}

function pickLang(wanted) {
  const choice = (wanted || navigator.languages?.[0] || navigator.language || "en").toLowerCase();
  return choice.startsWith("zh") ? "zh" : "en";
}
let lang = pickLang(params.lang);

// ---- words --------------------------------------------------------------------------------

function t(key, vars = {}) {
  const text = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

const kindOf = (asset) => (asset.startsWith("note.") ? asset.slice(5) : asset);

/** A refusal in words: the server's message (English) or its Chinese. */
function reasonOf(msg) {
  if (!msg || typeof msg !== "object") return t("lost");
  if (msg instanceof Error) { // the client's: not connected, lost, or no answer in time
    if (msg.code !== "timeout") return t("lost");
    return lang === "zh" ? REASONS_ZH.timeout : "no answer in time";
  }
  if (lang === "zh" && REASONS_ZH[msg.code]) return REASONS_ZH[msg.code];
  return REASONS_EN[msg.code] ?? (msg.message || msg.code || "?");
}

/** Words decided now but said in the language of the moment they are shown. */
const say = (key, vars = {}) => () => t(key, vars);
const why = (msg) => () => reasonOf(msg);
const words = (w) => (typeof w === "function" ? w() : w ?? "");

// ---- state --------------------------------------------------------------------------------

const model = {
  user: null,
  connection: "connecting",
  closed: null, // {code} once the connection ended for good
  balances: {},
  balanceSeq: {}, // asset → seq of the event that set it (a retried reply carries an old one)
  sent: [], // newest first: {giftId, to, asset, count, state, reason, room, group}
  incoming: [], // newest first: {tid, from, asset, count, room, note}
  notice: "",
  offerStatus: "", // what became of the offer the user last answered
  sets: null, // {kinds, reward: {asset, amount}} once `notes.get` answered
  setsStatus: "",
  redeeming: false,
  group: { joined: null, role: null, envelopes: new Map(), activity: [], status: "", joinStatus: "",
    grab: "", sending: false },
  room: { joined: false, live: false, audience: 0, streamer: null, board: [], wish: null,
    feed: [], likes: null, mine: null, pending: 0, inFlight: false, timer: null, status: "" },
};

const $ = (id) => document.getElementById(id);
let client = null;
let owner = null; // the user of the first token: the widget (its storage, its lists) is theirs

// ---- rendering ----------------------------------------------------------------------------

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    draw();
  });
}

/** Make `list`'s children the rendering of `items`, reusing the element of each key (so
 * focus and screen-reader position stay on a button that is still there). */
function syncList(list, items, keyOf, make, update) {
  const existing = new Map([...list.children].map((el) => [el.dataset.key, el]));
  let prev = null;
  for (const item of items) {
    const key = String(keyOf(item));
    let el = existing.get(key);
    if (el) existing.delete(key);
    else {
      el = make(item);
      el.dataset.key = key;
    }
    update(el, item);
    const want = prev ? prev.nextSibling : list.firstChild;
    if (want !== el) list.insertBefore(el, want);
    prev = el;
  }
  for (const el of existing.values()) el.remove();
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "role" || k.startsWith("data-") || k.startsWith("aria-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function noteAssets() {
  const assets = Object.keys(model.balances).filter((a) => a.startsWith("note.") && model.balances[a] > 0);
  const rank = (a) => {
    const i = KIND_ORDER.indexOf(kindOf(a));
    return i < 0 ? KIND_ORDER.length : i;
  };
  return assets.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function fillKinds(select) {
  const assets = noteAssets();
  const keep = select.value;
  syncList(select, assets, (a) => a, (a) => el("option", { value: a }),
    (opt, a) => setText(opt, `${kindOf(a)} (${model.balances[a]})`));
  if (assets.includes(keep)) select.value = keep;
}

function drawStatic() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) setText(node, t(node.dataset.i18n));
  for (const node of document.querySelectorAll("[data-i18n-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nLabel));
  }
  $("lang").lang = lang === "zh" ? "en" : "zh-CN";
  document.title = t("title");
}

function statusText() {
  if (!ctx.token) return t("waiting_token");
  switch (model.connection) {
    case "open": return t("online", { user: model.user });
    case "reconnecting": return t("reconnecting");
    case "closed": {
      const code = model.closed?.code;
      const why = CLOSE_CODES[code]?.reason;
      const words = why && STRINGS.en[`closed_${why}`] ? t(`closed_${why}`) : (why ?? "");
      return t("offline", { reason: `${words} (${code})`.trim() });
    }
    default: return t("connecting");
  }
}

function sentText(g) {
  const vars = { count: g.count, kind: kindOf(g.asset), to: g.to, reason: words(g.reason) };
  if (g.state === "voided") {
    return t({ declined: "voided_declined", denied: "voided_denied" }[g.reason] || "voided_timeout", vars);
  }
  // held for a third party (the recipient's region's rule): not the recipient's to accept
  if (g.approval && (g.state === "awaiting" || g.state === "accepted")) {
    return t(`${g.state}_approval`, vars);
  }
  return t(g.state, vars);
}

function draw() {
  document.body.dataset.connection = model.connection;
  setText($("status"), statusText());

  // balances and the pickers
  const assets = noteAssets();
  syncList($("balances"), assets, (a) => a,
    (a) => el("li", { "data-asset": a }, el("span", { class: "kind" }), " ", el("span", { class: "count" })),
    (li, a) => {
      setText(li.querySelector(".kind"), kindOf(a));
      setText(li.querySelector(".count"), String(model.balances[a]));
      li.setAttribute("aria-label", t("card_count", { count: model.balances[a], kind: kindOf(a) }));
    });
  if (!assets.length) {
    syncList($("balances"), ["none"], (x) => x, () => el("li", { class: "meta" }), (li) => setText(li, t("no_cards")));
  }
  fillKinds($("kind"));
  fillKinds($("env-kind"));
  for (const id of ["kind", "send", "env-kind"]) $(id).disabled = assets.length === 0;
  $("send-envelope").disabled = assets.length === 0 || model.group.sending;

  // gifts sent
  $("sent-h").hidden = model.sent.length === 0;
  syncList($("sent"), model.sent.slice(0, LIST_MAX), (g) => g.giftId,
    (g) => el("li", { "data-gift": g.giftId }),
    (li, g) => {
      li.dataset.state = g.state;
      li.dataset.states = g.history.join(" "); // every state it went through
      setText(li, sentText(g));
    });

  // complete sets (the note economy): how many, and a button that redeems one
  $("sets-section").hidden = model.sets === null;
  if (model.sets) {
    const { kinds, reward } = model.sets;
    const complete = Math.min(...kinds.map((a) => model.balances[a] ?? 0));
    const vars = { count: complete, kinds: kinds.map(kindOf).join(" "),
      reward: `${reward.amount} ${kindOf(reward.asset)}` };
    setText($("sets-have"), t("sets_have", vars));
    setText($("redeem-set"), t("redeem_set"));
    $("redeem-set").disabled = complete < 1 || model.redeeming;
    setText($("sets-status"), words(model.setsStatus));
  }

  // offers (the client keeps them, across reloads too)
  const offers = client ? client.offers : [];
  $("offers-section").hidden = offers.length === 0;
  syncList($("offers"), offers, (o) => o.transfer_id,
    (o) => {
      const li = el("li", { "data-offer": o.transfer_id }, el("span", { class: "text" }),
        el("button", { type: "button", class: "accept" }), el("button", { type: "button", class: "decline" }));
      li.querySelector(".accept").addEventListener("click", () => answerOffer(o, true, li));
      li.querySelector(".decline").addEventListener("click", () => answerOffer(o, false, li));
      return li;
    },
    (li, o) => {
      const vars = { from: o.from, count: o.count, kind: kindOf(o.asset) };
      // held for a third party's approval (a region's rule): told, not theirs to answer
      setText(li.querySelector(".text"), t(o.approval === true ? "offer_approval" : "offer", vars));
      const [yes, no] = li.querySelectorAll("button");
      yes.hidden = no.hidden = o.approval === true;
      setText(yes, t("accept"));
      setText(no, t("decline"));
      yes.setAttribute("aria-label", t("accept_label", vars));
      no.setAttribute("aria-label", t("decline_label", vars));
    });

  // gifts received
  syncList($("incoming"), model.incoming.slice(0, LIST_MAX), (g) => g.tid,
    (g) => el("li", { "data-transfer": g.tid }),
    (li, g) => setText(li, g.note ? t(g.note, { from: g.from, count: g.count, kind: kindOf(g.asset) })
      : t(g.room ? "received_room" : "received", { from: g.from, count: g.count, kind: kindOf(g.asset) })));
  $("incoming-empty").hidden = model.incoming.length > 0;
  setText($("send-status"), words(model.notice));
  setText($("offer-status"), words(model.offerStatus));

  if (ctx.group) drawGroup();
  if (ctx.room) drawRoom();
}

function drawGroup() {
  const g = model.group;
  $("group-section").hidden = false;
  setText($("group-h"), t("group_heading", { group: ctx.group }));
  $("group-join").hidden = g.joined !== false;
  $("envelope-form").hidden = g.joined !== true;
  const envelopes = [...g.envelopes.values()].sort((a, b) => b.order - a.order).slice(0, LIST_MAX);
  syncList($("envelopes"), envelopes, (e) => e.envelope,
    (e) => {
      const li = el("li", { "data-envelope": e.envelope }, el("span", { class: "text" }),
        el("button", { type: "button", class: "grab" }), el("span", { class: "mine" }));
      li.querySelector(".grab").addEventListener("click", () => grab(e.envelope, li));
      return li;
    },
    (li, e) => {
      li.dataset.state = e.mine !== null ? "grabbed" : e.state;
      const vars = { from: e.from, total: e.total, kind: kindOf(e.asset), left: e.left_shares, shares: e.shares };
      const key = e.state === "done" ? "envelope_done" : e.state === "expired" ? "envelope_expired" : "envelope";
      setText(li.querySelector(".text"), t(key, vars));
      const button = li.querySelector(".grab");
      setText(button, t("grab"));
      button.setAttribute("aria-label", t("grab_label", vars));
      button.hidden = e.state !== "open" || e.mine !== null;
      setText(li.querySelector(".mine"), e.mine !== null ? t("grabbed", { share: e.mine, kind: kindOf(e.asset) }) : "");
    });
  setText($("grab-status"), words(g.grab));
  setText($("envelope-status"), words(g.status));
  setText($("join-status"), words(g.joinStatus));
  syncList($("activity"), g.activity.slice(0, LIST_MAX), (a) => a.key, () => el("li"),
    (li, a) => setText(li, t(a.text, a.vars)));
}

function drawRoom() {
  const r = model.room;
  $("room-section").hidden = false;
  const live = r.live ? t("live", { audience: r.audience }) : t("not_live");
  setText($("room-live"), r.streamer ? `${live} · ${t("streamer", { streamer: r.streamer })}` : live);
  const wish = r.wish;
  if (wish) {
    const vars = { progress: wish.progress, target: wish.target, kind: kindOf(wish.asset) };
    setText($("wish-text"), t(wish.progress >= wish.target ? "wish_reached" : "wish", vars));
    $("wish-progress").max = wish.target;
    $("wish-progress").value = Math.min(wish.progress, wish.target);
    $("wish-progress").hidden = false;
  } else {
    setText($("wish-text"), t("no_wish"));
    $("wish-progress").hidden = true;
  }
  setText($("like-pending"), r.pending ? `+${r.pending}` : "");
  // the button's label stands for its content: the taps waiting to go are said in it too
  $("like").setAttribute("aria-label", t("like_label") + (r.pending ? ` (+${r.pending})` : ""));
  const lines = [];
  if (r.likes !== null) lines.push(t("likes", { likes: r.likes }));
  if (r.mine) lines.push(t("your_likes", r.mine));
  if (r.mine?.refused) lines.push(t("like_refused", r.mine));
  setText($("likes-text"), lines.join(" · "));
  setText($("room-status"), words(r.status));
  syncList($("board"), r.board.slice(0, 10), (b) => b.user, () => el("li"),
    (li, b) => setText(li, t("board_row", b)));
  syncList($("feed"), r.feed.slice(0, LIST_MAX), (f) => f.key,
    (f) => el("li", { "data-transfer": f.key }, el("span", { class: "text" })),
    (li, f) => {
      if (f.effect) {
        const effect = lang === "zh" ? EFFECTS_ZH[f.effect] ?? f.effect : f.effect;
        setText(li.querySelector(".text"), t("effect", { ...f, effect }));
        return;
      }
      setText(li.querySelector(".text"), t("feed_gift", { from: f.from, to: f.to, count: f.count, kind: kindOf(f.asset) }));
      let badge = li.querySelector(".badge");
      if (f.badge && !badge) {
        badge = el("span", { class: "badge", role: "img" }); // (a plain span's label is not read)
        li.append(badge);
      }
      if (badge) {
        setText(badge, t("badge", { level: f.badge }));
        badge.setAttribute("aria-label", t("badge_label", { level: f.badge }));
      }
    });
}

// ---- what the server says -----------------------------------------------------------------

/** Any frame with an `asset` and the `balance` after it (a gift, a grant, an envelope). */
function noteBalance(msg) {
  if (!Number.isInteger(msg.balance) || typeof msg.asset !== "string") return;
  const seq = Number.isInteger(msg.seq) ? msg.seq : Infinity;
  if (seq !== Infinity && seq <= (model.balanceSeq[msg.asset] ?? -1)) return; // an older figure
  model.balances[msg.asset] = msg.balance;
  if (seq !== Infinity) model.balanceSeq[msg.asset] = seq;
}

/** Move a sent gift to `state` (its history keeps every state it went through). */
function setState(g, state) {
  if (g.state !== state) g.history.push(state);
  g.state = state;
}

function sentGift(giftId) {
  return model.sent.find((g) => g.giftId === giftId);
}

/** Whether a transfer is one we sent (`<sender>:<gift id>`). */
const mine = (msg) => Boolean(model.user) && String(msg.transfer_id).startsWith(`${model.user}:`);

/** A gift of ours (a reply, or an event: another tab's gift, or one settled while away). */
function ourGift(msg, state) {
  let g = sentGift(msg.gift_id);
  if (!g) {
    g = { giftId: msg.gift_id, to: msg.to ?? "?", asset: msg.asset ?? "", count: msg.count ?? 0,
      state: null, history: [] };
    if (!g.asset) return null;
    model.sent.unshift(g);
  }
  const unknown = g.state === "unknown";
  // an offer the host heard was awaiting an answer: it hears the answer too
  const answered = g.state === "awaiting" && (state === "accepted" || state === "voided");
  if (g.state !== "accepted" || state === "accepted") setState(g, state); // a late copy changes nothing
  if (unknown || answered) { // its request had no answer in time: the host hears the outcome now
    postSent(g, msg);
  }
  return g;
}

/** No answer in time: the gift may still settle (its event then says how, and is posted). */
function unanswered(g) {
  setState(g, "unknown");
  g.reason = "";
  model.notice = () => sentText(g); // said in the live status line too, not only in the list
}

function onGiftReply(g, reply) {
  noteBalance(reply);
  if (reply.type === "error" && reply.code === "timeout") {
    unanswered(g);
    return;
  }
  if (reply.type === "gift.confirmed") {
    // (an offer may have been accepted already, its event ahead of this reply)
    if (g.state !== "accepted" && g.state !== "voided") {
      setState(g, reply.delivery === "pending" ? "awaiting" : "confirmed");
      if (reply.approval) g.approval = true;
    }
  } else {
    setState(g, "rejected");
    g.reason = why(reply);
  }
  model.notice = () => sentText(g); // the form's status line says how it went (aria-live)
  postSent(g, reply);
}

/** Tell the host how a gift of ours stands (`msg`: the reply or event that said so). */
function postSent(g, msg) {
  const sent = { gift_id: g.giftId, to: g.to, asset: g.asset, count: g.count, state: g.state };
  if (g.state === "rejected" && msg.code) sent.code = msg.code;
  if (g.state === "awaiting" && (g.approval || msg.approval)) sent.approval = true;
  if (g.state === "voided" && msg.reason) sent.reason = msg.reason;
  postHost("sent", sent);
}

function addIncoming(msg, note = null) {
  if (model.incoming.some((g) => g.tid === msg.transfer_id)) return;
  model.incoming.unshift({ tid: msg.transfer_id, from: msg.from, asset: msg.asset, count: msg.count,
    room: msg.room ?? null, note });
  postHost("received", { transfer_id: msg.transfer_id, from: msg.from, asset: msg.asset, count: msg.count });
}

function applyRoomSnapshot(s) {
  const r = model.room;
  lastTo.set(`room:${s.room}`, Math.max(s.rseq, lastTo.get(`room:${s.room}`) ?? 0));
  r.joined = true;
  r.live = s.live;
  r.audience = s.audience;
  r.streamer = s.streamer ?? null;
  r.board = s.board;
  r.wish = s.wish ?? null;
  r.likes = s.live ? s.likes ?? 0 : null;
  if (!ctx.to && r.streamer && r.streamer !== model.user && !$("to").value) $("to").value = r.streamer;
}

/** Frames number their events: one that does not continue the last shows a gap, which
 * the state request fills (frames are at most once). */
const lastTo = new Map();
function checkGap(key, frame, fill) {
  const last = lastTo.get(key);
  lastTo.set(key, frame.to);
  if (last !== undefined && frame.from > last + 1) fill();
}

function applyRoomFrame(frame) {
  const r = model.room;
  checkGap(`room:${frame.room}`, frame, () => refill("room.state", { room: frame.room }));
  for (const e of frame.events) {
    if (e.kind === "live") {
      // a new session starts with an empty board and no likes; an ended one's board stays
      if (e.live && !r.live) { r.board = []; r.likes = 0; }
      r.live = e.live;
      if (!e.live) r.wish = null;
    } else if (e.kind === "audience") r.audience = e.audience;
    else if (e.kind === "gift") {
      if (!r.feed.some((f) => f.key === e.transfer_id)) {
        r.feed.unshift({ key: e.transfer_id, from: e.from, to: e.to, asset: e.asset, count: e.count,
          badge: e.badge ?? 0 });
      }
    } else if (e.kind === "wish") {
      r.wish = e.state === "closed" || e.state === "ended" ? null
        : { wish: e.wish, asset: e.asset, target: e.target, progress: e.progress };
    } else if (e.kind === "likes") r.likes = e.likes;
    else if (e.kind === "effect") r.feed.unshift({ key: `effect:${e.effect}:${e.likes}`, effect: e.effect, likes: e.likes });
  }
  r.feed.length = Math.min(r.feed.length, LIST_MAX);
}

let envelopeOrder = 0;
function upsertEnvelope(e) {
  const envs = model.group.envelopes;
  const old = envs.get(e.envelope);
  envs.set(e.envelope, {
    order: old?.order ?? ++envelopeOrder, mine: old?.mine ?? null, state: old?.state ?? "open",
    left_shares: e.shares, left: e.total, ...old, ...e,
  });
}

function applyGroupSnapshot(s) {
  const g = model.group;
  lastTo.set(`group:${s.group}`, Math.max(s.gseq, lastTo.get(`group:${s.group}`) ?? 0));
  g.joined = true;
  g.role = s.role;
  const open = new Set();
  for (const e of s.envelopes) {
    upsertEnvelope({ envelope: e.envelope, from: e.from, asset: e.asset, total: e.total,
      shares: e.shares, left: e.left, left_shares: e.left_shares, state: "open" });
    open.add(e.envelope);
  }
  for (const [name, e] of g.envelopes) if (!open.has(name) && e.state === "open") e.state = "done";
}

function activity(text, vars, key) {
  const a = model.group.activity;
  if (a.some((x) => x.key === key)) return;
  a.unshift({ key, text, vars });
  a.length = Math.min(a.length, LIST_MAX);
}

function applyGroupFrame(frame) {
  const envs = model.group.envelopes;
  checkGap(`group:${frame.group}`, frame, () => refill("group.state", { group: frame.group }));
  for (const e of frame.events) {
    if (e.kind === "envelope") {
      upsertEnvelope({ envelope: e.envelope, from: e.from, asset: e.asset, total: e.total, shares: e.shares });
    } else if (e.kind === "grab") {
      const env = envs.get(e.envelope);
      if (env) {
        env.left = e.left;
        env.left_shares = e.left_shares;
        if (e.user === model.user) env.mine = e.share;
      }
      activity("grab_event", { user: e.user, share: e.share, kind: kindOf(env?.asset ?? "") },
        `grab:${e.envelope}:${e.user}`);
    } else if (e.kind === "envelope_done") {
      const env = envs.get(e.envelope);
      if (env) env.state = e.reason === "expired" ? "expired" : "done";
    } else if (e.kind === "gift") {
      activity("group_gift", { from: e.from, to: e.to, count: e.count, kind: kindOf(e.asset) }, `gift:${e.transfer_id}`);
    }
  }
}

async function refill(type, fields) {
  try {
    const reply = await client.request(type, fields);
    if (reply.type === "room.snapshot") applyRoomSnapshot(reply);
    else if (reply.type === "group.snapshot") applyGroupSnapshot(reply);
  } catch {
    // lost: the reconnection sends the snapshot anyway
  }
  render();
}

function onEvent(msg) {
  noteBalance(msg);
  switch (msg.type) {
    case "gift.received":
      addIncoming(msg);
      break;
    case "gift.confirmed": {
      const g = ourGift(msg, msg.delivery === "pending" ? "awaiting" : "confirmed");
      if (g && msg.approval) g.approval = true;
      break;
    }
    case "gift.rejected": { // ours, or an answer to an offer (the sender's gift id)
      const g = mine(msg) ? ourGift(msg, "rejected") : null;
      if (g) g.reason = why(msg);
      break;
    }
    case "gift.accepted":
      ourGift(msg, "accepted");
      break;
    case "gift.voided": // to both sides of an offer
      if (mine(msg)) {
        const g = ourGift(msg, "voided");
        if (g) g.reason = msg.reason;
      }
      break;
    case "room.snapshot":
      if (msg.room === ctx.room) applyRoomSnapshot(msg);
      break;
    case "room.frame":
      if (msg.room === ctx.room) applyRoomFrame(msg);
      break;
    case "room.board":
      if (msg.room === ctx.room) model.room.board = msg.board;
      break;
    case "likes.level":
      if (model.room.mine) model.room.mine.level = msg.level;
      break;
    case "group.snapshot":
      if (msg.group === ctx.group) applyGroupSnapshot(msg);
      break;
    case "group.frame":
      if (msg.group === ctx.group) applyGroupFrame(msg);
      break;
    case "envelope.grabbed": {
      const env = model.group.envelopes.get(msg.envelope);
      if (env) env.mine = msg.share;
      break;
    }
    case "risk.notice": { // the risk engine acted on this account: said in words, with the date
      const until = msg.until_ms ? new Date(msg.until_ms).toLocaleString(lang === "zh" ? "zh-CN" : "en") : "";
      model.notice = say(`risk_${msg.action}_notice`, { until });
      break;
    }
    case "error":
      model.notice = why(msg);
      break;
    default:
      break;
  }
  render();
}

// ---- what the user does -------------------------------------------------------------------

async function sendGift(g) {
  if (!client || client.state !== "open") {
    setState(g, "queued"); // sent (with the same gift id) when the connection is back
    model.notice = () => sentText(g);
    render();
    return;
  }
  setState(g, "pending");
  render();
  try {
    const reply = await client.sendGift(g.to, g.asset, g.count, { giftId: g.giftId, room: g.room,
      group: g.group, timeoutMs: SETTLE_TIMEOUT_MS });
    onGiftReply(g, reply);
  } catch (err) {
    if (RETRYABLE.has(err.code)) {
      setState(g, "queued"); // the same gift id again after the reconnection: never twice
      if (client.state === "open") queueMicrotask(() => sendGift(g));
    } else if (err.code === "timeout") {
      unanswered(g);
    } else {
      setState(g, "rejected");
      g.reason = why(err);
    }
  }
  render();
}

function onSubmitGift(ev) {
  ev.preventDefault();
  const to = $("to").value.trim();
  const asset = $("kind").value;
  const count = Number($("count").value);
  if (!ID.test(to)) {
    model.notice = say("need_recipient");
    $("to").focus();
    render();
    return;
  }
  if (!asset) {
    model.notice = say("need_kind");
    render();
    return;
  }
  if (!Number.isInteger(count) || count < 1) { // (the server says when it is too many)
    model.notice = say("need_count");
    $("count").setAttribute("aria-invalid", "true");
    $("count").focus();
    render();
    return;
  }
  $("count").removeAttribute("aria-invalid");
  model.notice = "";
  const g = { giftId: newId(), to, asset, count, state: null, history: [], reason: "",
    room: ctx.room ?? undefined, group: ctx.group ?? undefined };
  model.sent.unshift(g);
  sendGift(g);
}

async function answerOffer(offer, yes, li) {
  for (const b of li.querySelectorAll("button")) b.disabled = true;
  const vars = { from: offer.from, count: offer.count, kind: kindOf(offer.asset) };
  try {
    const reply = yes ? await client.acceptOffer(offer.transfer_id) : await client.declineOffer(offer.transfer_id);
    noteBalance(reply);
    if (reply.type === "gift.received") {
      addIncoming(reply, "offer_accepted");
      model.offerStatus = say("offer_accepted", vars);
    } else if (reply.type === "gift.voided") {
      model.offerStatus = say("offer_declined", vars);
    } else {
      model.offerStatus = why(reply);
    }
  } catch (err) {
    model.offerStatus = why(err);
  }
  for (const b of li.querySelectorAll("button")) b.disabled = false;
  draw(); // now: the answered offer's buttons are gone, so focus goes to what became of it
  const focused = document.activeElement;
  if (!focused || focused === document.body) $("offer-status").focus(); // (not if it moved on)
}

/** Whether this user's application to join the group waits (the server tells the applicant
 * only in the reply: kept across reloads in the page's storage, when it has any). */
function applied(value) {
  const key = `giftwire:${owner ?? "default"}:applied:${ctx.group}`;
  try {
    if (value === true) localStorage.setItem(key, "1");
    else if (value === false) localStorage.removeItem(key);
    return localStorage.getItem(key) === "1";
  } catch {
    return false; // a sandboxed or storage-partitioned frame: only this page's reply says it
  }
}

async function openGroup() {
  try {
    const reply = await client.openGroup(ctx.group);
    if (reply.type === "group.snapshot") {
      applyGroupSnapshot(reply);
      applied(false);
    } else if (reply.code === "not_member") {
      model.group.joined = false;
      if (applied()) model.group.joinStatus = say("group_applied");
    }
    else model.group.grab = why(reply); // said where it shows (the envelope form is hidden)
  } catch (err) {
    model.group.grab = why(err);
  }
  render();
}

async function joinGroup() {
  const field = $("invite-code");
  const invite = field.value.trim();
  if (invite && !ID.test(invite)) { // said here: the server would only say `bad_field`
    field.setAttribute("aria-invalid", "true");
    model.group.joinStatus = say("need_invite");
    render();
    field.focus();
    return;
  }
  field.removeAttribute("aria-invalid");
  try {
    const reply = await client.joinGroup(ctx.group, invite || undefined);
    if (reply.type === "group.snapshot") {
      applyGroupSnapshot(reply);
      applied(false);
      model.group.grab = say("group_joined"); // said where it stays shown: the join block goes
    } else if (reply.type === "group.applied") {
      // an approval group: filed; the group's admins decide (the widget hears it on a reload)
      applied(true);
      model.group.joinStatus = say("group_applied");
    }
    else model.group.joinStatus = why(reply);
  } catch (err) {
    model.group.joinStatus = why(err);
  }
  render();
  keepFocus($("join-group"), $("grab-status"));
}

async function onSubmitEnvelope(ev) {
  ev.preventDefault();
  const asset = $("env-kind").value;
  const total = Number($("env-total").value);
  const shares = Number($("env-shares").value);
  if (!asset || !Number.isInteger(total) || !Number.isInteger(shares) || shares < 1 || total < shares) {
    model.group.status = say(!asset ? "need_kind" : "need_shares");
    render();
    return;
  }
  model.group.sending = true; // one envelope at a time (each click is a new envelope id)
  render();
  try {
    const reply = await client.sendEnvelope(ctx.group, asset, total, shares, { timeoutMs: SETTLE_TIMEOUT_MS });
    noteBalance(reply);
    if (reply.type === "envelope.sent") {
      upsertEnvelope({ envelope: reply.envelope, from: model.user, asset, total, shares });
      model.group.status = say("envelope_sent", { total, shares, kind: kindOf(asset) });
    } else {
      model.group.status = why(reply);
    }
  } catch (err) {
    model.group.status = why(err);
  }
  model.group.sending = false;
  render();
}

async function grab(envelope, li) {
  const button = li.querySelector(".grab");
  button.disabled = true;
  try {
    const reply = await client.grabEnvelope(ctx.group, envelope, { timeoutMs: SETTLE_TIMEOUT_MS });
    noteBalance(reply);
    const env = model.group.envelopes.get(envelope);
    if (reply.type === "envelope.grabbed") {
      if (env) env.mine = reply.share; // shown beside the envelope
      model.group.grab = say("grabbed", { share: reply.share, kind: kindOf(env?.asset ?? "") });
    } else {
      if (env && reply.code === "envelope_empty") env.state = "done";
      if (env && reply.code === "envelope_expired") env.state = "expired";
      model.group.grab = why(reply);
    }
  } catch (err) {
    model.group.grab = why(err);
  }
  button.disabled = false;
  render();
  keepFocus(button, $("grab-status"));
}

/** A control that was used and is now hidden (a grabbed envelope's button, a join done):
 * focus goes to the line that says how it went, not to the page's start. */
function keepFocus(used, status) {
  queueMicrotask(() => { // after the render queued before it has drawn
    const lost = document.activeElement === document.body || document.activeElement === used;
    if (used.offsetParent === null && lost) status.focus();
  });
}

async function readSets() {
  try {
    const info = await client.noteOdds();
    if (info.type === "notes.info" && info.set_kinds.length) {
      model.sets = { kinds: info.set_kinds, reward: info.set_reward };
    }
  } catch {
    // lost: the next welcome asks again
  }
  render();
}

async function redeemSet() {
  model.redeeming = true;
  model.setsStatus = "";
  render();
  try {
    // a fresh id per press: the same press retried by the client is one redemption
    const reply = await client.redeemSets(`w${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`);
    if (reply.type === "notes.redeemed") {
      Object.assign(model.balances, reply.balances);
      model.setsStatus = say("set_redeemed", { reward: `${reply.reward.amount} ${kindOf(reply.reward.asset)}` });
    } else {
      model.setsStatus = why(reply);
    }
  } catch (err) {
    model.setsStatus = why(err);
  }
  model.redeeming = false;
  render();
}

async function joinRoom() {
  try {
    const reply = await client.joinRoom(ctx.room);
    if (reply.type === "room.snapshot") {
      applyRoomSnapshot(reply);
      model.room.status = "";
    } else {
      model.room.status = why(reply); // said in the room, not under the gift form
    }
  } catch (err) {
    model.room.status = why(err);
  }
  render();
}

function tapLike() {
  const r = model.room;
  r.pending += 1;
  if (r.pending >= LIKE_BATCH_MAX) {
    clearTimeout(r.timer);
    r.timer = null;
    flushLikes();
  } else if (!r.timer) {
    r.timer = setTimeout(() => { r.timer = null; flushLikes(); }, LIKE_FLUSH_MS);
  }
  render();
}

async function flushLikes() {
  const r = model.room;
  if (r.inFlight || r.pending === 0 || !client || client.state !== "open") return;
  const count = Math.min(r.pending, LIKE_BATCH_MAX);
  r.pending -= count;
  r.inFlight = true;
  render();
  try {
    const reply = await client.like(ctx.room, count);
    if (reply.type === "room.liked") {
      r.mine = { total: reply.total, level: reply.level, refused: reply.refused };
      r.status = "";
    } else {
      r.status = why(reply);
    }
  } catch (err) {
    r.status = why(err); // likes are not idempotent: a lost batch is not sent again
  }
  r.inFlight = false;
  if (r.pending && !r.timer) r.timer = setTimeout(() => { r.timer = null; flushLikes(); }, LIKE_FLUSH_MS);
  render();
}

// ---- the host page ------------------------------------------------------------------------

function postHost(type, data = {}) {
  const target = hostOrigin ?? learnedOrigin;
  if (window.parent === window || !target) return;
  try {
    window.parent.postMessage({ type: `giftwire:${type}`, ...data }, target);
  } catch {
    // an `origin` parameter that is no origin (`127.0.0.1:8080`): nothing can go there
  }
}

function onHostMessage(ev) {
  if (window.parent === window || ev.source !== window.parent) return;
  if (hostOrigin && ev.origin !== hostOrigin) return;
  const d = ev.data;
  if (!d || typeof d !== "object" || typeof d.type !== "string") return;
  if (d.type === "giftwire:init") {
    const known = hostOrigin ?? learnedOrigin;
    learnedOrigin = ev.origin;
    // the host hears the connection's state from now on: first, the one it missed
    if (!known && client) postHost("state", { state: client.state });
    if (d.lang && !params.lang) lang = pickLang(d.lang);
    const c = d.context && typeof d.context === "object" ? d.context : {};
    if (!client) {
      ctx.group = ctx.group ?? idOrNull(c.group);
      ctx.room = ctx.room ?? idOrNull(c.room);
    }
    if (idOrNull(c.to)) {
      ctx.to = c.to;
      $("to").value = c.to;
    }
    if (typeof d.token === "string" && d.token) useToken(d.token);
    drawStatic();
    render();
  } else if (d.type === "giftwire:token" && typeof d.token === "string" && d.token) {
    useToken(d.token);
  } else if (d.type === "giftwire:context" && d.context && idOrNull(d.context.to)) {
    ctx.to = d.context.to;
    $("to").value = d.context.to;
  }
}

function useToken(token) {
  // the widget is one user's (its storage, its lists): a token for someone else is ignored,
  // from the first token on (before any welcome, too: the storage is named after it)
  if (client && owner === null) owner = userOfToken(token); // the first token it can read
  if (client && userOfToken(token) !== owner) return;
  ctx.token = token; // each connection attempt takes the newest (see start)
  if (!client) start();
  else if (client.state === "closed") client.connect().catch(() => {});
}

/** A close that refused the token the attempt carried (expired, invalid, …). */
const refusesToken = (code) => CLOSE_CODES[code]?.reason.startsWith("auth_") ?? false;

// ---- start --------------------------------------------------------------------------------

function start() {
  const url = new URL("../ws", location.href); // the gateway that served this page
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = "";
  url.hash = "";
  // The token is read at each attempt, and remembered: a refusal of a token the host has
  // replaced since (it sent the fresh one while the old was being tried) is no reason to stop.
  let tried = null;
  const token = () => (tried = ctx.token);
  // (given a function, the client cannot name its storage after the user: it is told here)
  owner = userOfToken(ctx.token);
  client = new GiftwireClient(url.toString(), token, { maxAttempts: Infinity,
    storageKey: `giftwire:${owner ?? "default"}` });
  client.on("state", (state) => {
    model.connection = state;
    postHost("state", { state });
    render();
  });
  client.on("close", (e) => {
    if (e.final && refusesToken(e.code) && tried !== ctx.token) {
      client.connect().catch(() => {}); // with the newer token
      return;
    }
    if (e.final) model.closed = { code: e.code };
    render();
  });
  client.on("open", async ({ welcome }) => {
    model.user = welcome.user;
    model.closed = null;
    // waiting to go, or sent with no answer in time: the same gift id again (its answer, never
    // a second gift), as the server's `timeout` advises
    for (const g of model.sent) if (g.state === "queued" || g.state === "unknown") sendGift(g);
    if (ctx.group && !client.groups.has(ctx.group) && model.group.joined !== false) openGroup();
    if (ctx.room && !client.rooms.has(ctx.room)) joinRoom();
    if (model.room.pending) flushLikes(); // tapped while offline
    if (model.sets === null) readSets();
    try {
      const seq = client.lastSeq;
      const balances = await client.balances();
      model.balances = { ...balances };
      for (const a of Object.keys(model.balances)) model.balanceSeq[a] = seq;
    } catch {
      // lost again: the next welcome reads them
    }
    render();
  });
  client.on("*", onEvent);
  client.connect().catch(() => {});
  render();
}

function init() {
  if (ctx.to) $("to").value = ctx.to;
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    drawStatic();
    draw();
  });
  $("send-form").addEventListener("submit", onSubmitGift);
  $("count").addEventListener("input", () => $("count").removeAttribute("aria-invalid"));
  $("envelope-form").addEventListener("submit", onSubmitEnvelope);
  $("join-group").addEventListener("click", joinGroup);
  if (ctx.invite) $("invite-code").value = ctx.invite;
  $("like").addEventListener("click", tapLike);
  $("redeem-set").addEventListener("click", redeemSet);
  window.addEventListener("message", onHostMessage);
  drawStatic();
  if (ctx.token) start();
  else render();
  if (window.parent !== window) window.parent.postMessage({ type: "giftwire:ready" }, "*");
}

init();
