// Runs the resume and dedupe test vectors (vectors.json) through giftwire.js's pure
// functions: `node protocol/js/test_vectors.mjs` prints one line per failure and exits 1
// if any failed (tests/test_js_client.py runs it; protocol/resume.py passes the same).
import { readFileSync } from "node:fs";
import { accept, backoff, keepsOffers, seqAfterWelcome, trackOffers } from "./giftwire.js";

const vectors = JSON.parse(readFileSync(new URL("./vectors.json", import.meta.url), "utf8"));
const failures = [];
let checked = 0;

function check(group, index, why, got, want) {
  checked += 1;
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) failures.push(`${group}[${index}] ${why}: got ${g}, want ${w}`);
}

vectors.after_welcome.forEach((v, i) => {
  check("after_welcome", i, v.why,
    [seqAfterWelcome(v.welcome, v.since), keepsOffers(v.welcome, v.since)],
    [v.last_seq, v.keeps_offers]);
});

vectors.accept.forEach((v, i) => {
  const got = accept(v.last_seq, v.frame, v.is_reply);
  check("accept", i, v.why, [got.deliver, got.lastSeq], [v.deliver, v.next]);
});

vectors.offers.forEach((v, i) => {
  check("offers", i, v.why, Object.keys(trackOffers(v.before, v.frame)).sort(), [...v.after].sort());
});

vectors.sessions.forEach((v, i) => {
  let lastSeq = seqAfterWelcome(v.welcome, v.since);
  let offers = keepsOffers(v.welcome, v.since) ? { ...(v.offers_before ?? {}) } : {};
  const delivered = [];
  v.frames.forEach(({ frame, is_reply: isReply }, k) => {
    const verdict = accept(lastSeq, frame, isReply);
    lastSeq = verdict.lastSeq;
    if (!verdict.deliver) return;
    offers = trackOffers(offers, frame);
    delivered.push(k);
  });
  check("sessions", i, v.why, [delivered, lastSeq, Object.keys(offers).sort()],
    [v.delivered, v.last_seq, [...v.offers].sort()]);
});

vectors.backoff.forEach((v, i) => {
  const got = backoff(v.attempt, v.base, v.max, v.jitter);
  checked += 1;
  if (Math.abs(got - v.delay) > 1e-9 * Math.max(1, v.delay)) {
    failures.push(`backoff[${i}]: got ${got}, want ${v.delay}`);
  }
});

for (const f of failures) console.log(`FAIL ${f}`);
console.log(`${checked - failures.length}/${checked} vectors pass`);
process.exit(failures.length ? 1 : 0);
