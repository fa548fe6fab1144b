// Behaviour of GiftwireClient over real WebSockets, against a scripted server: every scenario
// runs the real client on Node's global WebSocket, which dials real TCP connections to a
// real WebSocket server on 127.0.0.1 (tests/scripted_ws.py). Only what that server says is
// scripted: through its control connection (/control) this script learns of each connection
// the client makes (its URL with the query string, every frame it sends, how it ended) and
// tells the server what to send, and how to end a connection: a close frame with a code, a
// close frame without one (the client sees 1005), the TCP connection dropped with no close
// frame (1006), or a handshake refused with an HTTP status.
//
//   python tests/scripted_ws.py                 # prints its port
//   node --experimental-websocket protocol/js/test_client.mjs PORT   (no flag from Node 22)
//
// Exits 1 on a failure (tests/test_js_client.py starts the server on port 0 and runs this).
import assert from "node:assert/strict";
import { ConnectionError, GiftwireClient } from "./giftwire.js";

const PORT = Number(process.argv[2]);
if (!Number.isInteger(PORT) || PORT <= 0) {
  console.error("usage: node [--experimental-websocket] test_client.mjs PORT (of tests/scripted_ws.py)");
  process.exit(2);
}
if (typeof WebSocket !== "function") {
  console.error("this node has no global WebSocket (Node >= 22, or 20 with --experimental-websocket)");
  process.exit(2);
}
const ORIGIN = `ws://127.0.0.1:${PORT}`;
const TOKEN = "v1.bob.9999999999.c2ln";

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

/** The next `type` event of client `c` (that `pred` accepts); listen before causing it. */
function next(c, type, what, pred = () => true, ms = 2000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
    const off = c.on(type, (e) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

/** The server's side of one real connection (the client's handshake, and what followed). */
class ServerSide {
  constructor(script, n, path, refused) {
    this.script = script;
    this.n = n;
    this.url = new URL(path, ORIGIN); // as the request line carried it
    this.refused = refused; // the HTTP status the handshake got instead of 101, or null
    this.sent = []; // every frame the client sent on it, parsed
    this.closed = null; // once ended: the close code the server got (1006: no close frame)
    this.ended = false;
  }

  // --- the test drives these: each resolves once the server has done it (not once the
  // client has handled it: wait for that on what the client does)
  push(msg) {
    return this.script.command({ cmd: "push", conn: this.n, text: JSON.stringify(msg) });
  }

  welcome(seq, recovered) {
    const w = { type: "welcome", user: "bob", protocol: 1, server_time_ms: 1, seq };
    if (recovered !== undefined) w.recovered = recovered;
    return this.push(w);
  }

  /** End the connection as the client must see `code`: 1006 drops the TCP connection with no
   * close frame, 1005 sends a close frame without a code, any other is sent with `reason`. */
  drop(code, reason = "") {
    return this.script.command({ cmd: "close", conn: this.n, code, reason });
  }

  lastRequest(type) {
    return [...this.sent].reverse().find((m) => m.type === type);
  }
}

/** The control connection to tests/scripted_ws.py. */
class ScriptedServer {
  static async attach(origin) {
    const ws = new WebSocket(`${origin}/control`);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`no scripted server at ${origin}/control`));
    });
    return new ScriptedServer(ws);
  }

  constructor(ws) {
    this.ws = ws;
    this.made = []; // every handshake on /ws, in the order it arrived (refused ones too)
    this.errors = []; // commands the server could not carry out (each fails its scenario)
    this._ids = 0;
    this._waiting = new Map();
    ws.onmessage = (e) => this._event(JSON.parse(e.data));
    ws.onclose = () => {
      for (const [, done] of this._waiting) done("the control connection closed");
      this._waiting.clear();
    };
  }

  _event(ev) {
    if (ev.ev === "conn") {
      assert.equal(ev.conn, this.made.length, "connections are numbered in order");
      this.made.push(new ServerSide(this, ev.conn, ev.url, ev.refused));
    } else if (ev.ev === "frame") {
      this.made[ev.conn].sent.push(JSON.parse(ev.text));
    } else if (ev.ev === "closed") {
      Object.assign(this.made[ev.conn], { closed: ev.code, ended: true });
    } else if (ev.ev === "done") {
      this._waiting.get(ev.id)?.(ev.error);
      this._waiting.delete(ev.id);
    }
  }

  /** Send a command; resolves once done (a failure is kept in `errors`, never thrown here,
   * so that a command nobody awaits cannot end the process). */
  command(cmd) {
    this._ids += 1;
    const id = this._ids;
    return new Promise((resolve) => {
      this._waiting.set(id, (error) => {
        if (error) this.errors.push(`${cmd.cmd} on connection ${cmd.conn}: ${error}`);
        resolve();
      });
      try {
        this.ws.send(JSON.stringify({ ...cmd, id }));
      } catch (err) {
        this._waiting.delete(id);
        this.errors.push(`${cmd.cmd}: ${err}`);
        resolve();
      }
    });
  }

  /** Answer the next `count` handshakes with HTTP `status` instead of a WebSocket. */
  refuse(count, status) {
    return this.command({ cmd: "refuse", count, status });
  }
}

