// The web player's protocol code (frontend/lib/) against docs/protocol-vectors.json, which scripts/make_vectors.py
// writes from the Python reference implementation: identical digests, identical signatures (RFC 6979 on both
// sides), identical receipt-chain heads, split hashes and shares (in order), and the ledger reproduces channel B's
// vouchers from its receipts. Run: node --test tests/js/
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { TypedDataEncoder, Wallet, getAddress } from "ethers";

import * as P from "../../frontend/lib/protocol.js";
import * as L from "../../frontend/lib/ledger.js";
import { Model, playPrice, secondsPrice, ownedAfter, termsFromJson } from "../../frontend/lib/pricing.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const VECTORS = process.env.CHAINSTREAM_VECTORS
  ? path.resolve(process.env.CHAINSTREAM_VECTORS)
  : path.join(ROOT, "docs", "protocol-vectors.json");
const vectors = JSON.parse(fs.readFileSync(VECTORS, "utf8"));
const domain = P.makeDomain(vectors.domain);
const HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

const voucherOf = (m) => P.makeVoucher(m.channelId, m.payees, m.amounts.map(BigInt), m.playHash);
const receiptOf = (r) => P.makeReceipt({ ...r, seq: BigInt(r.seq), units: BigInt(r.units), amount: BigInt(r.amount) });

test("domain separator", () => {
  assert.equal(P.domainSeparator(domain), vectors.domainSeparator);
});

test("voucher struct hashes, digests and signatures match the Python side byte for byte", () => {
  assert.ok(vectors.vouchers.length > 0);
  for (const vec of vectors.vouchers) {
    const v = voucherOf(vec.message);
    assert.equal(P.voucherStructHash(v), vec.structHash, vec.description);
    assert.equal(P.voucherDigest(domain, v), vec.digest, vec.description);
    const wallet = new Wallet(vec.privateKey);
    assert.equal(wallet.address, vec.signer);
    const sig = P.signDigest(wallet, vec.digest);
    assert.equal(sig, vec.signature, vec.description);
    assert.equal(P.signDigest(vec.privateKey, vec.digest), vec.signature);
    assert.equal(P.recoverDigest(vec.digest, vec.signature), vec.signer);
    const v27 = parseInt(sig.slice(-2), 16);
    assert.ok(v27 === 27 || v27 === 28, "v is 27 or 28");
    assert.ok(BigInt("0x" + sig.slice(66, 130)) <= HALF_N, "low s");
  }
});

test("close digests and relay signatures", () => {
  for (const vec of vectors.closes) {
    const m = vec.message;
    const digest = P.eip712Digest(domain, P.closeStructHash(m.channelId, m.voucherDigest));
    assert.equal(digest, vec.digest, vec.description);
    assert.equal(P.signDigest(vec.privateKey, digest), vec.signature, vec.description);
  }
  // closeDigest(voucher) derives voucherDigest itself (zero for the empty voucher)
  const last = vectors.vouchers.at(-1);
  const viaVoucher = P.closeDigest(domain, voucherOf(last.message));
  const matching = vectors.closes.find((c) => c.message.voucherDigest === last.digest);
  if (matching) assert.equal(viaVoucher, matching.digest);
  const zero = vectors.closes.find((c) => c.message.voucherDigest === P.ZERO_HASH);
  if (zero) assert.equal(P.closeDigest(domain, P.emptyVoucher(zero.message.channelId)), zero.digest);
});

test("EIP-2098 compact signatures", () => {
  for (const vec of vectors.vouchers) {
    const { r, vs } = P.toCompact(vec.signature);
    assert.equal(r, vec.signature.slice(0, 66));
    const s = BigInt("0x" + vec.signature.slice(66, 130));
    const v = BigInt(parseInt(vec.signature.slice(130, 132), 16));
    assert.equal(BigInt(vs), s | ((v - 27n) << 255n));
  }
});

test("play receipts chain into playHash", () => {
  for (const r of vectors.receipts) {
    assert.equal(P.memoHash(r.memo), r.memoHash, r.description);
    assert.equal(P.chainReceipt(r.prev, receiptOf(r)), r.head, r.description);
  }
});

