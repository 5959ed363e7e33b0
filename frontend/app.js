// ChainStream web player: the shell (wallet, network, banners, routing). Views live in views/.
import { ZeroAddress, getAddress } from "ethers";

import { makeDomain } from "./lib/protocol.js";
import { ReadTokens } from "./lib/readtokens.js";
import { forgetAllSessionKeys, forgetExpiredSessionKeys } from "./lib/session.js";
import { RelayClient, RelayError } from "./lib/relay.js";
import { Listener } from "./lib/listener.js";
import { WalletConnection, describeTxError, discoverWallets } from "./lib/wallet.js";
import { $, avatarStyle, fmtAmount, h, mount, shortAddr } from "./lib/ui.js";
import { Player } from "./views/player.js";
import { renderActivity, renderListen } from "./views/listen.js";
import { renderStudio } from "./views/studio.js";

/** Friendly titles for the relay's rejection codes (the relay's own message is shown under them). */
const ERROR_TITLES = {
  daily_cap_exceeded: "Daily spending cap reached",
  session_cap_exceeded: "Session key limit reached",
  insufficient_deposit: "Not enough left in your channel — top up to keep listening",
  too_many_payees: "This channel pays the most addresses the relay settles — open a new channel",
  session_key_expired: "This browser's session key has expired",
  unauthorized_signer: "The relay does not accept this signer for the channel",
  channel_not_open: "This channel is closing or closed",
  voucher_mismatch: "The relay computed a different voucher",
  stale_voucher: "Out of sync with the relay",
  seq_gap: "Out of sync with the relay",
  bad_signature: "The voucher signature was refused",
  unknown_track: "This track is not offered in your channel's token",
  not_offered: "Not offered in this token",
  price_overflow: "That would cost more than a channel can hold",
  untrusted_catalog: "The relay's price or split differs from what the artist published on chain: not paid",
  untrusted_state: "The relay's channel state is not signed by your keys: not adopted",
  already_owned: "You already own this track",
  unknown_channel: "The relay does not know this channel yet",
  wrong_relay: "This channel is served by another relay",
  stale_caps: "Those caps are older than the ones in force",
  caps_need_payer: "Raising or lifting a cap needs your wallet's signature",
  close_state_mismatch: "Out of sync with the relay: try closing again",
  relay_unreachable: "The relay is unreachable",
  invalid_request: "The relay rejected the request",
};

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
  tokenOf(address) {
    const a = getAddress(address ?? ZeroAddress);
    return this.info.tokens.find((t) => getAddress(t.address) === a) ?? { address: a, symbol: "?", decimals: 18 };
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
  connect: () => connectFlow(),
  switchNetwork: () => switchNetwork(),
  rerender: () => render(),
};
ctx.relay.tokens = new ReadTokens(ctx);
window.chainstream = ctx; // for debugging in the console

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
  root.prepend(el);
  while (root.children.length > 4) root.lastChild.remove();
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

/** Show any error as a banner: the relay's code and message, or a contract's decoded custom error. */
function showError(err, context = "Something went wrong") {
  console.warn(context, err);
  if (err instanceof RelayError) {
    const friendly = friendlyRelayMessage(err);
    return banner({ kind: "error", title: ERROR_TITLES[err.code] ?? context, message: friendly ?? err.message,
      code: err.code, detail: friendly ? `${err.code} · relay: ${err.message}` : err.code, id: `relay-${err.code}` });
  }
  if (err?.code && ERROR_TITLES[err.code]) {
    return banner({ kind: "error", title: ERROR_TITLES[err.code], message: err.message, code: err.code });
  }
  return banner({ kind: "error", title: context, message: describeTxError(err), code: err?.revert?.name ?? err?.code ?? "" });
}

/** The relay states amounts in the token's smallest unit; say the same in ETH / mUSD for the listener. */
function friendlyRelayMessage(err) {
  const c = ctx.listener?.channel;
  if (!c) return null;
  const token = ctx.tokenOf(c.token);
  const nums = (err.message.match(/\d+/g) ?? []).map(BigInt);
  if (err.code === "daily_cap_exceeded" && nums.length >= 3) {
    const [today, amount, cap] = nums;
    return `This costs ${ctx.fmt(amount, token)}, and you have spent ${ctx.fmt(today, token)} of your ${ctx.fmt(cap, token)} daily cap today. Raise the cap or come back tomorrow.`;
  }
  if (err.code === "insufficient_deposit" && nums.length >= 2) {
    const [total, deposit] = nums;
    return `This would bring your total to ${ctx.fmt(total, token)}, more than the ${ctx.fmt(deposit, token)} you deposited.`;
  }
  if (err.code === "session_cap_exceeded" && nums.length >= 1) {
    return `The session key may sign up to ${ctx.fmt(nums.at(-1), token)} in total.`;
  }
  return null;
}

function modal(build) {
  const root = $("#modal-root");
  const close = () => root.replaceChildren();
  const back = h("div.modal-back", { onclick: (e) => e.target === back && close() });
  const box = h("div.modal", { role: "dialog", "aria-modal": "true" });
  back.append(box);
  mount(root, back);
  build(box, close);
  box.querySelector("input, button")?.focus();
  return close;
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
const VIEWS = { listen: renderListen, activity: renderActivity, studio: renderStudio };
const TITLES = { listen: "Discover", activity: "Your listening activity", studio: "Artist studio" };
let currentView = null;

function route() {
  const name = (location.hash.match(/^#\/(\w+)/)?.[1]) ?? "listen";
  return VIEWS[name] ? name : "listen";
}

function render() {
  const name = route();
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === name);
  $("#topbar-title").textContent = TITLES[name];
  const view = $("#view");
  if (currentView?.name !== name) {
    currentView?.dispose?.();
    view.replaceChildren();
    currentView = { name, ...(VIEWS[name](ctx, view) ?? {}) };
  } else {
    currentView.update?.();
  }
  renderChrome();
}

// ------------------------------------------------------------------------------------------ boot
async function boot() {
  try {
    const [info, config, channelsAbi, registryAbi, tokenAbi] = await Promise.all([
      ctx.relay.info(), ctx.relay.config(), ctx.relay.abi("ChainStreamChannels"), ctx.relay.abi("TrackRegistry"), ctx.relay.abi("MockStablecoin"),
    ]);
    ctx.info = info;
    ctx.loadedAt = Date.now() / 1000; // with info.time: the relay's clock, which judges read tokens
    ctx.config = config;
    ctx.abis = { channels: channelsAbi, registry: registryAbi, token: tokenAbi };
    ctx.domain = makeDomain(info.domain);
  } catch (err) {
    mount($("#view"), h("div.connect-cta", h("h2", "The relay is not answering"), h("p", err.message)));
    return;
  }
  forgetExpiredSessionKeys(Date.now() / 1000);
  ctx.listener = new Listener(ctx);
  ctx.player = new Player(ctx, $("#player"), $("#audio"));
  ctx.listener.addEventListener("change", () => currentView?.update?.());
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
