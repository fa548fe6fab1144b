// Behaviour of GiftwireClient against a scripted WebSocket (no server, no network):
// `node protocol/js/test_client.mjs` exits 1 on a failure (tests/test_js_client.py runs it).
import assert from "node:assert/strict";
import { ConnectionError, GiftwireClient } from "./giftwire.js";

const TOKEN = "v1.bob.9999999999.c2ln";

/** The server's side of one scripted connection. */
class FakeSocket {
  static made = [];

  constructor(url) {
    this.url = new URL(url);
    this.sent = [];
    this.closed = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    FakeSocket.made.push(this);
  }

  send(text) {
    if (this.closed) throw new Error("closed");
    this.sent.push(JSON.parse(text));
  }

  close(code = 1000) {
    this.closed = code;
  }

  // --- the test drives these
  push(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }

  welcome(seq, recovered) {
    const w = { type: "welcome", user: "bob", protocol: 1, server_time_ms: 1, seq };
    if (recovered !== undefined) w.recovered = recovered;
    this.push(w);
  }

  drop(code, reason = "") {
    this.closed = code;
    this.onclose?.({ code, reason });
  }

  lastRequest(type) {
    return [...this.sent].reverse().find((m) => m.type === type);
  }
}

class MemoryStorage {
  constructor() {
    this.items = new Map();
  }

  getItem(k) {
    return this.items.has(k) ? this.items.get(k) : null;
  }

  setItem(k, v) {
    this.items.set(k, String(v));
  }

