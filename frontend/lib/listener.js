// The listener's side: channels (open, top up, caps, close, withdraw) and payments (vouchers signed by the
// browser's session key, POSTed to the relay, resynchronised from the relay's state when they drift).
import { Contract, Signature, ZeroAddress, getAddress, hexlify, randomBytes } from "ethers";

import * as G from "./gasless.js";
import * as P from "./protocol.js";
import * as L from "./ledger.js";
import { termsFromJson, termsTuple } from "./pricing.js";
import { RelayError } from "./relay.js";
import * as S from "./session.js";
import { mined } from "./wallet.js";
import { artistNames } from "./profiles.js";

/** The most receipts a resync replays (as the SDK's MAX_REPLAY): a longer claimed history is refused unread. */
const MAX_REPLAY = 100_000;

const RESYNC_CODES = new Set(["voucher_mismatch", "stale_voucher", "seq_gap"]);
/** Days a new browser session key is valid for, unless the listener picks another validity. */
export const DEFAULT_SESSION_DAYS = 1;

/** sessionStorage key of what this tab paid per channel ("spent this session" survives a reload, not the tab). */
export const SESSION_SPENT_KEY = "chainstream.sessionSpent";

/**
 * The listener's model. It reads the relay, the deployment and the wallet from `ctx` and never calls the UI: it
 * tells it through events — "change" (detail: what changed), "paid" (detail: {ack, charge}, a payment went through),
 * "stop-playback" (a close is starting: the player pays what was heard and stops, synchronously) and "closed".
 */
export class Listener extends EventTarget {
  constructor(ctx, { storage = globalThis.sessionStorage ?? null } = {}) {
    super();
    this.ctx = ctx;
    this.storage = storage;
    this._spent = this._loadSpent(); // channelId (lower case) -> bigint paid from this tab
    this.channels = []; // relay summaries of this account's channels
    this.channel = null; // the active channel's summary
    this.ledger = null; // its ledger state (the relay's last accepted voucher)
    this.session = null; // {wallet, address, expiry} when this browser holds the channel's session key
    this.catalog = []; // catalog tracks, priced in the active channel's token (ETH when none)
    this.catalogToken = ZeroAddress;
    this.history = [];
    this.chainOffset = 0; // chain time - wall clock (anvil time travel)
    this.closeResult = null;
    this._queue = Promise.resolve();
    this._checkedListings = new Set(); // listings found equal to the TrackRegistry's (see _checkListing)
    this._sse = null;
    this._poll = null;
    // gas-free path: the wallet's ETH (null: not read yet) and the relay's quote (null: the relay offers none)
    this.gas = { eth: null, quote: null };
  }

  changed(what = "all") {
    this.dispatchEvent(new CustomEvent("change", { detail: what }));
  }

  /** What this tab has paid on the active channel (kept in sessionStorage: a reload keeps it, a new tab starts at 0). */
  get sessionSpent() {
    return this.channel ? (this._spent.get(this.channel.channelId.toLowerCase()) ?? 0n) : 0n;
  }

  _loadSpent() {
    const out = new Map();
    try {
      const raw = JSON.parse(this.storage?.getItem(SESSION_SPENT_KEY) ?? "{}");
      for (const [k, v] of Object.entries(raw && typeof raw === "object" ? raw : {})) {
        if (/^0x[0-9a-f]{64}$/.test(k) && typeof v === "string" && /^\d{1,78}$/.test(v)) out.set(k, BigInt(v));
      }
    } catch {
      /* unreadable: start from zero */
    }
    return out;
  }

  _addSpent(channelId, amount) {
    const id = channelId.toLowerCase();
    this._spent.set(id, (this._spent.get(id) ?? 0n) + BigInt(amount));
    try {
      this.storage?.setItem(SESSION_SPENT_KEY, JSON.stringify(Object.fromEntries([...this._spent].map(([k, v]) => [k, String(v)]))));
    } catch {
      /* storage full or denied: the number still counts in this page */
    }
  }

  /** Ask the UI to stop playing (it pays for what was heard first, enqueuing that payment before this returns). */
  _stopPlayback() {
    this.dispatchEvent(new CustomEvent("stop-playback"));
  }

  // ------------------------------------------------------------------------------------------ catalog
  token(address = this.channel?.token ?? this.catalogToken) {
    return this.ctx.tokenOf(address);
  }

  async refreshCatalog(token = this.channel?.token ?? this.catalogToken ?? ZeroAddress) {
    const data = await this.ctx.relay.catalog(token);
    this.catalogToken = getAddress(token);
    this.catalog = data.tracks;
    this.changed("catalog");
    // names are shown once their signatures verify here (lib/profiles.js); the catalog does not wait for them
    artistNames.learn(this.ctx.relay, this.ctx.domain, data.tracks).then((c) => c && this.changed("names"), () => {});
  }

  /** The listing (terms in the channel's token + split) of a catalog track, or null if not offered. */
  listing(trackId, token = this.catalogToken) {
    const t = this.catalog.find((x) => x.trackId.toLowerCase() === trackId.toLowerCase());
    const terms = t?.terms?.[getAddress(token)];
    if (!t || !terms) return null;
    return L.makeListing({ trackId: t.trackId, title: t.title, terms: termsFromJson(terms), split: P.makeSplit(t.split), splitHash: t.splitHash });
  }

  track(trackId) {
    return this.catalog.find((x) => x.trackId.toLowerCase() === trackId.toLowerCase()) ?? null;
  }

