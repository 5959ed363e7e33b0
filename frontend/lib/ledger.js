// A channel's pure payment ledger (a port of src/chainstream/ledger.py): from its state and a charge, the exact
// next voucher. The relay recomputes the same voucher and accepts only an identical one.
import { getAddress } from "ethers";
import {
  Kind,
  KIND_NAMES,
  MAX_MEMO_BYTES,
  ZERO_HASH,
  addToVoucher,
  addressWord,
  applySplit,
  checkAmount,
  emptyVoucher,
  makeReceipt,
  signDigest,
  splitHash as hashSplit,
  voucherDigest,
  voucherFromJson,
  voucherJson,
  voucherTotal,
} from "./protocol.js";
import { MAX_SECONDS_PER_CHARGE, PricingError, downloadPrice, playPrice, secondsPrice } from "./pricing.js";

/**
 * A track as priced in one token: {trackId, title, terms (pricing.termsFromJson), split (protocol.makeSplit),
 * splitHash}. Build it from the catalog with `listingFromCatalog`.
 */
export function makeListing({ trackId, title = "", terms, split, splitHash }) {
  return Object.freeze({ trackId: trackId.toLowerCase(), title, terms, split, splitHash: splitHash.toLowerCase() });
}

/** Everything needed to price and build the channel's next voucher. */
export function makeState({ voucher, seq = 0, plays = new Map(), owned = new Set() }) {
  return Object.freeze({ voucher, seq: Number(seq), plays: new Map(plays), owned: new Set(owned) });
}

export const openedState = (channelId) => makeState({ voucher: emptyVoucher(channelId) });

/**
 * The ledger state from the relay's channel summary (GET /channels/{id}, or the `state` of a rejection), taken
 * as is. Its `plays` and `owned` decide prices: a client must not sign on them unverified (see replayHistory).
 */
export function stateFromSummary(summary) {
  const plays = new Map(Object.entries(summary.plays ?? {}).map(([t, n]) => [t.toLowerCase(), Number(n)]));
  const owned = new Set((summary.owned ?? []).map((t) => t.toLowerCase()));
  return makeState({ voucher: voucherFromJson(summary.channelId, summary.voucher), seq: summary.seq, plays, owned });
}

export const spent = (state) => voucherTotal(state.voucher);
export const playsOf = (state, trackId) => state.plays.get(trackId.toLowerCase()) ?? 0;

function makeCharge({ kind, target, units, amount, splitHash, payments, memo = "", request }) {
  return Object.freeze({ kind, target: target.toLowerCase(), units, amount, splitHash, payments, memo, request });
}

/** A play: flat price, the stream-to-own curve's next step, or free once owned or downloaded. */
export function chargePlay(state, listing) {
  const amount = state.owned.has(listing.trackId) ? 0n : playPrice(listing.terms, playsOf(state, listing.trackId) + 1);
  return makeCharge({
    kind: Kind.PLAY, target: listing.trackId, units: 1, amount, splitHash: listing.splitHash,
    payments: amount ? applySplit(listing.split, amount) : [],
    request: { kind: "play", trackId: listing.trackId },
  });
}

/** `seconds` seconds of listening at the track's per-second price. */
export function chargeSeconds(listing, seconds) {
  if (seconds > MAX_SECONDS_PER_CHARGE) throw new PricingError(`charge at most ${MAX_SECONDS_PER_CHARGE} seconds at a time`, "bad_units");
  const amount = secondsPrice(listing.terms, seconds);
  return makeCharge({
    kind: Kind.SECONDS, target: listing.trackId, units: seconds, amount, splitHash: listing.splitHash,
    payments: applySplit(listing.split, amount), request: { kind: "seconds", trackId: listing.trackId, seconds },
  });
}

/** A one-time purchase; later plays of the track are free. */
export function chargeDownload(state, listing) {
  if (state.owned.has(listing.trackId)) throw new PricingError("the track is already owned", "already_owned");
  const amount = downloadPrice(listing.terms);
  return makeCharge({
    kind: Kind.DOWNLOAD, target: listing.trackId, units: 1, amount, splitHash: listing.splitHash,
    payments: applySplit(listing.split, amount), request: { kind: "download", trackId: listing.trackId },
  });
}

/** A tip to a track (its split applies, platform fee included) or straight to one artist's address. */
export function chargeTip(amountRaw, { listing = null, artist = null, memo = "" } = {}) {
  const amount = checkAmount(amountRaw, "tip");
  if (amount <= 0n) throw new PricingError("a tip must be positive", "bad_amount");
  if (new TextEncoder().encode(memo).length > MAX_MEMO_BYTES) {
    throw new PricingError(`tip message longer than ${MAX_MEMO_BYTES} bytes`, "memo_too_long");
  }
  if ((listing === null) === (artist === null)) throw new PricingError("tip either a track or an artist", "bad_tip");
  if (listing !== null) {
    return makeCharge({
      kind: Kind.TIP, target: listing.trackId, units: 0, amount, splitHash: listing.splitHash,
      payments: applySplit(listing.split, amount), memo,
      request: { kind: "tip", trackId: listing.trackId, amount: String(amount), memo },
    });
  }
  const payee = getAddress(artist);
  return makeCharge({
    kind: Kind.TIP, target: addressWord(payee), units: 0, amount, splitHash: ZERO_HASH, payments: [[payee, amount]], memo,
    request: { kind: "tip", artist: payee, amount: String(amount), memo },
  });
}