test("split hashes and shares, in protocol order", () => {
  for (const s of vectors.splits) {
    const split = P.makeSplit(s);
    assert.equal(P.splitHash(split), s.hash, s.description);
    const shares = P.applySplit(split, BigInt(s.amount));
    const expected = Object.entries(s.shares).map(([a, v]) => [getAddress(a), BigInt(v)]);
    assert.deepEqual(shares, expected, s.description);
    assert.equal(shares.reduce((a, [, v]) => a + v, 0n), BigInt(s.amount));
  }
});

test("the ledger rebuilds each voucher of a channel from its receipts", () => {
  // Group receipts by the channel their voucher vectors belong to (receipt heads equal voucher playHashes).
  const splitsByHash = new Map(vectors.splits.map((s) => [s.hash, P.makeSplit(s)]));
  const byHead = new Map(vectors.vouchers.map((v) => [v.message.playHash, v]));
  const channelOfHead = new Map();
  let checked = 0;
  for (const start of vectors.receipts.filter((r) => r.prev === P.GENESIS)) {
    // follow the chain from this genesis receipt
    let chainReceipts = [start];
    for (;;) {
      const next = vectors.receipts.find((r) => r.prev === chainReceipts.at(-1).head);
      if (!next) break;
      chainReceipts.push(next);
    }
    const vouchersHere = chainReceipts.map((r) => byHead.get(r.head)).filter(Boolean);
    if (!vouchersHere.length) continue;
    const channelId = vouchersHere[0].message.channelId;
    let state = L.openedState(channelId);
    for (const r of chainReceipts) {
      const split = splitsByHash.get(r.splitHash);
      let charge;
      if (r.kind === P.Kind.TIP && r.splitHash === P.ZERO_HASH) {
        charge = L.chargeTip(BigInt(r.amount), { artist: getAddress("0x" + r.target.slice(26)), memo: r.memo });
      } else {
        assert.ok(split, `split ${r.splitHash} is among the vectors`);
        const listing = L.makeListing({
          trackId: r.target, splitHash: r.splitHash, split,
          terms: termsFromJson({ perPlay: r.kind === P.Kind.PLAY ? r.amount : "0", perSecond: r.kind === P.Kind.SECONDS ? String(BigInt(r.amount) / BigInt(r.units)) : "0", download: r.kind === P.Kind.DOWNLOAD ? r.amount : "0" }),
        });
        charge = r.kind === P.Kind.PLAY ? L.chargePlay(state, listing)
          : r.kind === P.Kind.SECONDS ? L.chargeSeconds(listing, Number(r.units))
          : r.kind === P.Kind.TIP ? L.chargeTip(BigInt(r.amount), { listing, memo: r.memo })
          : L.chargeDownload(state, listing);
      }
      assert.equal(charge.amount, BigInt(r.amount), r.description);
      const signer = byHead.get(r.head)?.privateKey ?? vectors.vouchers[0].privateKey;
      const built = L.buildPayment(state, charge, domain, signer);
      state = built.next;
      assert.equal(state.voucher.playHash, r.head, r.description);
      assert.equal(built.body.seq, r.seq);
      const vec = byHead.get(r.head);
      if (vec) {
        assert.deepEqual(built.body.voucher, { payees: vec.message.payees.map(getAddress), amounts: vec.message.amounts, playHash: vec.message.playHash }, vec.description);
        assert.equal(built.digest, vec.digest, vec.description);
        assert.equal(built.body.signature, vec.signature, vec.description);
        checked++;
      }
      channelOfHead.set(r.head, channelId);
    }
  }
  assert.equal(checked, vectors.vouchers.length, "every voucher vector was rebuilt from receipts");
});

