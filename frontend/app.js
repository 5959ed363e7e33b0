// ChainStream web player: the shell (wallet, network, banners, routing). Views live in views/.
import { Contract, ZeroAddress, getAddress } from "ethers";

import { makeDomain } from "./lib/protocol.js";
import { ReadTokens } from "./lib/readtokens.js";
import { forgetAllSessionKeys, forgetExpiredSessionKeys } from "./lib/session.js";
import { RelayClient, RelayError } from "./lib/relay.js";
import { ERROR_TITLES, explainRelayError } from "./lib/messages.js";
import { Listener } from "./lib/listener.js";
import { WalletConnection, decodeRevert, describeTxError, discoverWallets, knowErrorsOf, txLog } from "./lib/wallet.js";
import { $, avatarStyle, fmtAmount, h, mount, shortAddr } from "./lib/ui.js";
import { Player } from "./views/player.js";
import { renderActivity, renderArtist, renderListen } from "./views/listen.js";
import { renderStudio } from "./views/studio.js";

const ctx = {
  relay: new RelayClient(""),
  info: null,
  config: { rpcUrls: [] },
  abis: {},
  domain: null,
  wallets: [],
  wallet: null,
  listener: null,
  player: null,
  balance: null,
  chainOk() {
    return !!(this.wallet?.account && this.wallet.chainId === this.info.chainId);
  },
  /** A token by address: the relay's list, else what the token contract says of itself (symbol, decimals). */
  tokenOf(address) {
    const a = getAddress(address ?? ZeroAddress);
    return this.info.tokens.find((t) => getAddress(t.address) === a) ?? otherToken(a);
  },
  fmt(value, token, opts) {
    return fmtAmount(value, typeof token === "string" || !token ? this.tokenOf(token) : token, opts);
  },
  banner,
  clearBanner,
  clearPaymentErrors,
  toast,
  modal,
  showError,
  describe,
  connect: () => connectFlow(),
  switchNetwork: () => switchNetwork(),
  rerender: () => render(),
};
ctx.relay.tokens = new ReadTokens(ctx);
window.chainstream = ctx; // for debugging in the console

/** Tokens the relay does not list (an earnings row in another token): named as their contract spells it once read. */
const otherTokens = new Map();
function otherToken(address) {
  let t = otherTokens.get(address);
  if (t) return t;
  t = { address, symbol: `units of ${shortAddr(address)}`, decimals: 0, known: false }; // honest until the contract answers
  otherTokens.set(address, t);
  const provider = ctx.wallet?.browserProvider;
  if (provider && ctx.abis.token) {
    const erc20 = new Contract(address, ctx.abis.token, provider);
    Promise.all([erc20.symbol(), erc20.decimals()]).then(([symbol, decimals]) => {
      otherTokens.set(address, { address, symbol: String(symbol).slice(0, 16), decimals: Number(decimals), known: true });
      render();
    }).catch(() => otherTokens.delete(address)); // asked again once a wallet can read it
  } else {
    otherTokens.delete(address);
  }
  return t;
}

// ------------------------------------------------------------------------------------------ banners & toasts
function banner({ kind = "error", title, message = "", code = "", detail = code, id = null, actions = [], sticky = false }) {
  const root = $("#banners");
  if (id) root.querySelector(`[data-banner-id="${id}"]`)?.remove();
  const el = h("div.banner", { class: kind, role: kind === "error" ? "alert" : "status", "data-banner-id": id ?? "", "data-testid": "banner", "data-code": code },
    h("div.b-icon", kind === "error" ? "!" : kind === "warn" ? "!" : "i"),
    h("div.b-body",
      h("div.b-title", title),
      message ? h("div.b-msg", message) : null,
      detail ? h("div.b-code", detail) : null),
    ...actions.map((a) => h("button.btn.small", { onclick: () => a.onclick(el) }, a.label)),
    h("button.b-close", { "aria-label": "Dismiss", onclick: () => el.remove() }, "×"));
  // one error at a time (the newest says what to do now); warnings such as the network stay until their cause clears
  if (kind === "error") for (const old of root.querySelectorAll(".banner.error")) old.remove();
  root.prepend(el);
  while (root.children.length > 3) root.lastChild.remove();
  if (!sticky) setTimeout(() => el.remove(), kind === "error" ? 25000 : 12000);
  return el;
}