  // ------------------------------------------------------------------------------------------ channels
  reset() {
    this._sse?.close();
    this._sse = null;
    this._sseGeneration = (this._sseGeneration ?? 0) + 1;
    this.ctx.relay.tokens?.forget();
    clearInterval(this._poll);
    this.channels = [];
    this.channel = this.ledger = this.session = null;
    this.history = [];
    this.closeResult = null;
    this.changed();
  }

  /** Load the connected account's channels and pick the active one. */
  async loadAccount() {
    const { wallet } = this.ctx;
    if (!wallet?.account) return this.reset();
    // Until the account's channels are known the page offers nothing to click (a form shown now would be
    // re-rendered under the listener's pointer when they arrive: a wallet-signed read token can take a while).
    this.loading = true;
    this.changed();
    try {
      await Promise.all([this._loadAccount(getAddress(wallet.account)), this.refreshGas().catch(() => {})]);
    } finally {
      this.loading = false;
      this.changed();
    }
  }

  async _loadAccount(account) {
    const { info } = this.ctx;
    const listed = (await this.ctx.relay.listenerChannels(account)).channels;
    const ids = new Set(listed.map((c) => c.channelId.toLowerCase()));
    for (const id of S.knownChannels(info.chainId, account)) {
      if (ids.has(id.toLowerCase())) continue;
      try {
        const c = await this.ctx.relay.channel(id);
        if (getAddress(c.payer) === account) listed.push(c);
      } catch {
        /* not on chain (a failed open) */
      }
    }
    this.channels = listed;
    const stored = S.activeChannel(info.chainId, account);
    const live = listed.filter((c) => c.status !== "closed");
    const pick = listed.find((c) => c.channelId === stored && c.status !== "closed")
      ?? live.find((c) => S.loadSessionKey(info.chainId, info.channels, c.channelId))
      ?? live[0] ?? null;
    if (pick) await this.selectChannel(pick.channelId);
    else {
      this.channel = this.ledger = this.session = null;
      this.history = [];
      await this.refreshCatalog(this.catalogToken);
      this.changed();
    }
  }

  async selectChannel(channelId) {
    const { info, wallet } = this.ctx;
    const summary = await this.ctx.relay.channel(channelId);
    await this.adoptSummary(summary);
    S.setActiveChannel(info.chainId, wallet.account, channelId);
    this.closeResult = null;
    await this.refreshCatalog(summary.token);
    await this.refreshHistory();
    this.subscribe();
    this.changed();
  }

  /**
   * Take the relay's view of a channel once its latest voucher is shown to be signed by this account or one
   * of the channel's session keys (this browser's, or another device's as the chain names it): the next
   * voucher is built on it, so a relay must not be able to slip in payees or amounts nobody here signed.
   */
  async adoptSummary(summary) {
    await this._checkState(summary);
    this.applySummary(summary, await this._verifiedLedger(summary));
  }

  /**
   * The ledger at the summary's seq recomputed from receipts (ours up to our own state, the relay's history after
   * it, priced by the TrackRegistry's splits), which must end at the summary's signed voucher. Plays and owned
   * tracks decide prices, so they come from those receipts; a relay claiming others, or whose history does not
   * replay, is refused (untrusted_state) and nothing is signed on it (PROTOCOL.md 6.1).
   */
  async _verifiedLedger(summary) {
    const untrusted = (message) => new RelayError(0, { error: { code: "untrusted_state", message } });
    let claimed;
    try {
      claimed = L.stateFromSummary(summary);
    } catch {
      throw untrusted("the relay's channel state is malformed: not adopted");
    }
    const id = summary.channelId.toLowerCase();
    // A lying relay can claim any seq and serve made-up pages for ever: replay at most MAX_REPLAY receipts.
    const starts = claimed.seq <= MAX_REPLAY ? [L.openedState(summary.channelId)] : [];
    const own = this.ledger;
    if (own && own.voucher.channelId.toLowerCase() === id && own.seq > 0 && own.seq <= claimed.seq && claimed.seq - own.seq <= MAX_REPLAY) starts.unshift(own);
    if (!starts.length) throw untrusted(`the relay claims ${claimed.seq} payments on this channel, more than this player replays: not adopted, nothing signed`);
    let problem = "its history does not lead to the voucher it shows";
    for (const start of starts) {
      let state;
      try {
        const payments = await this._historyBetween(summary.channelId, start.seq, claimed.seq);
        state = L.replayHistory(start, payments, await this._registrySplits(payments), this.ctx.domain);
      } catch (err) {
        if (!(err instanceof L.UntrustedState)) throw err;
        problem = err.message;
        continue;
      }
      if (state.seq !== claimed.seq || P.voucherDigest(this.ctx.domain, state.voucher) !== P.voucherDigest(this.ctx.domain, claimed.voucher)) continue;
      if (!L.sameState(state, claimed)) {
        throw untrusted("the relay's play counts or owned tracks differ from the receipts this channel signed: not adopted, nothing signed");
      }
      return state;
    }
    throw untrusted(`the relay's channel state cannot be verified (${problem}): not adopted, nothing signed`);
  }

  /** The relay's accepted payments with after < seq <= upto, oldest first (paged back from `upto`). */
  async _historyBetween(channelId, after, upto) {
    const out = new Map();
    let before = upto + 1;
    while (before > after + 1) {
      const page = (await this.ctx.relay.history(channelId, 500, before)).items.map(L.acceptedPayment)
        .filter((p) => p.seq > after && p.seq < before);
      if (!page.length) break;
      for (const p of page) if (!out.has(p.seq)) out.set(p.seq, p);
      before = Math.min(...page.map((p) => p.seq));
    }
    return [...out.keys()].sort((a, b) => a - b).map((seq) => out.get(seq));
  }