/** The state after `charge`, and the receipt chained into its voucher. */
export function applyCharge(state, charge) {
  const receipt = makeReceipt({
    seq: state.seq + 1, target: charge.target, kind: charge.kind, units: charge.units, amount: charge.amount,
    splitHash: charge.splitHash, memo: charge.memo,
  });
  const voucher = addToVoucher(state.voucher, charge.payments, receipt);
  const plays = new Map(state.plays);
  const owned = new Set(state.owned);
  if (charge.kind === Kind.PLAY) plays.set(charge.target, (plays.get(charge.target) ?? 0) + 1);
  else if (charge.kind === Kind.DOWNLOAD) owned.add(charge.target);
  return { state: makeState({ voucher, seq: Number(receipt.seq), plays, owned }), receipt };
}

/** The unsigned next state of a charge and the digest its voucher is signed over. */
export function preparePayment(state, charge, domain) {
  const { state: next } = applyCharge(state, charge);
  return { next, digest: voucherDigest(domain, next.voucher) };
}

/** The request body of POST /channels/{id}/payments for a prepared payment and its signature. */
export function paymentBody(next, charge, signature) {
  const c = { ...charge.request };
  if (!("memo" in c)) c.memo = "";
  return { seq: next.seq, charge: c, voucher: voucherJson(next.voucher), signature };
}

/**
 * Price, chain and sign a charge: the request body for POST /channels/{id}/payments and the state the relay
 * will hold once it accepts it. `signer` is an ethers Wallet (the session key) or a private key.
 */
export function buildPayment(state, charge, domain, signer) {
  const { next, digest } = preparePayment(state, charge, domain);
  return { body: paymentBody(next, charge, signDigest(signer, digest)), next, digest };
}

export const kindName = (kind) => KIND_NAMES[kind];

// ------------------------------------------------------------------------------------------------ replay
/** A relay state this page will not build on (see replayHistory); `code` is "untrusted_state". */
export class UntrustedState extends Error {
  constructor(message) {
    super(message);
    this.code = "untrusted_state";
  }
}

/** One item of GET /channels/{id}/history, parsed strictly: {seq, kind, target, units, amount, memo, digest}. */
export function acceptedPayment(item) {
  const hex32 = (v) => typeof v === "string" && /^0x[0-9a-fA-F]{64}$/.test(v);
  const kind = KIND_NAMES.indexOf(item?.kind);
  if (!Number.isSafeInteger(item?.seq) || !Number.isSafeInteger(item?.units) || kind < 0 || !hex32(item.target)
    || !hex32(item.digest) || typeof item.amount !== "string" || !/^(0|[1-9][0-9]{0,28})$/.test(item.amount)
    || (item.memo != null && typeof item.memo !== "string")) {
    throw new UntrustedState("the relay's history has a malformed item: not adopted");
  }
  return Object.freeze({
    seq: item.seq, kind, target: item.target.toLowerCase(), units: item.units, amount: BigInt(item.amount),
    memo: item.memo ?? "", digest: item.digest.toLowerCase(),
  });
}

/** Every charge that could have produced `payment`: the target's splits (any registry version), and for a tip
 * whose target is an address word, the tip straight to that address. */
function* candidateCharges(payment, splitsOf) {
  const { kind, target, units, amount, memo } = payment;
  for (const split of splitsOf(target)) {
    yield makeCharge({ kind, target, units, amount, splitHash: hashSplit(split), payments: amount ? applySplit(split, amount) : [], memo });
  }
  if (kind === Kind.TIP && target.startsWith("0x" + "00".repeat(12)) && amount > 0n) {
    const payee = getAddress("0x" + target.slice(26));
    yield makeCharge({ kind, target, units: 0, amount, splitHash: ZERO_HASH, payments: [[payee, amount]], memo });
  }
}

/**
 * The ledger state after `payments` (acceptedPayment items, consecutive from `start.seq + 1`), recomputed here:
 * each receipt is rebuilt and applied with the code that signs, and must lead to the voucher digest reported
 * for it. `splitsOf(trackId)` gives the track's splits over all its registry versions ([] for none). Plays and
 * owned tracks then come from receipts, never from the relay. The caller compares the result with a voucher
 * its own key signed, whose playHash commits to the whole chain (PROTOCOL.md 6.1). Throws UntrustedState.
 */
export function replayHistory(start, payments, splitsOf, domain) {
  let state = start;
  for (const payment of payments) {
    if (payment.seq !== state.seq + 1) throw new UntrustedState(`the relay's history jumps from seq ${state.seq} to ${payment.seq}`);
    let next = null;
    for (const charge of candidateCharges(payment, splitsOf)) {
      let candidate;
      try {
        candidate = applyCharge(state, charge).state;
      } catch {
        continue; // a field out of range: not what anybody signed
      }
      if (voucherDigest(domain, candidate.voucher).toLowerCase() === payment.digest) {
        next = candidate;
        break;
      }
    }
    if (!next) throw new UntrustedState(`the relay's payment ${payment.seq} does not chain into the voucher it reports`);
    state = next;
  }
  return state;
}

/** Whether two states price alike: same seq, voucher, plays per track and owned tracks. */
export function sameState(a, b) {
  const v = (s) => JSON.stringify({
    seq: s.seq, ...voucherJson(s.voucher), playHash: s.voucher.playHash.toLowerCase(), channelId: s.voucher.channelId.toLowerCase(),
  });
  const plays = (s) => JSON.stringify([...s.plays.entries()].filter(([, n]) => n).sort());
  const owned = (s) => JSON.stringify([...s.owned].sort());
  return v(a) === v(b) && plays(a) === plays(b) && owned(a) === owned(b);
}
