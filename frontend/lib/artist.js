// The artist's side, as lib/listener.js is the listener's: earnings (relay), claimable balances and claims,
// scheduled payouts (opt in or out by signature), registering tracks, changing a track's price or split (TrackRegistry), publishing audio on the relay. The studio
// view renders this model and calls it; it never sends a transaction itself. No DOM here. Also the pure rules of the
// studio's split editor: shares that always add up to 100 %.
import { Contract, ZeroAddress, getAddress } from "ethers";

import { AUTH_TTL, SCHEDULE_TYPES, authJson, gaslessDomain, parseQuote } from "./gasless.js";
import { splitProblems } from "./protocol.js";
import { termsTuple } from "./pricing.js";
import { RelayError } from "./relay.js";
import { mined } from "./wallet.js";
import { artistNames } from "./profiles.js";

export const TOTAL_BPS = 10_000;
/** The longest title the player shows in full (the registry stores any string; the relay's catalog shows it). */
export const MAX_TITLE = 120;

/** Why a title cannot be registered, or null: a track needs a name listeners can see (never a bare hash). */
export function titleProblem(title) {
  const t = String(title ?? "").trim();
  if (!t) return "Give the track a title: listeners see it in the catalog (without one they would see its hash).";
  if (t.length > MAX_TITLE) return `A title can have up to ${MAX_TITLE} characters (this one has ${t.length}).`;
  return null;
}

// ------------------------------------------------------------------------------------------ shares
/**
 * Integer shares (bps) summing to 10,000 from weights: proportional, floor, the remainder to the first entries
 * (the primary artist first, who also gets the rounding dust of every payment). All weights 0: equal shares.
 */