  /** splitsOf for replayHistory: every split version of the payments' targets, read from the TrackRegistry. */
  async _registrySplits(payments) {
    const { info, abis } = this.ctx;
    const registry = new Contract(info.registry, abis.registry, this.ctx.wallet.browserProvider);
    const splits = new Map();
    for (const target of new Set(payments.map((p) => p.target))) {
      // version 1 first: getTrack reverts for an id that is not a track (a direct tip's address word)
      const [first, firstHash] = await registry.getSplit(target, 1);
      const list = [];
      if (firstHash !== P.ZERO_HASH) {
        const versions = Number((await registry.getTrack(target)).splitVersion);
        for (let v = 1; v <= versions; v++) {
          const [split] = v === 1 ? [first] : await registry.getSplit(target, v);
          list.push({ recipients: [...split.recipients], bps: [...split.bps].map(Number), feeRecipient: split.feeRecipient, feeBps: Number(split.feeBps) });
        }
      }
      splits.set(target, list);
    }
    return (trackId) => splits.get(trackId.toLowerCase()) ?? [];
  }

  async _checkState(summary) {
    if (!summary.seq) return;
    const untrusted = (message) => new RelayError(0, { error: { code: "untrusted_state", message } });
    const signature = summary.voucher?.signature;
    if (!signature) throw untrusted("the relay's channel state carries no signature: not adopted");
    const voucher = P.voucherFromJson(summary.channelId, summary.voucher);
    const signer = getAddress(P.recoverDigest(P.voucherDigest(this.ctx.domain, voucher), signature));
    const { info, wallet } = this.ctx;
    const stored = S.loadSessionKey(info.chainId, info.channels, summary.channelId);
    if ([wallet.account, stored?.address].filter(Boolean).some((a) => getAddress(a) === signer)) return;
    const { channels } = await this.contracts();
    const [view, retired] = await Promise.all([channels.getChannel(summary.channelId),
      channels.retiredSessionKey(summary.channelId)]);
    if ([view.sessionKey, retired[0]].some((a) => a !== ZeroAddress && getAddress(a) === signer)) return;
    throw untrusted(`the relay's channel state is signed by ${signer}, not by your wallet or a session key of the channel: not adopted`);
  }

  applySummary(summary, ledger) {
    const { info } = this.ctx;
    // a closed channel's key can sign nothing useful any more: it does not stay in this browser
    if (summary.status === "closed") S.forgetSessionKey(info.chainId, info.channels, summary.channelId);
    this.channel = summary;
    this.ledger = ledger;
    const stored = S.loadSessionKey(info.chainId, info.channels, summary.channelId);
    this.session = stored && getAddress(stored.address) === getAddress(summary.sessionKey) ? stored : null;
    const i = this.channels.findIndex((c) => c.channelId === summary.channelId);
    if (i >= 0) this.channels[i] = summary;
    else this.channels.unshift(summary);
  }

  async refreshChannel() {
    if (!this.channel) return;
    const summary = await this.ctx.relay.channel(this.channel.channelId);
    // keep our ledger if we are ahead (a payment in flight); the relay's state wins otherwise
    if (summary.seq >= (this.ledger?.seq ?? 0)) await this.adoptSummary(summary);
    else this.channel = { ...summary, seq: this.ledger.seq };
    if (summary.status === "closing" && summary.closesAt) await this.refreshChainTime();
    this.changed("channel");
  }

  async refreshHistory() {
    if (!this.channel) return;
    this.history = (await this.ctx.relay.history(this.channel.channelId, 50)).items;
    this.changed("history");
  }

  /**
   * The account's payments across all its channels (the latest `perChannel` of each), newest first, each with its
   * channel, token and settlement status (see withSettlement). Channels whose history cannot be read are skipped.
   */
  async activity(perChannel = 50) {
    const lists = await Promise.all(this.channels.map(async (c) => {
      try {
        const { items } = await this.ctx.relay.history(c.channelId, perChannel);
        return withSettlement(items, c);
      } catch {
        return [];
      }
    }));
    return lists.flat().sort((a, b) => b.at - a.at || b.seq - a.seq);
  }

  subscribe() {
    this._sse?.close();
    this._sse = null;
    clearInterval(this._poll);
    const id = this.channel.channelId;
    const generation = (this._sseGeneration = (this._sseGeneration ?? 0) + 1);
    this._openEvents(id, generation).catch(() => {});
    // settlement progress and on-chain status are not pushed: poll them gently
    this._poll = setInterval(() => {
      this.refreshChannel().catch(() => {});
      // the stream's read token is checked when it opens: once the relay refuses a reconnection (an expired
      // token), open it again with a fresh one
      if (this._sse?.readyState === EventSource.CLOSED && generation === this._sseGeneration) {
        this._openEvents(id, generation).catch(() => {});
      }
    }, 3000);
  }

  async _openEvents(id, generation) {
    let historyTimer = null;
    const source = await this.ctx.relay.events({ channel: id }, (type, ev) => {
      if (type === "catalog") {
        this.refreshCatalog().catch(() => {});
        return;
      }
      if (ev.channelId?.toLowerCase() !== this.channel?.channelId.toLowerCase()) return;
      if (ev.seq >= (this.channel.seq ?? 0)) {
        this.channel = { ...this.channel, spent: ev.total, remaining: ev.remaining, spentToday: ev.spentToday, seq: ev.seq };
        this.changed("channel");
      }
      clearTimeout(historyTimer);
      historyTimer = setTimeout(() => this.refreshHistory().catch(() => {}), 150);
    });
    if (generation !== this._sseGeneration || this.channel?.channelId !== id) {
      source.close(); // another channel was selected (or the account reset) meanwhile
      return;
    }
    this._sse?.close();
    this._sse = source;
  }

