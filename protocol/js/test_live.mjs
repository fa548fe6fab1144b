// giftwire.js against a real gateway (tests/test_js_client.py starts one and seeds the
// users): `node test_live.mjs WS_URL SENDER_TOKEN RECIPIENT_TOKEN RECIPIENT` gifts, drops the
// recipient's page, gifts again, reloads it from the same storage, retries a gift, and
// prints what each side saw as one JSON object. Needs a global WebSocket (Node 22, or
// Node 20 with --experimental-websocket).
import { GiftwireClient } from "./giftwire.js";

const [url, senderToken, recipientToken, recipient] = process.argv.slice(2);

class MemoryStorage {
  constructor() { this.items = new Map(); }
  getItem(k) { return this.items.get(k) ?? null; }
  setItem(k, v) { this.items.set(k, String(v)); }
  removeItem(k) { this.items.delete(k); }
}

async function until(pred, what, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const storage = new MemoryStorage();
const received = [];
const page = (s) => {
  const c = new GiftwireClient(url, recipientToken, { storage: s });
  c.on("gift.received", (e) => received.push(e.transfer_id));
  return c;
};

const sender = new GiftwireClient(url, senderToken, { storage: null });
await sender.connect();
let bob = page(storage);
const firstWelcome = await bob.connect();
const replies = [];
replies.push(await sender.sendGift(recipient, "note.do", 1, { giftId: "js1" }));
await until(() => received.length === 1, "the first gift");
bob.close(); // the page is closed
replies.push(await sender.sendGift(recipient, "note.do", 1, { giftId: "js2" }));
replies.push(await sender.sendGift(recipient, "note.do", 2, { giftId: "js3" }));
bob = page(storage); // and opened again: resumes from the stored seq
const secondWelcome = await bob.connect();
await until(() => received.length >= 3, "the missed gifts");
replies.push(await sender.sendGift(recipient, "note.do", 1, { giftId: "js1" })); // a retry
const balances = await bob.balances();
const odds = await bob.noteOdds();
const redeemed = await bob.redeemSets("js-set", { sets: 1 }); // bob holds only `do` cards
await new Promise((resolve) => setTimeout(resolve, 300));
sender.close();
bob.close();
console.log(JSON.stringify({ firstWelcome, secondWelcome, received, replies, balances, odds, redeemed,
  lastSeq: bob.lastSeq, stored: JSON.parse(storage.getItem(bob.storageKey)) }));
process.exit(0);
