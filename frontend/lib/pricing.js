// Track prices (a port of src/chainstream/pricing.py): what a play, N seconds or a download costs.
import { checkAmount } from "./protocol.js";

export const Model = Object.freeze({ FLAT: 0, STREAM_TO_OWN: 1 });
export const MAX_OWN_AFTER = 32;
export const MAX_SECONDS_PER_CHARGE = 3_600;

export class PricingError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

/** A price the contract can hold, else a PricingError "price_overflow" (as the relay answers). */
function priceAmount(value, what) {
  try {
    return checkAmount(value, what);
  } catch (err) {
    if (err instanceof RangeError) throw new PricingError(err.message, "price_overflow");
    throw err;
  }
}

/** Terms from the catalog JSON ({perPlay, perSecond, download: decimal strings, model, ownAfter, minSeconds}). */
export function termsFromJson(j) {
  return Object.freeze({
    perPlay: BigInt(j.perPlay ?? 0),
    perSecond: BigInt(j.perSecond ?? 0),
    download: BigInt(j.download ?? 0),
    model: Number(j.model ?? 0),
    ownAfter: Number(j.ownAfter ?? 0),
    minSeconds: Number(j.minSeconds ?? 0),
    enabled: j.enabled ?? true,
  });
}

/** The ABI tuple (perPlay, perSecond, download, model, ownAfter, minSeconds, enabled) for registerTrack/setTerms. */
export const termsTuple = (t) => [t.perPlay, t.perSecond, t.download, t.model, t.ownAfter, t.minSeconds, t.enabled];

/** The price of the listener's `playNumber`-th play (1-based) of a track. */
export function playPrice(terms, playNumber) {
  if (!terms.enabled) throw new PricingError("the track is not offered in this token", "not_offered");
  if (playNumber < 1) throw new PricingError("play numbers start at 1", "bad_play_number");
  if (terms.model === Model.STREAM_TO_OWN) {
    if (playNumber > terms.ownAfter) return 0n; // owned: further plays are free
    return priceAmount(terms.perPlay * 2n ** BigInt(playNumber - 1), "stream-to-own price");
  }
  return terms.perPlay;
}

export function secondsPrice(terms, seconds) {
  if (!terms.enabled || terms.perSecond === 0n) {
    throw new PricingError("the track is not offered per second in this token", "not_offered");
  }
  if (seconds <= 0) throw new PricingError("seconds must be positive", "bad_units");
  return priceAmount(terms.perSecond * BigInt(seconds), "seconds price");
}

export function downloadPrice(terms) {
  if (!terms.enabled || terms.download === 0n) throw new PricingError("the track is not for sale in this token", "not_offered");
  return terms.download;
}

/** Stream-to-own: the total paid once the track is owned (null for flat pricing). */
export function ownedAfter(terms) {
  if (terms.model !== Model.STREAM_TO_OWN) return null;
  return terms.perPlay * (2n ** BigInt(terms.ownAfter) - 1n);
}

/** How a track is metered by default: "play" when it has a per-play price, else "seconds" when it has one. */
export function meteringOf(terms) {
  if (terms.perPlay > 0n || terms.model === Model.STREAM_TO_OWN) return "play";
  if (terms.perSecond > 0n) return "seconds";
  return "play";
}