  async refreshChainTime() {
    try {
      const block = await this.ctx.wallet.browserProvider.getBlock("latest");
      this.chainOffset = Math.max(0, Number(block.timestamp) - Date.now() / 1000);
    } catch {
      /* keep the last offset */
    }
  }

  chainNow() {
    return Date.now() / 1000 + this.chainOffset;
  }

  // ------------------------------------------------------------------------------------------ contracts
  async contracts() {
    const { info, abis, wallet } = this.ctx;
    const signer = await wallet.signer();
    return {
      signer,
      channels: new Contract(info.channels, abis.channels, signer),
      token: (address) => new Contract(address, abis.token, signer),
    };
  }

  async tokenBalance(token) {
    const { wallet, abis } = this.ctx;
    if (!wallet?.account) return 0n;
    if (getAddress(token) === ZeroAddress) return wallet.browserProvider.getBalance(wallet.account);
    return new Contract(token, abis.token, wallet.browserProvider).balanceOf(wallet.account);
  }

  /**
   * The wallet's ETH and the relay's gas-free quote (GET /onboard/quote), for the views: a wallet with a token but
   * no ETH is offered the gas-free path, and the relay's fee is shown before anything is signed.
   */
  async refreshGas() {
    const { wallet } = this.ctx;
    const [eth, quote] = await Promise.all([
      wallet?.account ? wallet.browserProvider.getBalance(wallet.account).catch(() => null) : null,
      this.ctx.relay.onboardQuote().then(G.parseQuote).catch(() => null),
    ]);
    this.gas = { eth, quote };
    this.changed("gas");
    return this.gas;
  }

  /** Whether this wallet should use the gas-free path for a channel in `token`: a token, and no ETH for gas. */
  gasFree(token = this.channel?.token) {
    return !!token && getAddress(token) !== ZeroAddress && this.gas.eth === 0n && !!this.gas.quote;
  }

  /** The gasless contract (from the chain, never from the relay), its EIP-712 domain, and the wallet's signer. */
  async _gasless() {
    const { info, abis } = this.ctx;
    const { channels, signer } = await this.contracts();
    const address = getAddress(await channels.gasless());
    return { address, domain: G.gaslessDomain(info.chainId, address), signer, contract: new Contract(address, abis.gasless, signer) };
  }

  /**
   * The fee the relay kept for the authorisation `nonce`, read from its transaction's AuthorizationUsed event (not
   * from the relay's answer): a relay that did not submit it, or says another fee, is found out here.
   */
  async _chainFee(gasless, txHash, nonce) {
    const untrusted = (message) => new RelayError(0, { error: { code: "untrusted_state", message } });
    const receipt = typeof txHash === "string" && /^0x[0-9a-fA-F]{64}$/.test(txHash)
      ? await this.ctx.wallet.browserProvider.getTransactionReceipt(txHash) : null;
    if (!receipt || receipt.status !== 1) throw untrusted("the relay's transaction is not on chain");
    const account = getAddress(this.ctx.wallet.account);
    for (const log of receipt.logs) {
      if (getAddress(log.address) !== gasless.address) continue;
      const parsed = gasless.contract.interface.parseLog(log);
      if (parsed?.name === "AuthorizationUsed" && getAddress(parsed.args.signer) === account && parsed.args.nonce === BigInt(nonce)) {
        return { receipt, fee: parsed.args.fee };
      }
    }
    throw untrusted("the relay's transaction did not use your authorisation");
  }

  /** The relay's fee now, refused if above what the listener was shown (and signs as maxFee). */
  async _checkedFee(maxFee) {
    const quote = G.parseQuote(await this.ctx.relay.onboardQuote());
    if (maxFee == null) throw new Error("the relay's fee is not known yet: nothing was signed");
    if (quote.fee > BigInt(maxFee)) {
      throw new RelayError(0, { error: { code: "fee_above_max",
        message: `the relay now asks a fee of ${quote.fee}, more than the ${maxFee} you were shown: nothing was signed` } });
    }
    return quote;
  }

  /** An EIP-2612 permit of `token` by the wallet for `spender`, signed with eth_signTypedData_v4 (no gas). */
  async _signPermit(token, spender, amount, deadline) {
    const { token: tokenContract, signer } = await this.contracts();
    const erc20 = tokenContract(token);
    const [nonce, domain] = await Promise.all([erc20.nonces(this.ctx.wallet.account), erc20.eip712Domain()]);
    const permitDomain = { name: domain[1], version: domain[2], chainId: domain[3], verifyingContract: domain[4] };
    const raw = await signer.signTypedData(permitDomain, G.EIP2612_TYPES,
      { owner: getAddress(this.ctx.wallet.account), spender, value: amount, nonce, deadline });
    return Signature.from(raw);
  }