/** Payment refusals are stale once a payment goes through or the channel changes. */
function clearPaymentErrors() {
  for (const el of $("#banners").querySelectorAll("[data-banner-id^='relay-'], [data-banner-id=need-channel]")) el.remove();
}

function clearBanner(id) {
  $("#banners").querySelector(`[data-banner-id="${id}"]`)?.remove();
}

function toast(message, { error = false, ms = 4200 } = {}) {
  const el = h("div.toast", { class: error ? "err" : "", "data-testid": "toast" }, message);
  $("#toasts").append(el);
  setTimeout(() => el.remove(), ms);
}

/** What to say about an error: {title, message, code, detail} (the relay's code and message with its numbers in
 * token units, or a contract's decoded custom error, never raw RPC text). */
function describe(err, context = "Something went wrong") {
  if (err instanceof RelayError) {
    const friendly = friendlyRelayMessage(err);
    return { title: ERROR_TITLES[err.code] ?? context, message: friendly ?? err.message, code: err.code,
      detail: friendly ? `${err.code} · relay: ${err.message}` : err.code, id: `relay-${err.code}` };
  }
  if (err?.code && ERROR_TITLES[err.code]) return { title: ERROR_TITLES[err.code], message: err.message, code: err.code };
  return { title: context, message: describeTxError(err), code: String(decodeRevert(err)?.name ?? err?.code ?? "") };
}

/** Show any error as a banner (one error at a time: a new one replaces the last). */
function showError(err, context = "Something went wrong") {
  console.warn(context, err);
  if (err?.code === "relay_unreachable") watchRelay();
  return banner({ kind: "error", ...describe(err, context) });
}

/** The relay did not answer (seen by any request, the audio's too): ask it every few seconds until it does, which
 * clears the banner (RelayClient's "reachable"). */
let relayProbe = null;
function watchRelay() {
  ctx.relay.unreachable = true;
  if (relayProbe) return;
  relayProbe = setInterval(() => ctx.relay.info().catch(() => {}), 3000);
}

/** The relay states amounts in the token's smallest unit (in the error's details); say them in ETH / mUSD. */
function friendlyRelayMessage(err) {
  const c = ctx.listener?.channel;
  if (!c) return null;
  const token = ctx.tokenOf(c.token);
  return explainRelayError(err, (v) => ctx.fmt(v, token));
}

function modal(build) {
  const root = $("#modal-root");
  const close = () => {
    document.removeEventListener("keydown", onKey, true);
    root.replaceChildren();
  };
  const onKey = (e) => {
    if (e.key === "Escape") {
      e.stopPropagation();
      close();
    }
  };
  document.addEventListener("keydown", onKey, true);
  const back = h("div.modal-back", { onclick: (e) => e.target === back && close() });
  const box = h("div.modal", { role: "dialog", "aria-modal": "true" });
  back.append(box);
  mount(root, back);
  build(box, close);
  box.querySelector("input, button")?.focus();
  return close;
}

// ------------------------------------------------------------------------------------------ transactions
const EXPLORERS = { 1: "https://etherscan.io", 11155111: "https://sepolia.etherscan.io", 8453: "https://basescan.org", 10: "https://optimistic.etherscan.io", 42161: "https://arbiscan.io" };
const TX_STATUS = { signing: "Confirm in your wallet", pending: "Pending", confirmed: "Confirmed", failed: "Failed" };

