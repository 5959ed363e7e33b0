// Read tokens (docs/API.md, "Read tokens"): the relay shows a channel's state and history, a listener's channels
// and an artist's earnings only to their owner. This model signs the short-lived ReadAccess tokens those reads
// carry: with the channel's session key kept in this browser (no wallet prompt), else once per quarter hour with
// the wallet. Tokens are cached until shortly before they expire. No DOM here.
import { getAddress } from "ethers";

import * as P from "./protocol.js";
import * as S from "./session.js";

const TTL = 600; // seconds a token is asked for (relays refuse much longer ones; GET /info readTokenMaxTtl)
const RENEW_AT = 60; // renewed with less than this left

export class ReadTokens {
  constructor(ctx) {
    this.ctx = ctx;
    this._cache = new Map(); // signer|account|channel -> {text, notAfter, bySession}
    this._pending = new Map(); // the same key -> a signature in progress (one wallet prompt, not one per read)
    this._refused = new Set(); // session keys whose tokens the relay refused (expired by chain time, replaced)
  }

  /** The relay refused a token this session key signed: do not sign reads with it again. */
  refused(address) {
    if (address) this._refused.add(getAddress(address));
    for (const [key, token] of this._cache) if (token.signer === address) this._cache.delete(key);
  }

  /** The relay's clock (read tokens' notAfter is judged on it), from GET /info's `time` at load. */
  relayNow() {
    const { info, loadedAt } = this.ctx;
    const offset = info?.time ? info.time - (loadedAt ?? Date.now() / 1000) : 0;
    return Math.floor(Date.now() / 1000 + offset);
  }

  forget() {
    this._cache.clear();
    this._pending.clear();
    this._refused.clear();
  }

  /**
   * A token for a read. scope: {channel} (a channel's summary, history, events) or {account} (the listener's
   * channels, or the artist's earnings and events). wallet: true skips session keys (after a refusal, or for
   * earnings, which only the artist's own key may read).
   */
  async token({ channel = null, account = null }, { wallet = false } = {}) {
    const owner = getAddress(account ?? this.ctx.wallet.account);
    if (!wallet) {
      const session = channel ? this._sessionKey(channel) : this._anySessionKey(owner);
      if (session) return this._sign(session.wallet, owner, channel ? channel : P.ZERO_HASH, true);
    }
    return this._sign(null, owner, P.ZERO_HASH, false);
  }

  /** A stored key still valid by chain time (the relay judges session keys by it), with a margin. */
  _live(stored) {
    const chainNow = this.ctx.listener?.chainNow?.() ?? Date.now() / 1000;
    return stored && stored.expiry > chainNow + RENEW_AT && !this._refused.has(getAddress(stored.address));
  }

  _sessionKey(channelId) {
    const { info } = this.ctx;
    const stored = S.loadSessionKey(info.chainId, info.channels, channelId);
    return this._live(stored) && this._relayKnows(channelId, stored.address) ? stored : null;
  }

  /** Whether the relay's last summary of the channel names this key (a key just authorised is not known to it
   * until its watcher sees the transaction: until then the wallet's token reads, rather than a refused one). */
  _relayKnows(channelId, address) {
    const l = this.ctx.listener;
    const id = channelId.toLowerCase();
    const seen = [l?.channel, ...(l?.channels ?? [])].find((c) => c?.channelId?.toLowerCase() === id);
    return !seen?.sessionKey || getAddress(seen.sessionKey) === getAddress(address);
  }

  /** Any live session key of the account's channels known here (it may list the account's channels). */
  _anySessionKey(account) {
    const { info } = this.ctx;
    for (const id of S.knownChannels(info.chainId, account)) {
      const stored = this._sessionKey(id);
      if (stored) return stored;
    }
    return null;
  }

  async _sign(sessionWallet, account, channelId, bySession) {
    const { info, domain } = this.ctx;
    const signerName = sessionWallet ? sessionWallet.address : "wallet";
    const key = `${signerName}|${account}|${channelId.toLowerCase()}`;
    const cached = this._cache.get(key);
    if (cached && cached.notAfter - this.relayNow() > RENEW_AT) return cached;
    if (this._pending.has(key)) return this._pending.get(key);
    const work = (async () => {
      const message = { account, channelId, relay: getAddress(info.relay), notAfter: BigInt(this.relayNow() + TTL) };
      let signature;
      if (sessionWallet) signature = P.signDigest(sessionWallet, P.readAccessDigest(domain, message));
      else {
        const signer = await this.ctx.wallet.signer();
        signature = await signer.signTypedData(domain, P.READ_ACCESS_TYPES, message);
      }
      const token = {
        text: P.readTokenText(message, signature), notAfter: Number(message.notAfter), bySession,
        signer: sessionWallet ? getAddress(sessionWallet.address) : null,
      };
      this._cache.set(key, token);
      return token;
    })();
    this._pending.set(key, work);
    try {
      return await work;
    } finally {
      this._pending.delete(key);
    }
  }
}