const server = await ScriptedServer.attach(ORIGIN);

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

const clients = []; // the running scenario's: closed after it, whatever happened

function client(storage = new MemoryStorage(), options = {}) {
  const c = new GiftwireClient(`${ORIGIN}/ws`, TOKEN, {
    WebSocket: globalThis.WebSocket, storage, baseDelayMs: 1, maxDelayMs: 4, random: () => 0.5, ...options,
  });
  clients.push(c);
  return c;
}

async function open(c, seq = 0, recovered = undefined) {
  const before = server.made.length;
  const connected = c.connect();
  const ws = await until(() => server.made[before], "a connection");
  ws.welcome(seq, recovered);
  await connected;
  return ws;
}

const tests = {
  async "token in the query string, no since on a first connection"() {
    const c = client();
    const ws = await open(c, 5);
    assert.equal(ws.url.pathname, "/ws");
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
    await until(() => ws.sent.length >= 2, "the two requests");
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
    const send = await until(() => ws.lastRequest("gift.send"), "the gift.send");
    // sent after the three above on the same connection: the client has had them when it
    // gets the reply
    ws.push({ type: "gift.confirmed", id: send.id, transfer_id: "bob:g1", seq: 4 });
    assert.equal((await retry).seq, 4);
    assert.deepEqual(got, [6, 2]);
    assert.equal(c.duplicates, 1); // the second seq 6, counted
    assert.equal(c.lastSeq, 6);
    assert.deepEqual(c.offers.map((o) => o.transfer_id), ["a:0"]);
    c.close();
  },

  async "the last seq and the waiting offers survive a reload (storage)"() {
    const storage = new MemoryStorage();
    const first = client(storage);
    const ws = await open(first, 10);
    const at12 = next(first, "gift.received", "the event at seq 12");
    ws.push({ type: "gift.offer", transfer_id: "a:7", seq: 11 });
    ws.push({ type: "gift.received", transfer_id: "a:8", seq: 12 });
    await at12;
    first.close();
    const again = client(storage); // a new page
    const before = server.made.length;
    const connected = again.connect();
    const ws2 = await until(() => server.made[before], "a connection");
    assert.equal(ws2.url.searchParams.get("since"), "12");
    ws2.welcome(14, true);
    await connected;
    assert.equal(again.lastSeq, 12);
    assert.deepEqual(again.offers.map((o) => o.transfer_id), ["a:7"]);
    const seen = [];
    again.on("*", (e) => seen.push(e.seq));
    const at13 = next(again, "gift.received", "the event at seq 13", (e) => e.seq === 13);
    ws2.push({ type: "gift.received", transfer_id: "a:8", seq: 12 });
    ws2.push({ type: "gift.received", transfer_id: "a:9", seq: 13 });
    await at13; // (the one at 12 arrived before it)
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
    const join1 = await until(() => ws.lastRequest("room.join"), "room.join");
    ws.push({ type: "room.snapshot", id: join1.id, room: "r1", live: true, audience: 1, rseq: 0, board: [] });
    await joined;
    const opened = c.openGroup("g1");
    const open1 = await until(() => ws.lastRequest("group.open"), "group.open");
    ws.push({ type: "group.snapshot", id: open1.id, group: "g1" });
    await opened;
    const at4 = next(c, "gift.received", "the event at seq 4");
    ws.push({ type: "gift.received", transfer_id: "a:1", seq: 4 });
    await at4;
    const pending = c.sendGift("x", "note.do", 1);
    await until(() => ws.lastRequest("gift.send"), "the gift on the wire");
    const snapshots = [];
    c.on("room.snapshot", (s) => snapshots.push(s.room));
    c.on("group.snapshot", (s) => snapshots.push(s.group));
    // a request sent as soon as it is open (a gift queued while offline) follows the rejoin
    c.on("open", () => { c.request("ping").catch(() => {}); });
    const before = server.made.length;
    ws.drop(4000, "shutdown");
    await assert.rejects(pending, ConnectionError);
    const ws2 = await until(() => server.made[before], "a reconnection");
    assert.equal(ws2.url.searchParams.get("since"), "4");
    ws2.welcome(4, true);
    const join = await until(() => ws2.lastRequest("room.join"), "room.join again");
    await until(() => ws2.sent.length >= 3, "the rejoin, the reopen and the open handler's ping");
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
    const before = server.made.length;
    ws.drop(1006); // the TCP connection lost: no close frame
    const ws2 = await until(() => server.made[before], "attempt 1");
    ws2.drop(1006); // never welcomed: backoff
    const ws3 = await until(() => server.made[before + 1], "attempt 2");
    ws3.drop(1012);
    const ws4 = await until(() => server.made[before + 2], "attempt 3");
    ws4.drop(1006); // the third failed attempt: give up
    await until(() => c.state === "closed", "giving up");
    await tick(20); // (a dial after giving up would have reached the server by now)
    assert.deepEqual(delays, [0, 1, 2]);
    assert.equal(server.made.length, before + 3);
    assert.deepEqual(closes.at(-1), [1006, true]);

    const d = client();
    const wd = await open(d, 1);
    const n = server.made.length;
    wd.drop(4003, "auth_expired"); // final: no reconnection
    await until(() => d.state === "closed", "the final close");
    await tick(20);
    assert.equal(server.made.length, n);
    assert.equal(d.state, "closed");
    await assert.rejects(d.request("ping"), ConnectionError);

    const e = client();
    const we = await open(e, 1);
    const m = server.made.length;
    we.drop(4999); // unknown: final
    await until(() => e.state === "closed", "the final close");
    await tick(20);
    assert.equal(server.made.length, m);
    assert.equal(e.state, "closed");
  },

  async "a close frame without a code (1005) is not final: the client redials"() {
    const c = client();
    const ws = await open(c, 1);
    const closes = [];
    c.on("close", (e) => closes.push([e.code, e.final]));
    const before = server.made.length;
    ws.drop(1005);
    const ws2 = await until(() => server.made[before], "a redial");
    assert.deepEqual(closes, [[1005, false]]);
    assert.equal(ws2.url.searchParams.get("since"), "1");
    ws2.welcome(1, true);
    await until(() => c.state === "open", "open again");
    c.close();
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
    const at6 = next(c, "gift.received", "the event at seq 6");
    ws.push({ type: "gift.received", transfer_id: "a:g", gift_id: "g", from: "a", asset: "note.do",
      count: 1, balance: 4, seq: 6 });
    await at6;
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
    const ws = await open(c, 1);
    await assert.rejects(c.request("ping"), (err) => err.code === "timeout");
    await until(() => ws.lastRequest("ping"), "the ping on the wire (it got no reply)");
    c.close();
  },

  async "a connection lost right after its welcome backs off, toward maxAttempts"() {
    const c = client(new MemoryStorage(), { maxAttempts: 3, stableMs: 1000 });
    const delays = [];
    c.on("reconnecting", (e) => delays.push(e.delayMs));
    let ws = await open(c, 1);
    for (let i = 0; i < 3; i += 1) { // welcomed, then closed at once: no redial at once
      const before = server.made.length;
      ws.drop(4010, "resync");
      if (i === 2) break;
      ws = await until(() => server.made[before], `attempt ${i + 1}`);
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
    let before = server.made.length;
    ws.drop(1006);
    for (let i = 0; i < 2; i += 1) { // the server restarting: two dials fail
      ws = await until(() => server.made[before + i], `dial ${i + 1}`);
      ws.drop(1006);
    }
    ws = await until(() => server.made[before + 2], "the dial that gets in");
    ws.welcome(1, true);
    await until(() => c.state === "open", "open");
    before = server.made.length;
    ws.drop(4010, "resync"); // lost at once: one quick loss, not the fourth failure
    await until(() => server.made[before], "a redial, not giving up");
    assert.notEqual(c.state, "closed");
    c.close();
  },

  async "connect() while reconnecting dials no second socket"() {
    const c = client(new MemoryStorage(), { baseDelayMs: 40, maxDelayMs: 40, stableMs: 1000 });
    const ws = await open(c, 1);
    const before = server.made.length;
    ws.drop(1006);
    await until(() => c.state === "reconnecting", "reconnecting");
    const again = c.connect(); // the caller asks while the backoff timer runs
    const ws2 = await until(() => server.made[before], "the timer's attempt");
    ws2.welcome(1, true);
    await again;
    await tick(60);
    assert.equal(server.made.length, before + 1);
    c.close();
  },

  async "an error before the welcome fails the attempt at once (Node 20 fires no close)"() {
    const c = client(new MemoryStorage(), { connectTimeoutMs: 60000 });
    await server.refuse(1, 503); // the handshake gets an HTTP 503: an error event, no close
    const before = server.made.length;
    const connected = c.connect();
    const first = await until(() => server.made[before], "a dial");
    assert.equal(first.refused, 503);
    const second = await until(() => server.made[before + 1], "the next attempt, not after 60 s");
    assert.equal(second.refused, null);
    second.welcome(1);
    await connected;
    c.close();
  },

  async "a refused first connection (bad token) rejects connect()"() {
    const c = client();
    const before = server.made.length;
    const connected = c.connect();
    const ws = await until(() => server.made[before], "a connection");
    ws.drop(4002, "auth_invalid");
    await assert.rejects(connected, ConnectionError);
    assert.equal(c.state, "closed");
  },
};

let failed = 0;
for (const [name, test] of Object.entries(tests)) {
  try {
    await test();
    assert.deepEqual(server.errors.splice(0), [], "commands the scripted server could not carry out");
    console.log(`ok   ${name}`);
  } catch (err) {
    failed += 1;
    server.errors.splice(0);
    console.log(`FAIL ${name}\n${err.stack}`);
  } finally {
    for (const c of clients.splice(0)) c.close(); // (a no-op for one closed already)
  }
}
// every client's close() (or giving up) ended its real connection, and none dialled again
try {
  await until(() => server.made.every((m) => m.ended), "every connection to end");
  console.log(`ok   every connection ended (${server.made.length} in all)`);
} catch (err) {
  failed += 1;
  const open = server.made.filter((m) => !m.ended).map((m) => m.n);
  console.log(`FAIL every connection ended: still open ${open}\n${err.stack}`);
}
const total = Object.keys(tests).length + 1;
console.log(`${total - failed}/${total} pass`);
server.ws.close();
process.exit(failed ? 1 : 0);