  removeItem(k) {
    this.items.delete(k);
  }
}

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(pred, what, ms = 2000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const got = pred();
    if (got) return got;
    await tick(2);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function client(storage = new MemoryStorage(), options = {}) {
  return new GiftwireClient("ws://gw.test/ws", TOKEN, {
    WebSocket: FakeSocket, storage, baseDelayMs: 1, maxDelayMs: 4, random: () => 0.5, ...options,
  });
}

async function open(c, seq = 0, recovered = undefined) {
  const before = FakeSocket.made.length;
  const connected = c.connect();
  const ws = await until(() => FakeSocket.made[before], "a socket");
  ws.welcome(seq, recovered);
  await connected;
  return ws;
}

const tests = {
  async "token in the query string, no since on a first connection"() {
    const c = client();
    const ws = await open(c, 5);
    assert.equal(ws.url.searchParams.get("token"), TOKEN);
    assert.equal(ws.url.searchParams.get("since"), null);
    assert.equal(c.lastSeq, 5);
    c.close();
  },

  async "replies are matched by id, whatever their order; events go to handlers"() {
    const c = client();
    const ws = await open(c, 5);
    const seen = [];
    c.on("gift.received", (e) => seen.push(["received", e.seq]));
    c.on("*", (e) => seen.push(["any", e.type]));
    const a = c.request("ping");
    const b = c.balances();
    const [pa, pb] = ws.sent.slice(-2);
    assert.notEqual(pa.id, pb.id);
    ws.push({ type: "balance", id: pb.id, balances: { "note.do": 3 } });
    ws.push({ type: "gift.received", transfer_id: "a:g", gift_id: "g", from: "a", asset: "note.do",
      count: 1, balance: 4, seq: 6 });
    ws.push({ type: "pong", id: pa.id });
    assert.deepEqual(await b, { "note.do": 3 });
    assert.deepEqual(await a, { type: "pong", id: pa.id });
    assert.deepEqual(seen, [["received", 6], ["any", "gift.received"]]);
    c.close();
  },

  async "events seen already are dropped, offers and replies pass"() {
    const c = client();
    const ws = await open(c, 5);
    const got = [];
    c.on("*", (e) => got.push(e.seq));
    ws.push({ type: "gift.received", transfer_id: "a:1", seq: 6 });
    ws.push({ type: "gift.received", transfer_id: "a:1", seq: 6 });
    ws.push({ type: "gift.offer", transfer_id: "a:0", seq: 2 });
    const retry = c.sendGift("x", "note.do", 1, { giftId: "g1" });
    ws.push({ type: "gift.confirmed", id: ws.lastRequest("gift.send").id, transfer_id: "bob:g1", seq: 4 });
    assert.equal((await retry).seq, 4);
    assert.deepEqual(got, [6, 2]);
    assert.equal(c.lastSeq, 6);
    assert.deepEqual(c.offers.map((o) => o.transfer_id), ["a:0"]);
    c.close();
  },

  async "the last seq and the waiting offers survive a reload (storage)"() {
    const storage = new MemoryStorage();
    const first = client(storage);
    const ws = await open(first, 10);
    ws.push({ type: "gift.offer", transfer_id: "a:7", seq: 11 });
    ws.push({ type: "gift.received", transfer_id: "a:8", seq: 12 });
    first.close();
    const again = client(storage); // a new page
    const before = FakeSocket.made.length;
    const connected = again.connect();
    const ws2 = await until(() => FakeSocket.made[before], "a socket");
    assert.equal(ws2.url.searchParams.get("since"), "12");
    ws2.welcome(14, true);
    await connected;
    assert.equal(again.lastSeq, 12);
    assert.deepEqual(again.offers.map((o) => o.transfer_id), ["a:7"]);
    const seen = [];
    again.on("*", (e) => seen.push(e.seq));
    ws2.push({ type: "gift.received", transfer_id: "a:8", seq: 12 });
    ws2.push({ type: "gift.received", transfer_id: "a:9", seq: 13 });
    assert.deepEqual(seen, [13]);
    again.close();
    const third = client(storage);
    const ws3 = await open(third, 99, false); // the log could not complete it: start over
    assert.equal(ws3.url.searchParams.get("since"), "13");
    assert.equal(third.lastSeq, 99);
    assert.deepEqual(third.offers, []);
    third.close();
  },

  async "a dropped connection resumes from the last seq and restores subscriptions"() {
    const c = client();
    const ws = await open(c, 3);
    const joined = c.joinRoom("r1");
    ws.push({ type: "room.snapshot", id: ws.lastRequest("room.join").id, room: "r1", live: true,
      audience: 1, rseq: 0, board: [] });
    await joined;
    const opened = c.openGroup("g1");
    ws.push({ type: "group.snapshot", id: ws.lastRequest("group.open").id, group: "g1" });
    await opened;
    ws.push({ type: "gift.received", transfer_id: "a:1", seq: 4 });
    const pending = c.sendGift("x", "note.do", 1);
    const snapshots = [];
    c.on("room.snapshot", (s) => snapshots.push(s.room));
    c.on("group.snapshot", (s) => snapshots.push(s.group));
    // a request sent as soon as it is open (a gift queued while offline) follows the rejoin
    c.on("open", () => { c.request("ping").catch(() => {}); });
    const before = FakeSocket.made.length;
    ws.drop(4000, "shutdown");
    await assert.rejects(pending, ConnectionError);
    const ws2 = await until(() => FakeSocket.made[before], "a reconnection");
    assert.equal(ws2.url.searchParams.get("since"), "4");
    ws2.welcome(4, true);
    const join = await until(() => ws2.lastRequest("room.join"), "room.join again");
    assert.deepEqual(ws2.sent.map((m) => m.type).slice(0, 3), ["room.join", "group.open", "ping"]);
    ws2.push({ type: "room.snapshot", id: join.id, room: "r1", live: true, audience: 1, rseq: 2, board: [] });
    const open2 = await until(() => ws2.lastRequest("group.open"), "group.open again");
    ws2.push({ type: "group.snapshot", id: open2.id, group: "g1" });
    await until(() => snapshots.length === 2, "the snapshots as events");
    assert.deepEqual(snapshots, ["r1", "g1"]);
    assert.equal(c.reconnects, 1);
    c.close();
  },

  async "close codes decide: final codes stop, others retry with backoff"() {
    const c = client(new MemoryStorage(), { maxAttempts: 3, stableMs: 0 }); // up: stable
    const ws = await open(c, 1);
    const closes = [];
    c.on("close", (e) => closes.push([e.code, e.final]));
    const delays = [];
    c.on("reconnecting", (e) => delays.push(e.delayMs));
    const before = FakeSocket.made.length;
    ws.drop(1006);
    const ws2 = await until(() => FakeSocket.made[before], "attempt 1");
    ws2.drop(1006); // never welcomed: backoff
    const ws3 = await until(() => FakeSocket.made[before + 1], "attempt 2");
    ws3.drop(1012);
    const ws4 = await until(() => FakeSocket.made[before + 2], "attempt 3");
    ws4.drop(1006); // the third failed attempt: give up
    await until(() => c.state === "closed", "giving up");
    assert.deepEqual(delays, [0, 1, 2]);
    assert.equal(FakeSocket.made.length, before + 3);
    assert.deepEqual(closes.at(-1), [1006, true]);

    const d = client();
    const wd = await open(d, 1);
    const n = FakeSocket.made.length;
    wd.drop(4003, "auth_expired"); // final: no reconnection
    await tick(20);
    assert.equal(FakeSocket.made.length, n);
    assert.equal(d.state, "closed");
    await assert.rejects(d.request("ping"), ConnectionError);

    const e = client();
    const we = await open(e, 1);
    const m = FakeSocket.made.length;
    we.drop(4999); // unknown: final
    await tick(20);
    assert.equal(FakeSocket.made.length, m);
    assert.equal(e.state, "closed");
  },

  async "close() twice tells one final close"() {
    const c = client();
    await open(c, 1);
    const closes = [];
    c.on("close", (e) => closes.push(e));
    c.close();
    c.close();
    assert.deepEqual(closes.map((e) => [e.code, e.final]), [[1000, true]]);
    assert.equal(c.state, "closed");
  },

  async "forget() after close(): the next connection starts fresh, with no since"() {
    const storage = new MemoryStorage();
    const c = client(storage);
    const ws = await open(c, 5);
    ws.push({ type: "gift.received", transfer_id: "a:g", gift_id: "g", from: "a", asset: "note.do",
      count: 1, balance: 4, seq: 6 });
    assert.equal(c.lastSeq, 6);
    c.close();
    c.forget();
    const again = await open(c, 9);
    assert.equal(again.url.searchParams.get("since"), null);
    assert.equal(c.lastSeq, 9);
    c.close();
  },

  async "a request times out without a reply"() {
    const c = client(new MemoryStorage(), { requestTimeoutMs: 20 });
    await open(c, 1);
    await assert.rejects(c.request("ping"), (err) => err.code === "timeout");
    c.close();
  },

  async "a connection lost right after its welcome backs off, toward maxAttempts"() {
    const c = client(new MemoryStorage(), { maxAttempts: 3, stableMs: 1000 });
    const delays = [];
    c.on("reconnecting", (e) => delays.push(e.delayMs));
    let ws = await open(c, 1);
    for (let i = 0; i < 3; i += 1) { // welcomed, then closed at once: no redial at once
      const before = FakeSocket.made.length;
      ws.drop(4010, "resync");
      if (i === 2) break;
      ws = await until(() => FakeSocket.made[before], `attempt ${i + 1}`);
      ws.welcome(1, true);
      await until(() => c.state === "open", "open again");
    }
    await until(() => c.state === "closed", "giving up");
    assert.deepEqual(delays, [1, 2]);
  },

  async "failed dials before a welcome are not held against the connection after it"() {
    const c = client(new MemoryStorage(), { maxAttempts: 3, stableMs: 1000 });
    let ws = await open(c, 1);
    c._openedAt -= 5000; // (this one was up a while)
    let before = FakeSocket.made.length;
    ws.drop(1006);
    for (let i = 0; i < 2; i += 1) { // the server restarting: two dials fail
      ws = await until(() => FakeSocket.made[before + i], `dial ${i + 1}`);
      ws.drop(1006);
    }
    ws = await until(() => FakeSocket.made[before + 2], "the dial that gets in");
    ws.welcome(1, true);
    await until(() => c.state === "open", "open");
    before = FakeSocket.made.length;
    ws.drop(4010, "resync"); // lost at once: one quick loss, not the fourth failure
    await until(() => FakeSocket.made[before], "a redial, not giving up");
    assert.notEqual(c.state, "closed");
    c.close();
  },

  async "connect() while reconnecting dials no second socket"() {
    const c = client(new MemoryStorage(), { baseDelayMs: 40, maxDelayMs: 40, stableMs: 1000 });
    const ws = await open(c, 1);
    const before = FakeSocket.made.length;
    ws.drop(1006);
    await until(() => c.state === "reconnecting", "reconnecting");
    const again = c.connect(); // the caller asks while the backoff timer runs
    const ws2 = await until(() => FakeSocket.made[before], "the timer's attempt");
    ws2.welcome(1, true);
    await again;
    await tick(60);
    assert.equal(FakeSocket.made.length, before + 1);
    c.close();
  },

  async "an error before the welcome fails the attempt at once (Node 20 fires no close)"() {
    const c = client(new MemoryStorage(), { connectTimeoutMs: 60000 });
    const connected = c.connect();
    const first = await until(() => FakeSocket.made.at(-1)?.onerror && FakeSocket.made.at(-1), "a socket");
    const before = FakeSocket.made.length;
    first.onerror({});
    const second = await until(() => FakeSocket.made[before], "the next attempt, not after 60 s");
    second.welcome(1);
    await connected;
    c.close();
  },

  async "a refused first connection (bad token) rejects connect()"() {
    const c = client();
    const connected = c.connect();
    const ws = await until(() => FakeSocket.made.at(-1)?.onclose && FakeSocket.made.at(-1), "a socket");
    ws.drop(4002, "auth_invalid");
    await assert.rejects(connected, ConnectionError);
    assert.equal(c.state, "closed");
  },
};

let failed = 0;
for (const [name, test] of Object.entries(tests)) {
  try {
    await test();
    console.log(`ok   ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}\n${err.stack}`);
  }
}
process.exit(failed ? 1 : 0);