/** Wallet transactions as they go: signing -> pending (hash, explorer link) -> confirmed, or failed with why. */
function renderTx(item) {
  const root = $("#txs");
  let el = root.querySelector(`[data-tx-id="${item.id}"]`);
  if (!el) {
    el = h("div.tx", { "data-tx-id": item.id, "data-testid": "tx" });
    root.prepend(el);
    while (root.children.length > 3) root.lastChild.remove();
  }
  el.dataset.status = item.status;
  const explorer = EXPLORERS[ctx.info?.chainId];
  const hash = item.hash ? (explorer ? h("a.mono", { href: `${explorer}/tx/${item.hash}`, target: "_blank", rel: "noopener" }, shortAddr(item.hash)) : h("span.mono", { title: item.hash }, shortAddr(item.hash))) : null;
  mount(el,
    h("span.tx-dot", { "aria-hidden": "true" }),
    h("div.tx-body",
      h("div", h("b", item.label), " · ", h("span.tx-status", { "data-testid": "tx-status" }, TX_STATUS[item.status] ?? item.status)),
      item.reason ? h("div.tx-reason", item.reason) : null,
      hash ? h("div.faint", hash) : null),
    h("button.b-close", { "aria-label": "Dismiss", onclick: () => el.remove() }, "×"));
  if (item.status === "confirmed") setTimeout(() => el.remove(), 8000);
}

// ------------------------------------------------------------------------------------------ keyboard
/** Space plays / pauses, ←/→ seek 5 s, Shift+←/→ previous / next, ↑/↓ volume, "/" searches the catalog. */
function onKeyDown(e) {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target instanceof HTMLElement ? e.target : null;
  if (!ctx.player || $("#modal-root").firstChild) return;
  if (t && (t.isContentEditable || t.closest("input, textarea, select"))) return; // typing, or a slider's own keys
  if (e.key === " " && t?.closest("button, a, summary")) return; // Space activates the focused control
  const p = ctx.player;
  const keys = {
    " ": () => p.toggle(),
    ArrowLeft: () => (e.shiftKey ? p.previous() : p.seekBy(-5)),
    ArrowRight: () => (e.shiftKey ? p.next() : p.seekBy(5)),
    ArrowUp: () => p.setVolume(p.audio.volume + 0.1),
    ArrowDown: () => p.setVolume(p.audio.volume - 0.1),
    "/": () => $("[data-testid=catalog-search]")?.focus(),
  };
  const action = keys[e.key];
  if (!action) return;
  e.preventDefault();
  action();
}

// ------------------------------------------------------------------------------------------ wallet
async function connectFlow() {
  ctx.wallets = await discoverWallets();
  if (!ctx.wallets.length) {
    banner({ kind: "warn", title: "No wallet found", message: "Install a browser wallet (any EIP-6963 wallet such as MetaMask or Rabby) to open a channel and listen.", id: "no-wallet" });
    return;
  }
  if (ctx.wallets.length === 1) return useWallet(ctx.wallets[0]);
  modal((box, close) => {
    mount(box, h("h3", "Connect a wallet"), h("p", "Pick the wallet that holds your listening funds."),
      ...ctx.wallets.map((w) => h("button.wallet-option", { onclick: () => { close(); useWallet(w); } },
        w.info.icon ? h("img", { src: w.info.icon, alt: "" }) : h("span.avatar", { style: { background: avatarStyle("0x" + w.info.uuid.replace(/[^0-9a-f]/gi, "")) } }),
        h("div", h("b", w.info.name), h("div.faint", w.info.rdns)))));
  });
}

async function useWallet(discovered, { silent = false } = {}) {
  const conn = new WalletConnection(discovered);
  try {
    if (silent) {
      const accounts = await discovered.provider.request({ method: "eth_accounts" });
      if (!accounts?.length) return;
    }
    await conn.connect();
  } catch (err) {
    if (!silent) showError(err, "Could not connect the wallet");
    return;
  }
  ctx.wallet?.disconnect();
  ctx.wallet = conn;
  localStorage.setItem("chainstream.wallet", discovered.info.rdns || discovered.info.uuid);
  conn.addEventListener("change", () => onWalletChange());
  await onWalletChange();
}

function disconnect() {
  // nothing spendable stays behind in this browser: its session keys go (a new one is authorised next time)
  forgetAllSessionKeys();
  ctx.relay.tokens.forget();
  ctx.wallet?.disconnect();
  ctx.wallet = null;
  localStorage.removeItem("chainstream.wallet");
  ctx.player.stop();
  ctx.listener.reset();
  ctx.listener.refreshCatalog(ZeroAddress).catch(() => {});
  render();
}