  /**
   * Open a channel without gas: the wallet signs a permit of `amount` for the gasless contract and an OpenChannel
   * (this relay, a fresh browser session key, `maxFee` = the fee the listener was shown); the relay submits both
   * and keeps its fee from the deposit. Nothing is sent from the wallet.
   */
  async openGasless({ token, amount, maxFee, days = DEFAULT_SESSION_DAYS }, progress = () => {}) {
    const { info, wallet } = this.ctx;
    const account = getAddress(wallet.account);
    token = getAddress(token);
    const quote = await this._checkedFee(maxFee);
    if (BigInt(maxFee) >= BigInt(amount)) throw new Error("the deposit must be larger than the relay's fee");
    const gasless = await this._gasless();
    const salt = hexlify(randomBytes(32));
    const session = S.createSessionKey();
    await this.refreshChainTime();
    const now = Math.floor(this.chainNow());
    const expiry = now + Math.round(days * 86400);
    const deadline = BigInt(now + G.AUTH_TTL);
    const channelId = P.channelIdFor({ chainId: info.chainId, contract: info.channels, payer: account, token, relay: info.relay, salt });
    S.saveSessionKey(info.chainId, info.channels, channelId, session, expiry);
    progress("Sign the spending permit in your wallet (1 of 2)…");
    const permit = await this._signPermit(token, gasless.address, amount, deadline);
    const auth = { payer: account, token, relay: getAddress(info.relay), sessionKey: session.address, sessionExpiry: expiry, salt,
      amount: BigInt(amount), maxFee: BigInt(maxFee), submitter: quote.submitter, nonce: G.randomNonce(), deadline };
    progress("Sign the channel's terms in your wallet (2 of 2)…");
    const signature = await gasless.signer.signTypedData(gasless.domain, G.OPEN_TYPES, auth);
    progress("The relay is opening your channel…");
    const reply = await this.ctx.relay.onboardOpen({ auth: G.authJson(auth), signature, permit: G.permitJson(amount, deadline, permit) });
    if (String(reply.channelId).toLowerCase() !== channelId.toLowerCase()) {
      throw new RelayError(0, { error: { code: "untrusted_state", message: "the relay answered for another channel" } });
    }
    const { fee } = await this._chainFee(gasless, reply.txHash, auth.nonce);
    S.rememberChannel(info.chainId, account, channelId);
    await this._selectWhenKnown(channelId);
    await this._defaultSessionCap(amount - fee, progress);
    await this.refreshGas().catch(() => {});
    return channelId;
  }