export function normalise(weights, total = TOTAL_BPS) {
  const n = weights.length;
  if (!n) return [];
  const w = weights.map((x) => (Number.isFinite(x) && x > 0 ? x : 0));
  const sum = w.reduce((a, b) => a + b, 0);
  const raw = sum > 0 ? w.map((x) => (x * total) / sum) : w.map(() => total / n);
  const out = raw.map(Math.floor);
  let left = total - out.reduce((a, b) => a + b, 0);
  // the largest remainders get the leftover bps, ties to the earlier (primary first)
  const order = raw.map((x, i) => [x - Math.floor(x), i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let k = 0; left > 0; k = (k + 1) % n, left -= 1) out[order[k][1]] += 1;
  return out;
}

/** A new collaborator joins with an equal share; everyone keeps their proportion of the rest. */
export function addShare(bps) {
  const n = bps.length + 1;
  const share = Math.floor(TOTAL_BPS / n);
  return [...normalise(bps, TOTAL_BPS - share), share];
}

/** A collaborator leaves: their share goes back to the others in proportion. */
export function removeShare(bps, index) {
  return normalise(bps.filter((_, i) => i !== index));
}

/**
 * One row's share is set to `value` bps (clamped to 0..10,000) and the split still adds up to 100 %:
 * - a collaborator's share: the primary artist takes what is left (so typing each collaborator's share gives
 *   exactly those shares); if that is not enough, the primary gets 0 and the other collaborators give in proportion;
 * - the primary artist's share: the collaborators share the rest in their current proportions (equally when all 0).
 * A single row keeps 100 %.
 */
export function setShare(bps, index, value) {
  if (bps.length < 2) return [TOTAL_BPS];
  const v = Math.max(0, Math.min(TOTAL_BPS, Math.round(value)));
  const out = [...bps];
  out[index] = v;
  if (index === 0) {
    const rest = normalise(bps.slice(1), TOTAL_BPS - v);
    return [v, ...rest];
  }
  const others = out.reduce((a, b, i) => (i === 0 || i === index ? a : a + b), 0);
  const left = TOTAL_BPS - v - others;
  if (left >= 0) {
    out[0] = left;
    return out;
  }
  const idx = out.map((_, i) => i).filter((i) => i !== 0 && i !== index);
  const rest = normalise(idx.map((i) => out[i]), TOTAL_BPS - v);
  out[0] = 0;
  idx.forEach((i, k) => { out[i] = rest[k]; });
  return out;
}

/** "33.33" from 3333 bps. */
export const pctText = (bps) => String(Number((bps / 100).toFixed(2)));

/** bps from a typed percentage ("12.5" -> 1250), or null when it is not a number from 0 to 100. */
export function parsePct(text) {
  const t = String(text ?? "").trim();
  if (!/^\d{1,3}(\.\d{0,2})?$|^\.\d{1,2}$/.test(t)) return null;
  const v = Math.round(parseFloat(t) * 100);
  return v >= 0 && v <= TOTAL_BPS ? v : null;
}

// ------------------------------------------------------------------------------------------ the model
/**
 * The connected artist: reads from the relay and the chain, writes through the wallet. Events: "change" (detail:
 * what changed). Writes resolve to what they did; every transaction goes through `mined` (the page's transaction
 * list shows it: pending, confirmed or failed with the reason).
 */
export class Artist extends EventTarget {
  constructor(ctx, account) {
    super();
    this.ctx = ctx;
    this.account = getAddress(account);
    this.earnings = null;
    this.catalog = [];
    this.claimable = {}; // token address -> bigint
    this.csvUrl = null;
    this.payouts = null; // GET /artists/{address}/payouts: per token, the schedule, the next payout, every payout
    this.payoutQuote = null; // the relay's quote (payoutFee: what it keeps per payout), null if it offers none
  }

  changed(what = "all") {
    this.dispatchEvent(new CustomEvent("change", { detail: what }));
  }

  async _registry() {
    const { info, abis, wallet } = this.ctx;
    return new Contract(info.registry, abis.registry, await wallet.signer());
  }

  async _channels(write = false) {
    const { info, abis, wallet } = this.ctx;
    return new Contract(info.channels, abis.channels, write ? await wallet.signer() : wallet.browserProvider);
  }

  /** Earnings, the catalog and the claimable balance in each token. */
  async load() {
    const { relay, info } = this.ctx;
    const channels = await this._channels();
    const [earnings, catalog, payouts, quote, ...claimable] = await Promise.all([
      relay.earnings(this.account), relay.catalog(),
      // a relay without the gas-free routes (or an older one) still shows earnings
      relay.payouts(this.account).catch(() => null), relay.onboardQuote().then(parseQuote).catch(() => null),
      ...info.tokens.map((t) => channels.claimable(this.account, t.address).catch(() => 0n)),
    ]);
    this.earnings = earnings;
    this.catalog = catalog.tracks;
    this.payouts = payouts;
    await artistNames.learn(relay, this.ctx.domain, catalog.tracks).catch(() => false);
    this.payoutQuote = quote;
    info.tokens.forEach((t, i) => { this.claimable[t.address] = claimable[i]; });
    this.csvUrl = await relay.earningsCsvUrl(this.account); // the token earnings() just used (cached)
    this.changed("load");
  }

  /** This artist's verified name, or null if it has signed none. */
  name() {
    return artistNames.nameOf(this.account);
  }

  /** Sign and publish this artist's name (one wallet signature); resolves to the name now shown. */
  async setName(name) {
    const { relay, domain, info, loadedAt } = this.ctx;
    const now = Number(info.time ?? Date.now() / 1000) + (Date.now() / 1000 - (loadedAt ?? Date.now() / 1000));
    const shown = await artistNames.setName(relay, domain, await this.ctx.wallet.signer(), this.account, name, now);
    this.changed("name");
    return shown;
  }

  /** This artist's tracks (as the primary artist / owner). */
  tracks() {
    return this.catalog.filter((t) => getAddress(t.owner) === this.account);
  }

  /** Claim what settlements credited in `token`; resolves to {amount, hash}. */
  async claim(token) {
    const channels = await this._channels(true);
    const receipt = await mined(channels.claim(token, this.account), "Claim earnings");
    let amount = null;
    for (const log of receipt.logs) {
      try {
        const p = channels.interface.parseLog(log);
        if (p?.name === "Claimed") amount = p.args.amount;
      } catch {
        /* another contract's log */
      }
    }
    this.claimable[getAddress(token)] = 0n;
    this.changed("claim");
    return { amount, hash: receipt.hash };
  }

  /** The payout view of `token` (schedule, claimable, nextPayoutAt, payouts), or null when the relay gave none. */
  payoutsOf(token) {
    const all = this.payouts?.tokens ?? {};
    const key = Object.keys(all).find((k) => getAddress(k) === getAddress(token));
    return key ? all[key] : null;
  }

  /**
   * Opt in to scheduled payouts of `token` (a threshold and/or a period, the most the relay may keep per payout),
   * or opt out (enabled false), by an EIP-712 PayoutSchedule signature the relay submits: no transaction, no gas.
   * The nonce is the contract's scheduleNonce, so an older signed schedule can never be replayed after this one.
   */
  async schedulePayouts(token, { enabled = true, threshold = 0n, period = 0, maxFee = 0n, recipient = ZeroAddress } = {}) {
    if (enabled && !BigInt(threshold) && !Number(period)) throw new StudioError("choose a threshold, a period, or both");
    if (!Number.isInteger(Number(period)) || Number(period) < 0 || Number(period) > 2 ** 32 - 1) throw new StudioError("the period is out of range");
    const { info, abis, wallet } = this.ctx;
    const signer = await wallet.signer();
    const channels = await this._channels();
    const address = getAddress(await channels.gasless()); // from the chain, never from the relay
    const gasless = new Contract(address, abis.gasless, wallet.browserProvider);
    const [nonce, block] = await Promise.all([gasless.scheduleNonce(this.account), wallet.browserProvider.getBlock("latest")]);
    const auth = { payee: this.account, token: getAddress(token), enabled, recipient: getAddress(recipient),
      threshold: BigInt(threshold), period: Number(period), maxFee: BigInt(maxFee), nonce,
      deadline: BigInt(Number(block.timestamp) + AUTH_TTL) };
    const signature = await signer.signTypedData(gaslessDomain(info.chainId, address), SCHEDULE_TYPES, auth);
    const reply = await this.ctx.relay.schedulePayouts({ auth: authJson(auth), signature });
    this.payouts = await this.ctx.relay.payouts(this.account).catch(() => this.payouts);
    this.changed("payouts");
    return reply;
  }

  /** Register a track: refused here, before any wallet prompt, when the title or the split is not valid. */
  async registerTrack({ trackId, title, token, terms, split }) {
    const problem = titleProblem(title);
    if (problem) throw new StudioError("untitled_track", problem);
    if (!/^0x[0-9a-fA-F]{64}$/.test(trackId)) throw new StudioError("bad_track_id", "The content hash must be 0x and 64 hex digits: choose the audio file to compute it.");
    checkSplit(split);
    const registry = await this._registry();
    await mined(registry.registerTrack(trackId, title.trim(), token, termsTuple(terms), splitTuple(split)), `Register “${title.trim()}”`);
    this.changed("catalog");
  }

  async setTerms(trackId, token, terms) {
    const registry = await this._registry();
    await mined(registry.setTerms(trackId, token, termsTuple(terms)), "New price");
    this.changed("catalog");
  }

  async setSplit(trackId, split) {
    checkSplit(split);
    const registry = await this._registry();
    await mined(registry.setSplit(trackId, splitTuple(split)), "New split");
    this.changed("catalog");
  }

  /**
   * Publish a registered track's audio on the relay: the owner signs the upload message (personal_sign, one
   * wallet prompt), then the file goes up with progress (XMLHttpRequest: fetch reports no upload progress). The
   * relay checks the owner on chain and that the file's keccak256 is the track id, then transcodes it
   * (docs/API.md). progress(state, text, pct): signing | uploading | transcoding | published | failed.
   */
  async uploadAudio(file, trackId, progress = () => {}) {
    const { info, wallet } = this.ctx;
    progress("signing", "Sign the upload in your wallet…", 0);
    const message = `ChainStream: publish audio\ntrack: ${trackId.toLowerCase()}\nrelay: ${info.relay}\nchain: ${info.chainId}`;
    const signature = await (await wallet.signer()).signMessage(message);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", `/api/v1/tracks/${trackId}/media`);
      xhr.setRequestHeader("X-ChainStream-Signature", signature);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) progress("uploading", `Uploading ${file.name}… ${Math.round((e.loaded / e.total) * 100)}%`, (e.loaded / e.total) * 100);
      };
      xhr.upload.onload = () => progress("transcoding", "Uploaded; the relay is transcoding it for streaming…", 100);
      xhr.onload = () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = { error: { code: `http_${xhr.status}`, message: xhr.statusText } };
        }
        if (xhr.status >= 200 && xhr.status < 300) {
          progress("published", `Published: ${body.duration.toFixed(1)} s in ${body.segments.length} segments`, 100);
          resolve(body);
        } else {
          progress("failed", `Upload refused: ${body?.error?.message ?? xhr.statusText}`);
          reject(new RelayError(xhr.status, body));
        }
      };
      xhr.onerror = () => {
        progress("failed", "The relay did not answer the upload");
        reject(new RelayError(0, { error: { code: "relay_unreachable", message: "the upload did not reach the relay" } }));
      };
      progress("uploading", `Uploading ${file.name}…`, 0);
      xhr.send(file);
    });
  }
}

/** A studio refusal before anything is sent: a stable code and a sentence saying what to do. */
export class StudioError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function checkSplit(split) {
  const problems = splitProblems(split);
  if (problems.length) throw new StudioError("bad_split", `The split cannot be published: ${problems[0]}.`);
}

const splitTuple = (s) => [s.recipients, s.bps, s.feeRecipient, s.feeBps];