let walletGeneration = 0;
async function onWalletChange() {
  const gen = ++walletGeneration;
  renderChrome();
  if (!ctx.wallet?.account) return;
  if (!ctx.chainOk()) {
    ctx.player.stop();
    ctx.listener.reset();
    networkBanner();
    render();
    return;
  }
  clearBanner("network");
  try {
    await ctx.listener.loadAccount();
  } catch (err) {
    showError(err, "Could not load your channels");
  }
  if (gen !== walletGeneration) return;
  refreshBalance();
  render();
}

function networkBanner() {
  const want = ctx.info.chainId;
  banner({
    kind: "warn", id: "network", sticky: true, code: "wrong_network",
    title: `Wrong network: your wallet is on chain ${ctx.wallet.chainId}`,
    message: `ChainStream on this relay runs on chain ${want}${chainLabel(want) ? ` (${chainLabel(want)})` : ""}. Switch your wallet to continue.`,
    actions: [{ label: `Switch to ${chainLabel(want) || "chain " + want}`, onclick: () => switchNetwork() }],
  });
}

async function switchNetwork() {
  const want = ctx.info.chainId;
  try {
    await ctx.wallet.switchChain(want, { chainName: ctx.config.chainName || chainLabel(want) || `Chain ${want}`, rpcUrls: ctx.config.rpcUrls ?? [] });
  } catch (err) {
    showError(err, "Could not switch the network");
  }
}

function chainLabel(id) {
  return ({ 1: "Ethereum", 11155111: "Sepolia", 31337: "Anvil (local)", 8453: "Base", 10: "Optimism", 42161: "Arbitrum" })[id] ?? "";
}

async function refreshBalance() {
  if (!ctx.chainOk()) return;
  try {
    ctx.balance = await ctx.wallet.browserProvider.getBalance(ctx.wallet.account);
  } catch {
    ctx.balance = null;
  }
  renderChrome();
}

// ------------------------------------------------------------------------------------------ chrome
function renderChrome() {
  const slot = $("#wallet-slot");
  const w = ctx.wallet;
  if (!w?.account) {
    mount(slot, h("button.btn.primary", { onclick: () => connectFlow(), "data-testid": "connect-wallet" }, "Connect wallet"));
  } else {
    mount(slot, h("button.wallet-btn", { "data-testid": "wallet-button", title: w.account, onclick: () => accountModal() },
      h("span.avatar", { style: { background: avatarStyle(w.account) } }),
      h("span", shortAddr(w.account)),
      ctx.balance !== null && ctx.chainOk() ? h("span.bal", fmtAmount(ctx.balance, { decimals: 18, symbol: "ETH" })) : null));
  }
  const pill = $("#net-pill");
  const ok = !w?.account || ctx.chainOk();
  pill.className = "net-pill" + (ok ? "" : " bad");
  pill.dataset.testid = "network";
  mount(pill, h("span.dot"), ok ? `${chainLabel(ctx.info.chainId) || "Chain"} · ${ctx.info.chainId}` : `Wrong network · ${w.chainId}`);
  const foot = $("#sidebar-foot");
  mount(foot, h("div.side-card",
    h("b", "How it works"),
    h("div", { style: { marginTop: "6px" } }, "Deposit once into a payment channel. Each play is paid by a voucher your browser signs — no wallet pop-ups — and the relay settles in batches."),
    h("div.kv", h("span", "Relay"), h("span.mono", shortAddr(ctx.info.relay))),
    h("div.kv", h("span", "Challenge window"), h("span", `${Math.round(ctx.info.challengePeriod / 3600)} h`))));
}

function accountModal() {
  modal((box, close) => {
    mount(box,
      h("div.row", h("span.avatar", { style: { background: avatarStyle(ctx.wallet.account), width: "44px", height: "44px" } }),
        h("div", h("h3", shortAddr(ctx.wallet.account)), h("div.faint.mono", ctx.wallet.account))),
      h("div.kv-list", h("div", h("span.k", "Wallet"), h("span", ctx.wallet.info.name)),
        h("div", h("span.k", "Network"), h("span", `chain ${ctx.wallet.chainId}`)),
        h("div", h("span.k", "Balance"), h("span", ctx.balance !== null ? fmtAmount(ctx.balance, { decimals: 18, symbol: "ETH" }) : "—"))),
      h("div.actions", h("button.btn", { onclick: () => { navigator.clipboard?.writeText(ctx.wallet.account); toast("Address copied"); } }, "Copy address"),
        h("button.btn.danger", { onclick: () => { close(); disconnect(); } }, "Disconnect")));
  });
}

