// The web player's payment model (frontend/lib/listener.js) without a browser: vouchers signed by the session key
// and sent in order, the UI told through events (never called), "spent this session" kept in sessionStorage, the
// activity's settlement status, and refusals explained from the relay's `details`. Run: node --test tests/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import { Wallet } from "ethers";

import * as P from "../../frontend/lib/protocol.js";
import * as L from "../../frontend/lib/ledger.js";
import { Listener, SESSION_SPENT_KEY, withSettlement } from "../../frontend/lib/listener.js";
import { ERROR_TITLES, explainRelayError } from "../../frontend/lib/messages.js";
import { RelayError } from "../../frontend/lib/relay.js";

const domain = P.makeDomain({ chainId: 31337, verifyingContract: "0x" + "c0".repeat(20) });
const CHANNEL = "0x" + "0c".repeat(32);
const ARTIST = "0x1111111111111111111111111111111111111111";
const session = new Wallet("0x" + "5e".repeat(32));

/** sessionStorage as the browser has it (strings in, strings out). */
class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
}

/**
 * A relay that checks what a real one checks of a tip's voucher: the next seq, the exact next voucher (recomputed
 * with the same ledger rules) and the session key's signature; it answers seq_gap with its state otherwise.
 */
function honestRelay(deposit = 10_000n) {
  let state = L.openedState(CHANNEL);
  const relay = {
    received: [],
    async pay(id, body) {
      relay.received.push(body);
      assert.equal(id, CHANNEL);
      if (body.seq !== state.seq + 1) {
        throw new RelayError(409, { error: { code: "seq_gap", message: `expected seq ${state.seq + 1}`, details: {} }, state: summary() });
      }
      const charge = L.chargeTip(BigInt(body.charge.amount), { artist: body.charge.artist, memo: body.charge.memo });
      const { next, digest } = L.preparePayment(state, charge, domain);
      assert.equal(P.voucherDigest(domain, P.voucherFromJson(CHANNEL, body.voucher)), digest, "the voucher the relay computes");
      assert.equal(P.recoverDigest(digest, body.signature).toLowerCase(), session.address.toLowerCase());
      const total = L.spent(next);
      if (total > deposit) {
        throw new RelayError(402, { error: { code: "insufficient_deposit", message: `total ${total} exceeds deposit ${deposit}`,
          details: { total: String(total), deposit: String(deposit) } } });
      }
      state = next;
      return { status: "accepted", seq: next.seq, amount: String(charge.amount), total: String(total), remaining: String(deposit - total), spentToday: String(total), dailyCap: null };
    },
    state: () => state,
  };
  const summary = () => ({ channelId: CHANNEL, seq: state.seq, voucher: P.voucherJson(state.voucher), plays: {}, owned: [] });
  return relay;
}

function page(relay, storage = new MemoryStorage()) {
  const listener = new Listener({ domain, relay, info: { sessionMargin: 0 } }, { storage });
  listener.channel = { channelId: CHANNEL, token: "0x" + "00".repeat(20), status: "open", sessionExpiry: Date.now() / 1000 + 86400 };
  listener.ledger = L.openedState(CHANNEL);
  listener.session = { wallet: session, address: session.address };
  return listener;
}

const tip = (amount, memo = "") => () => L.chargeTip(amount, { artist: ARTIST, memo });

test("payments go out in order, signed by the session key, and each accepted one is told as a 'paid' event", async () => {
  const relay = honestRelay();
  const listener = page(relay);
  const paid = [];
  listener.addEventListener("paid", (e) => paid.push(e.detail.ack.seq));
  // three at once: the model serialises them (a voucher builds on the one before)
  const acks = await Promise.all([listener.pay(tip(100n)), listener.pay(tip(200n)), listener.pay(tip(300n))]);
  assert.deepEqual(acks.map((a) => a.ack.seq), [1, 2, 3]);
  assert.deepEqual(paid, [1, 2, 3]);
  assert.equal(L.spent(listener.ledger), 600n);
  assert.equal(listener.channel.spent, "600");
  assert.equal(listener.sessionSpent, 600n);
});

test("'spent this session' survives a reload of the page (sessionStorage) and only counts accepted payments", async () => {
  const storage = new MemoryStorage();
  const relay = honestRelay(1_000n);
  const first = page(relay, storage);
  await first.pay(tip(400n));
  await assert.rejects(first.pay(tip(700n)), (err) => err.code === "insufficient_deposit");
  assert.equal(first.sessionSpent, 400n);
  assert.deepEqual(JSON.parse(storage.getItem(SESSION_SPENT_KEY)), { [CHANNEL]: "400" });
  // a reload: a new model on the same tab's storage
  const reloaded = page(relay, storage);
  reloaded.ledger = relay.state();
  assert.equal(reloaded.sessionSpent, 400n);
  await reloaded.pay(tip(50n));
  assert.equal(reloaded.sessionSpent, 450n);
  // another channel has its own count; junk in storage is ignored, not thrown
  reloaded.channel = { ...reloaded.channel, channelId: "0x" + "0d".repeat(32) };
  assert.equal(reloaded.sessionSpent, 0n);
  storage.setItem(SESSION_SPENT_KEY, '{"0xnot":"1","' + CHANNEL + '":"-5"}');
  assert.equal(page(relay, storage).sessionSpent, 0n);
  storage.setItem(SESSION_SPENT_KEY, "{not json");
  assert.equal(page(relay, storage).sessionSpent, 0n);
});

