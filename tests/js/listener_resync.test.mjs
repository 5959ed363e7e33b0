// The web player adopting a relay's channel state (review issue 8, finding 3): plays and owned tracks decide
// prices, so they are derived from the receipts behind the voucher this page signed (ledger.replayHistory), never
// taken from the relay. Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import * as P from "../../frontend/lib/protocol.js";
import * as L from "../../frontend/lib/ledger.js";
import { Listener } from "../../frontend/lib/listener.js";
import { Model, termsFromJson } from "../../frontend/lib/pricing.js";

const domain = P.makeDomain({ chainId: 31337, verifyingContract: "0x" + "c0".repeat(20) });
const CHANNEL = "0x" + "0c".repeat(32);
const ARTIST = "0x1111111111111111111111111111111111111111";
const COLLAB = "0x2222222222222222222222222222222222222222";
const FAN = "0x4444444444444444444444444444444444444444";
const OWN = "0x" + "ab".repeat(32); // stream-to-own, doubling from 1000, owned after 9 plays
const SONG = "0x" + "cd".repeat(32); // flat 500, per second 7, download 9000
const splitV1 = P.makeSplit({ recipients: [ARTIST], bps: [10000] });
const splitV2 = P.makeSplit({ recipients: [ARTIST, COLLAB], bps: [7000, 3000] });
const SPLITS = new Map([[OWN, [splitV1]], [SONG, [splitV1, splitV2]]]);
const splitsOf = (t) => SPLITS.get(t.toLowerCase()) ?? [];
const listing = (trackId, terms, split) => L.makeListing({ trackId, terms: termsFromJson(terms), split, splitHash: P.splitHash(split) });
const own = listing(OWN, { perPlay: "1000", model: Model.STREAM_TO_OWN, ownAfter: 9 }, splitV1);
const songV1 = listing(SONG, { perPlay: "500", perSecond: "7", download: "9000" }, splitV1);
const songV2 = listing(SONG, { perPlay: "500", perSecond: "7", download: "9000" }, splitV2);

/** An honest relay's view after these charges: its history items (as GET /history gives them) and summary. */
function honestChannel() {
  let state = L.openedState(CHANNEL);
  const items = [];
  const pay = (make) => {
    const charge = make(state);
    state = L.applyCharge(state, charge).state;
    items.push({
      seq: state.seq, kind: L.kindName(charge.kind), target: charge.target, units: Number(charge.units), amount: String(charge.amount),
      memo: charge.memo, digest: P.voucherDigest(domain, state.voucher),
    });
  };
  pay((s) => L.chargePlay(s, own));
  pay((s) => L.chargePlay(s, own));
  pay(() => L.chargeSeconds(songV1, 30));
  pay(() => L.chargeTip(777n, { artist: FAN, memo: "thanks" }));
  pay((s) => L.chargeDownload(s, songV2)); // after the split changed
  pay((s) => L.chargePlay(s, songV2)); // free: owned
  const summary = {
    channelId: CHANNEL, seq: state.seq, voucher: P.voucherJson(state.voucher),
    plays: Object.fromEntries(state.plays), owned: [...state.owned],
  };
  return { state, items, summary };
}

const payments = (items) => items.map(L.acceptedPayment);

test("an honest history replays into the signed voucher, counters from its receipts", () => {
  const { state, items } = honestChannel();
  const replayed = L.replayHistory(L.openedState(CHANNEL), payments(items), splitsOf, domain);
  assert.ok(L.sameState(replayed, state));
  assert.equal(L.playsOf(replayed, OWN), 2);
  assert.ok(replayed.owned.has(SONG));
  // from a state of our own in the middle, the rest of the history
  const mid = L.replayHistory(L.openedState(CHANNEL), payments(items.slice(0, 3)), splitsOf, domain);
  assert.ok(L.sameState(L.replayHistory(mid, payments(items.slice(3)), splitsOf, domain), state));
});

test("inflated plays or a hidden download differ from the replayed state", () => {
  const { items, summary } = honestChannel();
  const replayed = L.replayHistory(L.openedState(CHANNEL), payments(items), splitsOf, domain);
  assert.ok(L.sameState(replayed, L.stateFromSummary(summary)));
  assert.ok(!L.sameState(replayed, L.stateFromSummary({ ...summary, plays: { ...summary.plays, [OWN]: 9 } })));
  assert.ok(!L.sameState(replayed, L.stateFromSummary({ ...summary, owned: [] })));
});

test("a rewritten, reordered, gapped or malformed history is untrusted", () => {
  const { items } = honestChannel();
  const replay = (xs) => L.replayHistory(L.openedState(CHANNEL), payments(xs), splitsOf, domain);
  assert.throws(() => replay(items.map((i) => (i.kind === "play" ? { ...i, kind: "seconds" } : i))), L.UntrustedState);
  assert.throws(() => replay(items.map((i, n) => (n === 2 ? { ...i, units: 3 } : i))), L.UntrustedState);
  assert.throws(() => replay([items[1], items[0], ...items.slice(2)]), L.UntrustedState);
  assert.throws(() => replay([items[0], ...items.slice(2)]), /jumps from seq 1 to 3/);
  assert.throws(() => L.acceptedPayment({ ...items[0], amount: 5 }), L.UntrustedState);
  assert.throws(() => L.acceptedPayment({ ...items[0], kind: "steal" }), L.UntrustedState);
  // the split the receipt named is gone from the registry's versions: cannot be replayed
  assert.throws(() => L.replayHistory(L.openedState(CHANNEL), payments(items), (t) => splitsOf(t).slice(0, 1), domain), L.UntrustedState);
});

/** The page's model on a relay that serves `summary` and `items` (no wallet: the state's signature check is
 * covered elsewhere; this is the counters' check). */
function model(items) {
  const listener = new Listener({
    domain,
    relay: { history: async (_id, limit, before) => ({ items: items.filter((i) => i.seq < before).reverse().slice(0, limit) }) },
  });
  listener._registrySplits = async () => splitsOf;
  return listener;
}

test("the model refuses a summary whose counters lie, and adopts the honest one", async () => {
  const { state, items, summary } = honestChannel();
  const page = model(items);
  await assert.rejects(page._verifiedLedger({ ...summary, plays: { [OWN]: 9 } }), (err) => err.code === "untrusted_state");
  await assert.rejects(page._verifiedLedger({ ...summary, owned: [] }), (err) => err.code === "untrusted_state");
  assert.equal(page.ledger, null); // nothing adopted
  assert.ok(L.sameState(await page._verifiedLedger(summary), state));
  const liar = model(items.map((i) => ({ ...i, kind: "seconds" })));
  await assert.rejects(liar._verifiedLedger({ ...summary, plays: {} }), (err) => err.code === "untrusted_state");
  const withheld = model([]);
  await assert.rejects(withheld._verifiedLedger(summary), (err) => err.code === "untrusted_state");
});