test("stream-to-own doubling and ownership", () => {
  const terms = termsFromJson({ perPlay: "1000", model: Model.STREAM_TO_OWN, ownAfter: 3 });
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => playPrice(terms, n)), [1000n, 2000n, 4000n, 0n, 0n]);
  assert.equal(ownedAfter(terms), 7000n);
  const flat = termsFromJson({ perPlay: "5", perSecond: "7" });
  assert.equal(playPrice(flat, 9), 5n);
  assert.equal(secondsPrice(flat, 30), 210n);
  const overflow = (fn) => assert.throws(fn, (err) => err.code === "price_overflow" && /outside \[0, 2\^96\)/.test(err.message));
  overflow(() => secondsPrice({ ...flat, perSecond: 2n ** 95n }, 2));
  overflow(() => playPrice({ ...terms, perPlay: 2n ** 94n }, 3));
  const split = P.makeSplit({ recipients: ["0x1111111111111111111111111111111111111111"], bps: [10000] });
  const listing = L.makeListing({ trackId: "0x" + "ab".repeat(32), terms, split, splitHash: P.splitHash(split) });
  let state = L.openedState("0x" + "01".repeat(32));
  const amounts = [];
  for (let i = 0; i < 5; i++) {
    const charge = L.chargePlay(state, listing);
    amounts.push(charge.amount);
    state = L.applyCharge(state, charge).state;
  }
  assert.deepEqual(amounts, [1000n, 2000n, 4000n, 0n, 0n]);
  assert.equal(L.spent(state), 7000n);
  assert.equal(state.seq, 5);
  // a downloaded track plays free
  const dl = L.makeListing({ trackId: "0x" + "cd".repeat(32), terms: termsFromJson({ perPlay: "9", download: "100" }), split, splitHash: P.splitHash(split) });
  state = L.applyCharge(state, L.chargeDownload(state, dl)).state;
  assert.equal(L.chargePlay(state, dl).amount, 0n);
  assert.throws(() => L.chargeDownload(state, dl), /already owned/);
});

test("state from a relay summary round-trips", () => {
  const vec = vectors.vouchers.at(-1);
  const summary = {
    channelId: vec.message.channelId, seq: 5, voucher: { payees: vec.message.payees, amounts: vec.message.amounts, playHash: vec.message.playHash },
    plays: { ["0x" + "AB".repeat(32)]: 2 }, owned: [],
  };
  const state = L.stateFromSummary(summary);
  assert.equal(P.voucherDigest(domain, state.voucher), vec.digest);
  assert.equal(L.playsOf(state, "0x" + "ab".repeat(32)), 2);
});

test("channel ids and caps digests", () => {
  const id = P.channelIdFor({
    chainId: 31337, contract: vectors.domain.verifyingContract, payer: "0x1111111111111111111111111111111111111111",
    token: P.ZERO_ADDRESS, relay: "0x2222222222222222222222222222222222222222", salt: "0x" + "00".repeat(31) + "01",
  });
  assert.match(id, /^0x[0-9a-f]{64}$/);
  if (vectors.channelIds) {
    for (const c of vectors.channelIds) assert.equal(P.channelIdFor({ ...c, contract: c.contract ?? vectors.domain.verifyingContract }), c.channelId);
  }
  // Caps (the relay's service.caps_digest): the hand-built digest equals ethers' generic EIP-712 encoder
  const caps = { channelId: "0x" + "07".repeat(32), dailyCap: 123n, sessionCap: 0n, issuedAt: 1700000000n };
  assert.equal(P.capsDigest(domain, caps), TypedDataEncoder.hash(domain, P.CAPS_TYPES, caps));
});

test("hand-built voucher digests equal ethers' generic EIP-712 encoder", () => {
  for (const vec of vectors.vouchers) {
    assert.equal(TypedDataEncoder.hash(domain, P.VOUCHER_TYPES, P.voucherMessage(voucherOf(vec.message))), vec.digest);
  }
});

test("read tokens (ReadAccess): digests, signatures and wire form", () => {
  assert.ok(vectors.readTokens?.length > 0);
  for (const vec of vectors.readTokens) {
    const m = { ...vec.message, notAfter: BigInt(vec.message.notAfter) };
    const digest = P.readAccessDigest(domain, m);
    assert.equal(digest, vec.digest);
    assert.equal(TypedDataEncoder.hash(domain, P.READ_ACCESS_TYPES, m), vec.digest);
    assert.equal(P.signDigest(vec.privateKey, digest), vec.signature);
    assert.equal(getAddress(P.recoverDigest(digest, vec.signature)), vec.signer);
    assert.equal(P.readTokenText(m, vec.signature), vec.token);
  }
});

