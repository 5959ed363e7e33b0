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

/** The ledger state from the relay's channel summary (GET /channels/{id}, or the `state` of a rejection). */
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