test("a close asks the UI to stop playback through an event, and the player's last payment is queued before it", async () => {
  const relay = honestRelay();
  const listener = page(relay);
  const order = [];
  // what the app does: the player pays for the seconds heard when it stops
  listener.addEventListener("stop-playback", () => {
    order.push("stop");
    listener.pay(tip(5n)).then(() => order.push("last payment"));
  });
  listener._stopPlayback();
  await listener._queue;
  order.push("queue drained");
  assert.deepEqual(order, ["stop", "last payment", "queue drained"]);
  assert.equal(relay.state().seq, 1);
});

test("the model never reaches into the UI: no ctx.player, ctx.banner or ctx.clearPaymentErrors is needed", async () => {
  const relay = honestRelay();
  // a ctx with UI members that throw if touched
  const trap = () => { throw new Error("the model called the UI"); };
  const listener = new Listener({ domain, relay, info: { sessionMargin: 0 }, player: { stop: trap }, clearPaymentErrors: trap, banner: trap, showError: trap },
    { storage: new MemoryStorage() });
  listener.channel = { channelId: CHANNEL, token: "0x" + "00".repeat(20), status: "open", sessionExpiry: Date.now() / 1000 + 86400 };
  listener.ledger = L.openedState(CHANNEL);
  listener.session = { wallet: session, address: session.address };
  await listener.pay(tip(10n));
  listener._stopPlayback();
  assert.equal(relay.state().seq, 1);
});

test("a seq_gap resynchronises from the relay's state and the payment is retried once", async () => {
  const relay = honestRelay();
  const other = page(relay); // another tab of the same channel pays first
  await other.pay(tip(70n));
  const listener = page(relay);
  listener.adoptSummary = async (summary) => { listener.ledger = L.stateFromSummary(summary); }; // (signature check: listener_resync)
  const { ack } = await listener.pay(tip(30n));
  assert.equal(ack.seq, 2);
  assert.equal(ack.total, "100");
  assert.equal(relay.received.length, 3); // 1 (other tab) + the refused + the retried
});

test("activity marks a payment settled once the channel's settled total covers the total it brought the voucher to", () => {
  const items = [ // newest first, as GET /history answers
    { seq: 3, amount: "30", at: 3 }, { seq: 2, amount: "20", at: 2 }, { seq: 1, amount: "10", at: 1 },
  ];
  const marked = withSettlement(items, { channelId: CHANNEL, token: "0x" + "00".repeat(20), spent: "60", settled: "30" });
  assert.deepEqual(marked.map((i) => [i.seq, String(i.totalAfter), i.status]), [[3, "60", "pending"], [2, "30", "settled"], [1, "10", "settled"]]);
  assert.ok(withSettlement(items, { channelId: CHANNEL, spent: "60", settled: "60" }).every((i) => i.status === "settled"));
  assert.ok(withSettlement(items, { channelId: CHANNEL, spent: "60", settled: "0" }).every((i) => i.status === "pending"));
});

test("refusals are explained in token units from the relay's details, and left to the plain message without them", () => {
  const fmt = (v) => `${v} wei-units`;
  const err = (code, details, message = "x") => new RelayError(402, { error: { code, message, ...(details ? { details } : {}) } });
  assert.match(explainRelayError(err("daily_cap_exceeded", { spentToday: "70", amount: "40", dailyCap: "100" }), fmt),
    /costs 40 wei-units, and you have spent 70 wei-units of your 100 wei-units daily cap/);
  assert.match(explainRelayError(err("insufficient_deposit", { total: "120", deposit: "100" }), fmt), /total to 120 wei-units, more than the 100 wei-units you deposited/);
  assert.match(explainRelayError(err("session_cap_exceeded", { total: "9", sessionCap: "8" }), fmt), /up to 8 wei-units in total \(this would bring it to 9 wei-units\)/);
  // no details (an older relay): no sentence, even if the message has numbers in it
  assert.equal(explainRelayError(err("daily_cap_exceeded", null, "spent 70 + 40 > cap 100"), fmt), null);
  // malformed details are not trusted: not decimal strings, negative, arrays
  assert.equal(explainRelayError(err("insufficient_deposit", { total: "1e3", deposit: "100" }), fmt), null);
  assert.equal(explainRelayError(err("insufficient_deposit", { total: "-1", deposit: "100" }), fmt), null);
  assert.equal(new RelayError(400, { error: { code: "x", details: ["1"] } }).details, null);
  assert.equal(explainRelayError(err("bad_signature", { total: "1" }), fmt), null);
  assert.ok(ERROR_TITLES.relay_unreachable.includes("unreachable"));
});