  /** selectChannel, retried while the relay has not yet seen a channel opened a moment ago (unknown_channel). */
  async _selectWhenKnown(channelId) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.selectChannel(channelId);
      } catch (err) {
        if (!(err instanceof RelayError) || err.code !== "unknown_channel" || attempt >= 10) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /**
   * Default session cap: the browser's key may sign at most the opening deposit in total (a top-up does not
   * raise what a copied key could spend; the wallet can lift the cap). Signed by the key itself, no prompt.
   */
  async _defaultSessionCap(amount, progress) {
    if (this.session && this.channel?.sessionCap == null) {
      progress("Setting this browser's spending limit…");
      await this.setCaps({ dailyCap: BigInt(this.channel.dailyCap ?? 0), sessionCap: BigInt(amount) }).catch(() => {});
    }
  }

  /** Open a channel with a fresh browser session key. method: "eth" | "permit" | "approve". */
  async openChannel({ token, amount, method, days = DEFAULT_SESSION_DAYS }, progress = () => {}) {
    const { info, wallet } = this.ctx;
    const { channels, token: tokenContract } = await this.contracts();
    const account = getAddress(wallet.account);
    token = getAddress(token);
    const salt = hexlify(randomBytes(32));
    const session = S.createSessionKey();
    await this.refreshChainTime();
    const expiry = Math.floor(this.chainNow()) + Math.round(days * 86400);
    const channelId = P.channelIdFor({ chainId: info.chainId, contract: info.channels, payer: account, token, relay: info.relay, salt });
    S.saveSessionKey(info.chainId, info.channels, channelId, session, expiry);
    let tx;
    if (token === ZeroAddress) {
      progress("Confirm the deposit in your wallet…");
      tx = channels.open(info.relay, token, amount, salt, session.address, expiry, { value: amount });
    } else if (method === "permit") {
      progress("Sign the spending permit in your wallet…");
      const deadline = BigInt(Math.floor(this.chainNow()) + 3600);
      const sig = await this._signPermit(token, info.channels, amount, deadline);
      progress("Confirm the deposit in your wallet…");
      tx = channels.openWithPermit(info.relay, token, amount, salt, session.address, expiry, deadline, sig.v, sig.r, sig.s);
    } else {
      const erc20 = tokenContract(token);
      const allowance = await erc20.allowance(account, info.channels);
      if (allowance < amount) {
        progress("Approve the deposit in your wallet (1 of 2)…");
        await mined(erc20.approve(info.channels, amount), "Approve deposit");
      }
      progress("Confirm the deposit in your wallet (2 of 2)…");
      tx = channels.open(info.relay, token, amount, salt, session.address, expiry);
    }
    progress("Waiting for the transaction…");
    const receipt = await mined(tx, "Open channel");
    if (receipt.status !== 1) throw new Error("the open transaction failed");
    S.rememberChannel(info.chainId, account, channelId);
    await this.selectChannel(channelId);
    await this._defaultSessionCap(amount, progress);
    return channelId;
  }

  /** Top up by transaction, or (with `gasFree`: the fee shown as `maxFee`) by a permit and a TopUpChannel. */
  async topUp(amount, { gasFree = false, maxFee = null } = {}) {
    if (gasFree) return this._topUpGasless(amount, maxFee);
    const { info } = this.ctx;
    const { channels, token: tokenContract } = await this.contracts();
    const token = getAddress(this.channel.token);
    if (token !== ZeroAddress) {
      const erc20 = tokenContract(token);
      if ((await erc20.allowance(this.ctx.wallet.account, info.channels)) < amount) {
        await mined(erc20.approve(info.channels, amount), "Approve top-up");
      }
    }
    await mined(channels.topUp(this.channel.channelId, amount, token === ZeroAddress ? { value: amount } : {}), "Top up");
    await this.refreshChannel();
  }

  async _topUpGasless(amount, maxFee) {
    const quote = await this._checkedFee(maxFee);
    if (BigInt(maxFee) >= BigInt(amount)) throw new Error("the top-up must be larger than the relay's fee");
    const gasless = await this._gasless();
    await this.refreshChainTime();
    const deadline = BigInt(Math.floor(this.chainNow()) + G.AUTH_TTL);
    const permit = await this._signPermit(this.channel.token, gasless.address, amount, deadline);
    const auth = { payer: getAddress(this.ctx.wallet.account), channelId: this.channel.channelId, amount: BigInt(amount),
      maxFee: BigInt(maxFee), submitter: quote.submitter, nonce: G.randomNonce(), deadline };
    const signature = await gasless.signer.signTypedData(gasless.domain, G.TOPUP_TYPES, auth);
    const before = BigInt(this.channel.deposit);
    const reply = await this.ctx.relay.onboardTopUp({ auth: G.authJson(auth), signature, permit: G.permitJson(amount, deadline, permit) });
    await this._chainFee(gasless, reply.txHash, auth.nonce);
    for (let i = 0; i < 20; i++) { // the relay's view of the deposit follows its watcher
      await this.refreshChannel();
      if (BigInt(this.channel.deposit) > before) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    await this.refreshGas().catch(() => {});
  }

  /** Authorise a new browser session key for the active channel (setSessionKey, payer only). */
  async authorizeSession(days = DEFAULT_SESSION_DAYS) {
    const { info } = this.ctx;
    const { channels } = await this.contracts();
    const session = S.createSessionKey();
    await this.refreshChainTime();
    const expiry = Math.floor(this.chainNow()) + Math.round(days * 86400);
    const id = this.channel.channelId;
    const previous = S.loadSessionKey(info.chainId, info.channels, id);
    S.saveSessionKey(info.chainId, info.channels, id, session, expiry);
    try {
      await mined(channels.setSessionKey(id, session.address, expiry), "Renew session key");
    } catch (err) {
      if (previous) S.saveSessionKey(info.chainId, info.channels, id, previous.wallet, previous.expiry);
      throw err;
    }
    // the relay learns the new key from the chain (its watcher); give it a moment
    for (let i = 0; i < 20; i++) {
      await this.refreshChannel();
      if (this.session) break;
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async mintTestTokens(token, amount) {
    const { token: tokenContract } = await this.contracts();
    await mined(tokenContract(token).mint(this.ctx.wallet.account, amount), "Mint test tokens");
  }

  // ------------------------------------------------------------------------------------------ payments
  /** Whether vouchers can be signed without the wallet (a valid session key in this browser). */
  sessionUsable() {
    if (!this.session || !this.channel) return false;
    return this.chainNow() < this.channel.sessionExpiry - (this.ctx.info.sessionMargin ?? 600);
  }

  async _sign(digest, voucher) {
    if (this.sessionUsable()) return P.signDigest(this.session.wallet, digest);
    // No usable session key here: the payer signs with the wallet (one prompt per payment).
    const signer = await this.ctx.wallet.signer();
    return signer.signTypedData(this.ctx.domain, P.VOUCHER_TYPES, P.voucherMessage(voucher));
  }

  /**
   * The relay's catalog is a convenience: before the first payment priced from a track's listing, its terms
   * and split are checked against the TrackRegistry on chain (then remembered), so a relay cannot make this
   * page sign prices or payees the artist did not publish.
   */
  async _checkListing(charge) {
    if (charge.splitHash === P.ZERO_HASH) return; // a tip straight to an address the listener chose
    const listing = this.listing(charge.target);
    const key = `${charge.target}|${this.catalogToken}|${charge.splitHash}|${termsTuple(listing.terms).join(",")}`;
    if (this._checkedListings.has(key)) return;
    const { info, abis } = this.ctx;
    const registry = new Contract(info.registry, abis.registry, await this.ctx.wallet.signer());
    const [track, terms] = await Promise.all([registry.getTrack(charge.target), registry.getTerms(charge.target, this.catalogToken)]);
    const same = track.splitHash.toLowerCase() === charge.splitHash.toLowerCase()
      && P.splitHash(listing.split).toLowerCase() === charge.splitHash.toLowerCase()
      && termsTuple(listing.terms).every((v, i) => BigInt(v) === BigInt(terms[i]));
    if (!same) {
      throw new RelayError(0, { error: { code: "untrusted_catalog",
        message: "the relay's catalog differs from the TrackRegistry for this track: nothing was signed" } });
    }
    this._checkedListings.add(key);
  }

  /**
   * Pay a charge computed from the current ledger state by `makeCharge(state)`. Payments are serialised; on
   * voucher_mismatch / stale / seq_gap the ledger is resynchronised from the relay's state (and the catalog
   * reloaded, in case a price or split changed) and the charge retried once. Resolves to the relay's ack.
   */
  pay(makeCharge, meta = {}) {
    const run = () => this._pay(makeCharge, meta, true);
    const result = this._queue.then(run, run);
    this._queue = result.catch(() => {});
    return result;
  }

  async _pay(makeCharge, meta, retry) {
    if (!this.channel || !this.ledger) throw new RelayError(0, { error: { code: "no_channel", message: "open a channel first" } });
    const charge = makeCharge(this.ledger);
    await this._checkListing(charge);
    const { next, digest } = L.preparePayment(this.ledger, charge, this.ctx.domain);
    const body = L.paymentBody(next, charge, await this._sign(digest, next.voucher));
    try {
      const ack = await this.ctx.relay.pay(this.channel.channelId, body);
      if (ack.status === "accepted" || ack.seq >= this.ledger.seq) {
        this.ledger = next;
        this.channel = { ...this.channel, spent: ack.total, remaining: ack.remaining, spentToday: ack.spentToday,
          dailyCap: ack.dailyCap, seq: ack.seq, voucher: P.voucherJson(next.voucher),
          plays: Object.fromEntries(next.plays), owned: [...next.owned] };
        if (ack.status === "accepted") this._addSpent(this.channel.channelId, ack.amount);
      }
      this.dispatchEvent(new CustomEvent("paid", { detail: { ack, charge } }));
      this.changed("payment");
      return { ack, charge };
    } catch (err) {
      // The relay judges key expiry by chain time, which may run ahead of this page's estimate (a devnet after
      // time travel): re-read it so the page stops signing with the key and offers to renew it.
      if (err instanceof RelayError && err.code === "session_key_expired") {
        await this.refreshChainTime();
        this.changed("channel");
      }
      if (err instanceof RelayError && RESYNC_CODES.has(err.code) && err.state) {
        await this.adoptSummary(err.state);
        if (err.code === "voucher_mismatch") await this.refreshCatalog().catch(() => {});
        this.changed("channel");
        if (retry) return this._pay(makeCharge, meta, false);
      }
      throw err;
    }
  }

  tipTrack(trackId, amount, memo) {
    return this.pay(() => {
      const listing = this.listing(trackId);
      if (!listing) throw new RelayError(0, { error: { code: "not_offered", message: "this track is not offered in your channel's token" } });
      return L.chargeTip(amount, { listing, memo });
    });
  }

  buy(trackId) {
    return this.pay((state) => L.chargeDownload(state, this.listing(trackId)));
  }

  // ------------------------------------------------------------------------------------------ caps
  /** Set caps; the session cap in force is kept unless given (0 lifts it, which takes the wallet). */
  async setCaps({ dailyCap, sessionCap = this.channel?.sessionCap ?? 0n }) {
    const { domain } = this.ctx;
    const id = this.channel.channelId;
    const issuedAt = BigInt(Math.max(Math.floor(Date.now() / 1000), (this._capsIssuedAt ?? 0) + 1));
    this._capsIssuedAt = Number(issuedAt);
    const message = { channelId: id, dailyCap: BigInt(dailyCap), sessionCap: BigInt(sessionCap), issuedAt };
    // The session key may lower or set caps; raising or lifting one (0 = none) takes the wallet, as the relay
    // does not let a key loosen the limits meant for it.
    const loosens = [[this.channel.dailyCap, dailyCap], [this.channel.sessionCap, sessionCap]]
      .some(([current, next]) => current != null && (BigInt(next) === 0n || BigInt(next) > BigInt(current)));
    let signature;
    if (this.session && !loosens) signature = P.signDigest(this.session.wallet, P.capsDigest(domain, message));
    else signature = await (await this.ctx.wallet.signer()).signTypedData(domain, P.CAPS_TYPES, message);
    const summary = await this.ctx.relay.setCaps(id, {
      dailyCap: String(dailyCap), sessionCap: String(sessionCap), issuedAt: Number(issuedAt), signature,
    });
    await this.adoptSummary(summary);
    this.changed("channel");
  }

  // ------------------------------------------------------------------------------------------ closing
  /**
   * Cooperative close: the relay co-signs a Close over the latest voucher; the payer settles and is refunded at once.
   * With `gasFree` the wallet signs a CloseChannel at that voucher instead (`maxFee`: the fee it was shown) and the
   * relay submits the close, keeping its fee from the refund.
   */
  async closeCooperative({ gasFree = false, maxFee = null } = {}) {
    if (gasFree) return this._closeGasless(maxFee);
    const { channels } = await this.contracts();
    const id = this.channel.channelId;
    this._stopPlayback(); // pays for what was heard, then no more payments
    await this._queue; // no payment in flight
    let lastErr;
    for (let attempt = 0; attempt < 2; attempt++) {
      let res;
      try {
        res = await this.ctx.relay.close(id, await this._closeRequest());
      } catch (err) {
        // the relay has a later voucher than this page (an acknowledgement lost on the way): take its state, once
        if (err?.code !== "close_state_mismatch" || !err.state || attempt) throw err;
        await this.adoptSummary(err.state);
        continue;
      }
      const entry = closeEntry(id, res);
      const relaySig = P.toCompact(res.relaySignature);
      try {
        const receipt = await mined(channels.cooperativeClose(entry, relaySig.r, relaySig.vs), "Close channel");
        this.closeResult = { ...closedEvent(channels, receipt), hash: receipt.hash, cooperative: true };
        await this._afterClose();
        return this.closeResult;
      } catch (err) {
        lastErr = err;
        // the settler may have settled in between: ask again for fresh prevAmounts once
        if (err?.revert?.name !== "VoucherPrevStateMismatch") throw err;
      }
    }
    throw lastErr;
  }

  /** The request for the relay's consent: Close(channelId, our latest voucher's digest), signed like a payment. */
  async _closeRequest() {
    const { domain } = this.ctx;
    const id = this.channel.channelId;
    const voucher = this.ledger?.voucher ?? { channelId: id, payees: [] };
    const voucherDigest = voucher.payees.length ? P.voucherDigest(domain, voucher) : P.ZERO_HASH;
    const signature = this.session
      ? P.signDigest(this.session.wallet, P.closeDigest(domain, voucher))
      : await (await this.ctx.wallet.signer()).signTypedData(domain, P.CLOSE_TYPES, { channelId: id, voucherDigest });
    return { voucherDigest, signature };
  }

  async _closeGasless(maxFee) {
    const quote = await this._checkedFee(maxFee);
    const { channels } = await this.contracts();
    const id = this.channel.channelId;
    this._stopPlayback();
    await this._queue;
    let request;
    try {
      request = await this._closeRequest();
      await this.ctx.relay.close(id, request);
    } catch (err) {
      if (err?.code !== "close_state_mismatch" || !err.state) throw err;
      await this.adoptSummary(err.state); // the relay holds a later voucher than this page: close at that one
      request = await this._closeRequest();
      await this.ctx.relay.close(id, request);
    }
    const gasless = await this._gasless();
    await this.refreshChainTime();
    const auth = { payer: getAddress(this.ctx.wallet.account), channelId: id, voucherDigest: request.voucherDigest,
      maxFee: BigInt(maxFee), submitter: quote.submitter, nonce: G.randomNonce(),
      deadline: BigInt(Math.floor(this.chainNow()) + G.AUTH_TTL) };
    const signature = await gasless.signer.signTypedData(gasless.domain, G.CLOSE_AUTH_TYPES, auth);
    const reply = await this.ctx.relay.onboardClose({ auth: G.authJson(auth), signature });
    const { receipt, fee } = await this._chainFee(gasless, reply.txHash, auth.nonce);
    const closed = closedEvent(channels, receipt);
    // the contract's refund goes through the gasless contract, which keeps the relay's fee from it
    const refund = closed.refund == null ? null : closed.refund - fee;
    this.closeResult = { settled: closed.settled, refund, fee, hash: reply.txHash, cooperative: true, gasFree: true };
    await this._afterClose();
    await this.refreshGas().catch(() => {});
    return this.closeResult;
  }

  async requestClose() {
    const { channels } = await this.contracts();
    this._stopPlayback();
    await this._queue;
    await mined(channels.requestClose(this.channel.channelId), "Request close");
    await this.refreshChainTime();
    this.dispatchEvent(new CustomEvent("closed"));
    for (let i = 0; i < 20; i++) {
      await this.refreshChannel();
      if (this.channel.closesAt) break;
      await new Promise((r) => setTimeout(r, 400));
    }
    if (!this.channel.closesAt) {
      const view = await channels.getChannel(this.channel.channelId);
      this.channel = { ...this.channel, status: "closing", closesAt: Number(view.closesAt) };
    }
    this.changed("channel");
  }

  async withdraw() {
    const { channels } = await this.contracts();
    const receipt = await mined(channels.withdraw(this.channel.channelId), "Withdraw");
    this.closeResult = { ...closedEvent(channels, receipt), hash: receipt.hash, cooperative: false };
    await this._afterClose();
    return this.closeResult;
  }

  async _afterClose() {
    const { info } = this.ctx;
    S.forgetSessionKey(info.chainId, info.channels, this.channel.channelId);
    this.session = null;
    this._stopPlayback();
    this.dispatchEvent(new CustomEvent("closed"));
    this._sse?.close();
    this._sse = null;
    this.channel = { ...this.channel, status: "closed" };
    const i = this.channels.findIndex((c) => c.channelId === this.channel.channelId);
    if (i >= 0) this.channels[i] = this.channel;
    this.changed("channel");
    // the relay's watcher marks the channel closed shortly
    setTimeout(() => this.refreshChannel().catch(() => {}), 1500);
  }
}

/**
 * History items (newest first from the relay, the channel's latest payments) marked settled or pending: a payment
 * is settled once the channel's settled total reaches the running total it brought the voucher to.
 */
export function withSettlement(items, channel) {
  const settled = BigInt(channel.settled ?? 0);
  let after = BigInt(channel.spent ?? 0); // the voucher total after the newest payment
  const out = [];
  for (const item of [...items].sort((a, b) => b.seq - a.seq)) {
    out.push({ ...item, channelId: channel.channelId, token: channel.token, totalAfter: after,
      status: after <= settled ? "settled" : "pending" });
    after -= BigInt(item.amount);
  }
  return out;
}

/** The SettleEntry for cooperativeClose from the relay's POST /close answer. */
export function closeEntry(channelId, res) {
  if (!res.voucher) {
    return { channelId, payees: [], amounts: [], playHash: P.ZERO_HASH, prevAmounts: [], r: P.ZERO_HASH, vs: P.ZERO_HASH };
  }
  const { r, vs } = P.toCompact(res.voucher.signature);
  return {
    channelId, payees: res.voucher.payees, amounts: res.voucher.amounts.map(BigInt), playHash: res.voucher.playHash,
    prevAmounts: res.prevAmounts.map(BigInt), r, vs,
  };
}

function closedEvent(channels, receipt) {
  for (const log of receipt.logs) {
    try {
      const parsed = channels.interface.parseLog(log);
      if (parsed?.name === "ChannelClosed") return { settled: parsed.args.settled, refund: parsed.args.refund };
    } catch {
      /* another contract's log */
    }
  }
  return { settled: null, refund: null };
}