// ------------------------------------------------------------------------------------------ routing
const VIEWS = { listen: renderListen, activity: renderActivity, studio: renderStudio, artist: renderArtist };
const TITLES = { listen: "Discover", activity: "Your listening activity", studio: "Artist studio", artist: "Artist" };
const NAV_OF = { artist: "listen" };
let currentView = null;

/** The view and its argument from the location: #/listen, #/activity, #/studio, #/artist/<address>. */
function route() {
  const [, name = "listen", arg = ""] = location.hash.match(/^#\/(\w+)(?:\/([^/?#]*))?/) ?? [];
  return VIEWS[name] ? { name, arg, key: `${name}/${arg}` } : { name: "listen", arg: "", key: "listen/" };
}

function render() {
  const { name, arg, key } = route();
  for (const a of document.querySelectorAll("#nav a")) {
    const active = a.dataset.view === (NAV_OF[name] ?? name);
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  $("#topbar-title").textContent = TITLES[name];
  const view = $("#view");
  if (currentView?.key !== key) {
    currentView?.dispose?.();
    view.replaceChildren();
    // each visit builds the view afresh: its state (forms, panels, filters) lives in the view, not in the module
    currentView = { key, ...(VIEWS[name](ctx, view, arg) ?? {}) };
  } else {
    currentView.update?.();
  }
  renderChrome();
}

// ------------------------------------------------------------------------------------------ boot
async function boot() {
  try {
    const [info, config, channelsAbi, registryAbi, tokenAbi, gaslessAbi] = await Promise.all([
      ctx.relay.info(), ctx.relay.config(), ctx.relay.abi("ChainStreamChannels"), ctx.relay.abi("TrackRegistry"), ctx.relay.abi("MockStablecoin"),
      ctx.relay.abi("ChainStreamGasless"),
    ]);
    ctx.info = info;
    ctx.loadedAt = Date.now() / 1000; // with info.time: the relay's clock, which judges read tokens
    ctx.config = config;
    ctx.abis = { channels: channelsAbi, registry: registryAbi, token: tokenAbi, gasless: gaslessAbi };
    ctx.domain = makeDomain(info.domain);
    knowErrorsOf(channelsAbi, registryAbi, tokenAbi, gaslessAbi); // decode a custom error from any of them, whichever call met it
  } catch (err) {
    mount($("#view"), h("div.connect-cta", h("h2", "The relay is not answering"), h("p", err.message)));
    return;
  }
  forgetExpiredSessionKeys(Date.now() / 1000);
  ctx.listener = new Listener(ctx);
  ctx.player = new Player(ctx, $("#player"), $("#audio"));
  ctx.listener.addEventListener("change", () => currentView?.update?.());
  // the model tells the page what happened; it never reaches into the UI itself
  ctx.listener.addEventListener("paid", () => clearPaymentErrors());
  ctx.listener.addEventListener("change", () => {
    if (ctx.listener.channel?.status === "open") clearBanner("need-channel"); // its cause is gone
  });
  ctx.relay.addEventListener("reachable", () => {
    clearInterval(relayProbe);
    relayProbe = null;
    clearBanner("relay-relay_unreachable");
  });
  ctx.listener.addEventListener("closed", () => clearPaymentErrors());
  ctx.listener.addEventListener("stop-playback", () => ctx.player.stop());
  txLog.addEventListener("change", (e) => renderTx(e.detail));
  document.addEventListener("keydown", onKeyDown);
  await ctx.listener.refreshCatalog(ZeroAddress).catch((err) => showError(err, "Could not load the catalog"));
  window.addEventListener("hashchange", render);
  render();
  // reconnect silently to the wallet used last time
  const last = localStorage.getItem("chainstream.wallet");
  if (last) {
    ctx.wallets = await discoverWallets();
    const w = ctx.wallets.find((x) => x.info.rdns === last || x.info.uuid === last);
    if (w) await useWallet(w, { silent: true });
  }
  setInterval(() => refreshBalance(), 15000);
}

boot();
