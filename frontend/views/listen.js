// Listen view: the catalog as album tiles, the listener's channel (balance, today's spend vs cap, session key,
// top-up, close, withdraw) and the history of plays and tips. Also the Activity view.
import { ZeroAddress, getAddress } from "ethers";

import * as L from "../lib/ledger.js";
import { Model, meteringOf, ownedAfter, playPrice, termsFromJson } from "../lib/pricing.js";
import { Ticker, artStyle, artistName, avatarStyle, fmtDuration, fmtTime, h, mount, parseAmount, shortAddr, trackTitle } from "../lib/ui.js";
import { DEFAULT_SESSION_DAYS } from "../lib/listener.js";
import { artistNames } from "../lib/profiles.js";
import { ICONS, openTipModal } from "./player.js";

/** The listen view's own state (forms, open panel, search): made afresh on each visit, dropped on leaving. */
function viewState(ctx) {
  const form = { token: ctx.listener.catalogToken ?? ZeroAddress, amount: "", method: null, days: DEFAULT_SESSION_DAYS, busy: null, panel: null, capText: "", topUpText: "" };
  return Object.assign(Object.create(ctx), { form, search: "" });
}

export function renderListen(ctx, root) {
  ctx = viewState(ctx);
  const hero = h("div.hero");
  const tiles = h("div.tiles", { "data-testid": "catalog" });
  const noMatch = h("div.empty.hidden", { "data-testid": "no-match" });
  const search = h("input.input.search", { type: "search", placeholder: "Search titles or artists  ( / )", "aria-label": "Search the catalog", "data-testid": "catalog-search",
    oninput: (e) => { ctx.search = e.target.value; applySearch(tiles, noMatch, ctx.search); } });
  const flow = h("div");
  const side = h("div.side-col");
  const history = h("div.card", h("div.card-head", h("h3", "Recent plays & tips"), h("a.btn.small.ghost", { href: "#/activity" }, "See all")), h("div.history", { "data-testid": "history" }));
  const channelSlot = h("div.side-col-inner");
  mount(side, channelSlot, history);
  mount(root, h("div.listen",
    h("div", hero,
      h("div.section-head", h("h2", "Tonight's catalog"), h("span.muted", { "data-testid": "catalog-token" })),
      h("div.search-row", search), tiles, noMatch,
      h("div.section-head", h("h2", "Where your money goes")), flow),
    side));

  const keys = { tiles: null, player: null, side: null, history: null };
  let sideRefs = {};
  let countdownTimer = null;

  function update() {
    const { listener } = ctx;
    renderHero(ctx, hero);
    root.querySelector("[data-testid=catalog-token]").textContent = `Prices in ${listener.token().symbol}`;
    const tkey = JSON.stringify([listener.catalog.map((t) => t.trackId + t.splitHash + JSON.stringify(t.terms)), listener.catalogToken, artistNames.version,
      listener.channel?.channelId, listener.channel?.status, listener.ledger ? [...listener.ledger.plays] : null, listener.ledger ? [...listener.ledger.owned] : null]);
    if (tkey !== keys.tiles) {
      keys.tiles = tkey;
      renderTiles(ctx, tiles);
      applySearch(tiles, noMatch, ctx.search);
      keys.player = null;
    }
    // the player's state only restyles the tiles in place (no rebuild under the pointer)
    const pkey = JSON.stringify([keys.tiles, ctx.player.track?.trackId, ctx.player.status]);
    if (pkey !== keys.player) {
      keys.player = pkey;
      updateTilesPlayer(ctx, tiles);
      renderFlow(ctx, flow);
    }
    const skey = sideKey(ctx);
    if (skey !== keys.side) {
      keys.side = skey;
      sideRefs = renderSide(ctx, channelSlot);
    }
    updateSideNumbers(ctx, sideRefs);
    if (listener.history !== keys.history) {
      const fresh = keys.history && listener.history.length && keys.history[0]?.seq !== listener.history[0]?.seq ? listener.history[0].seq : null;
      keys.history = listener.history;
      renderHistory(ctx, history.querySelector(".history"), listener.history.slice(0, 6), fresh);
    }
  }

  countdownTimer = setInterval(() => updateSideNumbers(ctx, sideRefs), 1000);
  update();
  return { update, dispose: () => clearInterval(countdownTimer) };
}

// ------------------------------------------------------------------------------------------ hero
function renderHero(ctx, el) {
  const { listener } = ctx;
  const n = listener.catalog.length;
  const artists = new Set(listener.catalog.map((t) => t.owner)).size;
  if (el.childElementCount) {
    el.querySelector("[data-k=tracks]").textContent = n;
    el.querySelector("[data-k=artists]").textContent = artists;
    return;
  }
  mount(el,
    h("h1", "Pay for exactly what you play."),
    h("p", "One deposit opens a payment channel. Your browser signs a tiny voucher per play or per second — no wallet pop-ups — and artists are paid on-chain with their splits."),
    h("div.hero-stats",
      h("div", h("b", { "data-k": "tracks" }, n), h("span", "tracks")),
      h("div", h("b", { "data-k": "artists" }, artists), h("span", "artists")),
      h("div", h("b", "0 pop-ups"), h("span", "per play"))),
    h("div.hero-eq", { "aria-hidden": "true" }, Array.from({ length: 16 }, (_, i) => h("i", { style: { height: `${30 + ((i * 37) % 60)}px`, animationDelay: `${-(i * 0.17)}s` } }))));
}

// ------------------------------------------------------------------------------------------ tiles
/** Hide the tiles whose title and artist do not contain every word of the query. */
function applySearch(tiles, noMatch, query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const tile of tiles.querySelectorAll("[data-testid=track]")) {
    const text = `${tile.dataset.title} ${tile.dataset.owner} ${artistName(tile.dataset.owner)}`.toLowerCase();
    const match = words.every((w) => text.includes(w));
    tile.classList.toggle("hidden", !match);
    shown += match ? 1 : 0;
  }
  noMatch.classList.toggle("hidden", !words.length || shown > 0);
  noMatch.textContent = `No track or artist matches “${query.trim()}”.`;
}

function renderTiles(ctx, el, tracks = ctx.listener.catalog) {
  const { listener, player } = ctx;
  const token = listener.token();
  if (!tracks.length) {
    mount(el, h("div.empty", { style: { gridColumn: "1 / -1" } }, "No tracks are offered in this token yet."));
    return;
  }
  mount(el, tracks.map((t) => {
    const terms = termsFromJson(t.terms[token.address] ?? Object.values(t.terms)[0] ?? {});
    const state = listener.ledger;
    const plays = state ? L.playsOf(state, t.trackId) : 0;
    const owned = state?.owned.has(t.trackId.toLowerCase()) || (terms.model === Model.STREAM_TO_OWN && plays >= terms.ownAfter);
    const chips = [];
    if (owned) chips.push(h("span.chip.ok", "Owned · plays free"));
    else if (terms.model === Model.STREAM_TO_OWN) {
      const next = playPrice(terms, plays + 1);
      chips.push(h("span.chip.accent", `${ctx.fmt(next, token)} / play`));
      chips.push(h("span.chip", `own after ${terms.ownAfter}`));
    } else if (terms.perPlay > 0n) chips.push(h("span.chip.accent", `${ctx.fmt(terms.perPlay, token)} / play`));
    if (terms.perSecond > 0n) {
      // a track priced both ways can be played per second instead: click its per-second price
      const both = terms.perPlay > 0n && !owned;
      chips.push(h(both ? "button.chip.teal.chip-btn" : "span.chip.teal", both ? {
        title: "Play it paying per second instead", "data-testid": "play-per-second",
        onclick: () => player.play(t.trackId, { mode: "seconds" }),
      } : {}, `${ctx.fmt(terms.perSecond, token)} / sec`));
    }
    if (terms.download > 0n && !owned) chips.push(h("span.chip", `buy ${ctx.fmt(terms.download, token)}`));
    const mode = meteringOf(terms);
    const playBtn = h("button.play-fab", {
      html: ICONS.play, "aria-label": `Play ${t.title}`, "data-testid": "play",
      onclick: () => {
        const current = player.track?.trackId === t.trackId;
        if (current && player.status === "playing") player.toggle();
        else if (current && player.status === "paused") player.resume();
        else player.play(t.trackId);
      },
    });
    return h("article.tile", { "data-testid": "track", "data-track-id": t.trackId, "data-title": t.title, "data-owner": t.owner, "data-mode": mode },
      h("div.art", { style: { background: artStyle(t.trackId) } },
        h("div.eq.paused", h("i"), h("i"), h("i"), h("i")),
        h("div.art-title", trackTitle(t)), playBtn),
      h("div.tile-meta",
        h("div.tile-title", trackTitle(t)),
        h("a.tile-artist", { href: `#/artist/${t.owner}`, "data-testid": "artist-link", title: `All tracks by ${t.owner}` },
          h("span.avatar.sm", { style: { background: avatarStyle(t.owner) } }), artistName(t.owner),
          t.split.recipients.length > 1 ? h("span.faint", `+${t.split.recipients.length - 1}`) : null),
        h("div.tile-prices", chips),
        terms.model === Model.STREAM_TO_OWN && !owned && state ? h("div.own-bar", { title: `${plays} of ${terms.ownAfter} plays towards owning it (${ctx.fmt(ownedAfter(terms), token)} in total)` },
          h("i", { style: { width: `${(plays / terms.ownAfter) * 100}%` } })) : null,
        h("div.tile-actions",
          h("button.btn.small.ghost", { "data-testid": "queue-add", "aria-label": `Add ${t.title} to the queue`, onclick: () => { player.enqueue(t.trackId); ctx.toast(`“${t.title}” is up next`); } }, "+ Queue"),
          listener.channel?.status === "open" ? [
            h("button.btn.small.ghost", { html: ICONS.heart + "<span>Tip</span>", "data-testid": "tip", onclick: () => openTipModal(ctx, t.trackId) }),
            terms.download > 0n && !owned ? h("button.btn.small.ghost", { "data-testid": "buy", onclick: () => buyTrack(ctx, t) }, "Buy") : null,
          ] : null)));
  }));
}

// ------------------------------------------------------------------------------------------ split transparency
const FLOW_COLORS = ["#8b6cff", "#19d3a8", "#5a8dff", "#ffb54a", "#ff5d7c", "#c66bff"];

/** The current (or first) track's next charge, divided exactly as the voucher will divide it. */
function renderFlow(ctx, el) {
  const { listener, player } = ctx;
  const t = player.track ?? listener.catalog[0];
  const listing = t ? listener.listing(t.trackId) : null;
  if (!listing) {
    mount(el);
    return;
  }
  const state = listener.ledger ?? L.openedState("0x" + "00".repeat(32));
  const token = listener.token();
  const perSecond = meteringOf(listing.terms) === "seconds";
  const charge = perSecond ? L.chargeSeconds(listing, 60) : L.chargePlay(state, listing);
  const what = perSecond ? "a minute of" : charge.amount ? "your next play of" : "a play of";
  const split = listing.split;
  const role = (a) => (a === split.feeRecipient && split.feeBps ? `Platform fee · ${split.feeBps / 100}%`
    : a === split.recipients[0] ? `Primary artist · ${split.bps[0] / 100}%` : `Collaborator · ${split.bps[split.recipients.indexOf(a)] / 100}%`);
  const total = charge.amount || 1n;
  mount(el, h("div.card", { "data-testid": "money-flow" },
    h("div.row", { style: { justifyContent: "space-between", marginBottom: "12px" } },
      h("div.row", h("div.t-art", { style: { background: artStyle(t.trackId), width: "40px", height: "40px", borderRadius: "8px" } }),
        h("div", h("b", `${ctx.fmt(charge.amount, token)} for ${what} “${t.title}”`),
          h("div.faint", { style: { fontSize: "12.5px" } }, "Split in your voucher exactly as the registry says — platform fee off the top, rounding dust to the primary artist"))),
      h("span.chip.mono", { title: listing.splitHash }, `split ${listing.splitHash.slice(0, 10)}…`)),
    charge.payments.length ? [
      h("div.split-bar", { style: { height: "12px" } }, charge.payments.map(([, v], i) => h("i", { style: { width: `${Number((v * 10000n) / total) / 100}%`, background: FLOW_COLORS[i % FLOW_COLORS.length] } }))),
      h("div", { style: { display: "grid", gap: "10px", marginTop: "12px", gridTemplateColumns: `repeat(${Math.min(4, charge.payments.length)}, minmax(0, 1fr))` } }, charge.payments.map(([a, v], i) => h("div.stat",
        h("span", { style: { color: FLOW_COLORS[i % FLOW_COLORS.length] } }, role(a)),
        h("b", ctx.fmt(v, token)), h("div.faint.mono", { style: { fontSize: "11.5px" } }, shortAddr(a))))),
    ] : h("div.muted", "This play is free — you own the track.")));
}

function updateTilesPlayer(ctx, el) {
  const { player } = ctx;
  for (const tileEl of el.querySelectorAll("[data-testid=track]")) {
    const current = player.track?.trackId === tileEl.dataset.trackId && player.status !== "idle";
    const active = current && ["playing", "loading", "paying"].includes(player.status);
    tileEl.classList.toggle("playing", current);
    tileEl.querySelector(".eq")?.classList.toggle("paused", player.status !== "playing");
    const fab = tileEl.querySelector(".play-fab");
    if (fab && fab.dataset.state !== String(active)) {
      fab.dataset.state = String(active);
      fab.innerHTML = active ? ICONS.pause : ICONS.play;
    }
  }
}

async function buyTrack(ctx, t) {
  try {
    await ctx.listener.buy(t.trackId);
    ctx.toast(`You own “${t.title}” now — plays are free`);
  } catch (err) {
    ctx.showError(err, "Purchase refused");
  }
}

// ------------------------------------------------------------------------------------------ channel panel
function sideKey(ctx) {
  const { listener, wallet } = ctx;
  const c = listener.channel;
  return JSON.stringify([wallet?.account, wallet?.chainId, ctx.chainOk(), c?.channelId, c?.status, !!c?.closesAt, !!listener.session,
    listener.sessionUsable(), c?.dailyCap, ctx.form.panel, ctx.form.busy, ctx.form.token, ctx.form.method, listener.channels.length, !!listener.closeResult,
    !!listener.loading, String(listener.gas.eth), String(listener.gas.quote?.fee ?? "")]);
}

function renderSide(ctx, el) {
  const { listener, wallet } = ctx;
  const refs = {};
  if (!wallet?.account) {
    mount(el, h("div.card.channel-card", { "data-testid": "channel-card" },
      h("h3", "Start listening"),
      h("p.muted", { style: { margin: "0 0 14px" } }, "Connect a wallet and deposit once. Plays are then paid from this browser, voucher by voucher."),
      h("button.btn.primary", { style: { width: "100%" }, onclick: () => ctx.connect() }, "Connect wallet")));
    return refs;
  }
  if (!ctx.chainOk()) {
    mount(el, h("div.card.channel-card", { "data-testid": "channel-card" }, h("h3", "Wrong network"),
      h("p.muted", { style: { margin: "0 0 14px" } }, `Switch your wallet to chain ${ctx.info.chainId} to see your channels.`),
      h("button.btn.primary", { style: { width: "100%" }, "data-testid": "switch-network", onclick: () => ctx.switchNetwork() }, "Switch network")));
    return refs;
  }
  const c = listener.channel;
  if (!c && listener.loading) {
    mount(el, h("div.card.channel-card", { "data-testid": "channel-card", "data-status": "loading" },
      h("h3", "Your channels"), h("p.muted", h("span.spinner"), " Loading your channels…")));
    return refs;
  }
  if (!c || (c.status === "closed" && ctx.form.panel === "new")) {
    mount(el, openCard(ctx), channelPicker(ctx));
    return refs;
  }
  const token = ctx.tokenOf(c.token);
  refs.remaining = h("span.num", { "data-testid": "remaining" });
  refs.remainingTicker = new Ticker(refs.remaining, (v) => ctx.fmt(v, token, { symbol: false }));
  refs.deposit = h("b", { "data-testid": "deposit" });
  refs.spent = h("b", { "data-testid": "spent" });
  refs.settled = h("b", { "data-testid": "settled" });
  refs.today = h("span.num", { "data-testid": "spent-today" });
  refs.capLabel = h("span.muted", { "data-testid": "daily-cap" });
  refs.capBar = h("i");
  refs.capMeter = h("div.meter-bar", refs.capBar);
  refs.c = c;
  const statusChip = c.status === "open" ? h("span.chip.ok", h("span.dot"), "open")
    : c.status === "closing" ? h("span.chip.warn", h("span.dot"), "closing") : h("span.chip", "closed");

  const body = [
    h("div.card-head", h("h3", "Your channel"), h("div.row", h("span.chip", token.symbol), statusChip)),
    h("div.label", c.status === "closed" ? "Balance — remainder returned" : "Balance"),
    h("div.balance", refs.remaining, h("small", token.symbol)),
    h("div.stat-row",
      h("div.stat", h("span", "Deposit"), refs.deposit),
      h("div.stat", h("span", "Spent"), refs.spent),
      h("div.stat", h("span", "Settled"), refs.settled)),
  ];

  if (c.status === "open") {
    body.push(h("div.meter", { "data-testid": "cap-meter" },
      h("div.meter-head", h("span", "Today ", refs.today), refs.capLabel), refs.capMeter));
    const session = listener.session;
    // A key past (or within the relay's margin of) its expiry cannot pay: offer to replace it, as for a missing one.
    const stale = session && !listener.sessionUsable();
    const expiredWord = () => (listener.chainNow() >= c.sessionExpiry ? "expired" : "expires too soon to pay");
    body.push(h("div.kv-list",
      h("div", h("span.k", "Session key"), session ? h("span.row", h("span.mono", { title: session.address }, shortAddr(session.address)),
        stale ? h("span.chip.warn", expiredWord()) : null) : h("span.chip.warn", "not in this browser")),
      h("div", h("span.k", "Key expires"), h("span", { "data-k": "expiry" }, "")),
      h("div", h("span.k", "Channel"), h("span.mono", { title: c.channelId }, shortAddr(c.channelId)))));
    if (!session) {
      body.push(h("div.inline-form", h("div.muted", "Vouchers from this browser need your wallet's signature each time. Authorise a session key to play without pop-ups."),
        busyButton(ctx, "authorize", "Authorise this browser", () => listener.authorizeSession(), "btn primary small")));
    } else if (stale) {
      body.push(h("div.inline-form", h("div.muted", `This browser's session key ${expiredWord()}: vouchers need your wallet's signature each time. Renew it (one transaction) to play without pop-ups.`),
        busyButton(ctx, "authorize", "Renew this browser's key", () => listener.authorizeSession(), "btn primary small", "renew-session")));
    }
    body.push(h("div.actions-row",
      h("button.btn.small", { "data-testid": "set-cap", onclick: () => togglePanel(ctx, "cap") }, c.dailyCap ? "Change daily cap" : "Set daily cap"),
      h("button.btn.small", { "data-testid": "top-up", onclick: () => togglePanel(ctx, "topup") }, "Top up"),
      h("button.btn.small.danger", { "data-testid": "close-menu", onclick: () => togglePanel(ctx, "close") }, "Close")));
    if (ctx.form.panel === "cap") body.push(capForm(ctx, token));
    if (ctx.form.panel === "topup") body.push(topUpForm(ctx, token));
    if (ctx.form.panel === "close") body.push(closeForm(ctx, token));
  } else if (c.status === "closing" && !c.closesAt) {
    // a cooperative close the relay co-signed, its transaction not mined yet: no challenge window applies
    body.push(h("div.inline-form", { "data-testid": "coop-pending" },
      h("div.row", h("span.spinner"), h("b", "Closing cooperatively")),
      h("div.muted", "The relay co-signed your latest voucher. Once the close transaction is mined, artists are paid and the rest comes back to your wallet in the same transaction — no challenge window."),
      h("div.muted", "If the transaction was rejected or dropped, send it again:"),
      h("div.row.wrap",
        busyButton(ctx, "coop-retry", "Send the close again", async () => {
          const r = await listener.closeCooperative();
          ctx.toast(`Channel closed: ${ctx.fmt(r.refund ?? 0n, token)} refunded`);
        }, "btn primary small", "coop-retry"),
        busyButton(ctx, "unilateral", "Close without the relay", async () => {
          await listener.requestClose();
        }, "btn danger small", "request-close"))));
  } else if (c.status === "closing") {
    refs.countdown = h("div.countdown", { "data-testid": "countdown" });
    refs.withdraw = busyButton(ctx, "withdraw", "Withdraw remainder", async () => {
      const r = await listener.withdraw();
      ctx.toast(`Channel closed: ${ctx.fmt(r.refund ?? 0n, token)} returned to your wallet`);
    }, "btn primary", "withdraw");
    body.push(h("div.inline-form",
      h("div.label", "Challenge window"),
      refs.countdown,
      h("div.muted", "The relay can still settle your latest vouchers until the window ends; then withdraw what is left."),
      refs.withdraw));
  } else {
    const r = listener.closeResult;
    body.push(h("div.inline-form", { "data-testid": "closed-summary" },
      h("div", h("b", "Channel closed"), r?.cooperative ? h("span.chip.ok", { style: { marginLeft: "8px" } }, "cooperative") : null),
      r ? h("div.kv-list",
        h("div", h("span.k", "Paid to artists"), h("span", { "data-testid": "closed-settled" }, ctx.fmt(r.settled ?? 0n, token))),
        h("div", h("span.k", "Refunded to you"), h("span", { "data-testid": "refund" }, ctx.fmt(r.refund ?? 0n, token))),
        r.gasFree ? h("div", h("span.k", "Relay's fee"), h("span", { "data-testid": "close-fee", "data-fee": String(r.fee) }, ctx.fmt(r.fee, token))) : null,
        h("div", h("span.k", "Transaction"), h("span.mono", shortAddr(r.hash)))) : null,
      h("button.btn.primary", { "data-testid": "open-new", onclick: () => { ctx.form.panel = "new"; ctx.listener.changed(); } }, "Open a new channel")));
  }
  mount(el, h("div.card.channel-card", { "data-testid": "channel-card", "data-status": c.status, "data-channel-id": c.channelId }, body), channelPicker(ctx));
  return refs;
}

function updateSideNumbers(ctx, refs) {
  const c = ctx.listener.channel;
  if (!refs.c || !c || refs.c.channelId !== c.channelId) return;
  const token = ctx.tokenOf(c.token);
  const remaining = c.status === "closed" ? 0n : BigInt(c.remaining);
  if (remaining !== refs.remainingTicker.value || !refs.remaining.textContent) refs.remainingTicker.set(remaining, { animate: !!refs.remaining.textContent });
  const bare = { symbol: false, sig: 4 };
  refs.deposit.textContent = ctx.fmt(c.deposit, token, bare);
  refs.spent.textContent = ctx.fmt(c.spent, token, bare);
  refs.settled.textContent = ctx.fmt(c.settled, token, bare);
  if (refs.today) {
    const today = BigInt(c.spentToday);
    refs.today.textContent = ctx.fmt(today, token);
    if (c.dailyCap) {
      const cap = BigInt(c.dailyCap);
      const pct = cap ? Number((today * 10000n) / cap) / 100 : 0;
      refs.capLabel.textContent = `of ${ctx.fmt(cap, token)} daily cap`;
      refs.capBar.style.width = `${Math.min(100, pct)}%`;
      refs.capMeter.className = "meter-bar" + (pct >= 80 ? " hot" : "");
    } else {
      refs.capLabel.textContent = "no daily cap";
      refs.capBar.style.width = "100%";
      refs.capMeter.className = "meter-bar nocap";
    }
    const exp = document.querySelector("[data-k=expiry]");
    const left = c.sessionExpiry - ctx.listener.chainNow();
    if (exp) exp.textContent = !c.sessionExpiry ? "—" : left > 0 ? `in ${fmtDuration(left)}` : "expired";
  }
  if (refs.countdown) {
    const left = (c.closesAt ?? 0) - ctx.listener.chainNow();
    refs.countdown.textContent = left > 0 ? fmtDuration(left) : "Window over";
    refs.withdraw.disabled = left > 0 || !!ctx.form.busy;
  }
}

function togglePanel(ctx, name) {
  ctx.form.panel = ctx.form.panel === name ? null : name;
  ctx.listener.changed();
}

/** A button that runs an async action once, shows a spinner, and reports errors as banners. */
function busyButton(ctx, id, label, action, cls = "btn primary", testid = id) {
  const busy = ctx.form.busy === id;
  const btn = h("button", { class: cls, "data-testid": testid, disabled: !!ctx.form.busy, onclick: async () => {
    ctx.form.busy = id;
    ctx.listener.changed();
    try {
      await action();
    } catch (err) {
      ctx.showError(err, `${label} failed`);
    } finally {
      ctx.form.busy = null;
      ctx.listener.changed();
    }
  } }, busy ? [h("span.spinner"), ctx.form.progress || "Working…"] : label);
  return btn;
}

function capForm(ctx, token) {
  const c = ctx.listener.channel;
  const input = h("input.input", { value: ctx.form.capText || (c.dailyCap ? ctx.fmt(c.dailyCap, token, { symbol: false, sig: 6 }) : ""), placeholder: "e.g. 0.0001", inputmode: "decimal", "data-testid": "cap-input", oninput: (e) => { ctx.form.capText = e.target.value; } });
  return h("div.inline-form",
    h("label.field", h("span", "Daily spending cap"), h("div.input-wrap", input, h("span.suffix", token.symbol))),
    h("div.muted", "Signed by your session key; the relay refuses any voucher that would pass it today. 0 removes the cap."),
    h("div.row", busyButton(ctx, "cap", "Save cap", async () => {
      const value = parseAmount(ctx.form.capText || input.value, token);
      if (value === null) throw Object.assign(new Error("enter an amount"), { code: "" });
      await ctx.listener.setCaps({ dailyCap: value });
      ctx.form.panel = null;
      ctx.form.capText = "";
      ctx.toast(value ? `Daily cap set to ${ctx.fmt(value, token)}` : "Daily cap removed");
    }, "btn primary small", "cap-save"), h("button.btn.small.ghost", { onclick: () => togglePanel(ctx, "cap") }, "Cancel")));
}

/**
 * The gas-free notice of a form: the relay's fee, shown before the wallet is asked to sign (and signed as the most
 * it may keep). data-fee carries the fee in token units.
 */
function gasFreeNote(ctx, token, what) {
  const fee = ctx.listener.gas.quote.fee;
  return h("div.muted.gas-free", { "data-testid": "gasless-fee", "data-fee": String(fee) },
    ctx.listener.gas.eth === 0n ? "Your wallet has no ETH for gas, so the relay sends the transaction for you. " : "The relay sends the transaction for you. ",
    "Its fee: ", h("b", ctx.fmt(fee, token)), `, taken from ${what}. You sign; you pay no gas.`);
}

function topUpForm(ctx, token) {
  const gasFree = ctx.listener.gasFree();
  const input = h("input.input", { value: ctx.form.topUpText, placeholder: token.decimals === 18 ? "0.01" : "10", inputmode: "decimal", "data-testid": "topup-input", oninput: (e) => { ctx.form.topUpText = e.target.value; } });
  return h("div.inline-form",
    h("label.field", h("span", "Add to deposit"), h("div.input-wrap", input, h("span.suffix", token.symbol))),
    gasFree ? gasFreeNote(ctx, token, "the amount added") : null,
    h("div.row", busyButton(ctx, "topup", "Top up", async () => {
      const value = parseAmount(ctx.form.topUpText, token);
      if (!value) throw new Error("enter an amount");
      await ctx.listener.topUp(value, gasFree ? { gasFree, maxFee: ctx.listener.gas.quote.fee } : {});
      ctx.form.panel = null;
      ctx.form.topUpText = "";
      ctx.toast(`Added ${ctx.fmt(value, token)} to your channel`);
    }, "btn primary small"), h("button.btn.small.ghost", { onclick: () => togglePanel(ctx, "topup") }, "Cancel")));
}

function closeForm(ctx, token) {
  const { listener } = ctx;
  const c = listener.channel;
  const gasFree = listener.gasFree();
  return h("div.inline-form", { "data-testid": "close-form" },
    h("div", h("b", "Close now"), h("div.muted", `The relay co-signs your latest voucher; artists are paid and the remaining ${ctx.fmt(c.remaining, token)} comes back in one transaction.`)),
    gasFree ? gasFreeNote(ctx, token, "the refund") : null,
    busyButton(ctx, "coop", "Close & refund now", async () => {
      const r = await listener.closeCooperative(gasFree ? { gasFree, maxFee: listener.gas.quote.fee } : {});
      ctx.form.panel = null;
      ctx.toast(`Channel closed: ${ctx.fmt(r.refund ?? 0n, token)} refunded`);
    }, "btn primary small", "close-coop"),
    h("div.divider"),
    h("div", h("b", "Close without the relay"), h("div.muted", `Starts a ${Math.round(ctx.info.challengePeriod / 3600)} h challenge window in which the relay can settle; then you withdraw the rest.`)),
    busyButton(ctx, "unilateral", "Request close", async () => {
      await listener.requestClose();
      ctx.form.panel = null;
    }, "btn danger small", "request-close"));
}

function openCard(ctx) {
  const { listener } = ctx;
  const token = ctx.tokenOf(ctx.form.token);
  const isEth = token.address === ZeroAddress;
  // a wallet with the token but no ETH opens by signatures alone, unless the listener picks another way
  const method = isEth ? "eth" : ctx.form.method ?? (listener.gasFree(token.address) ? "gasless" : "permit");
  if (!ctx.form.amount) ctx.form.amount = isEth ? "0.01" : "20";
  const presets = isEth ? ["0.005", "0.01", "0.05"] : ["5", "20", "50"];
  const balance = h("span.muted.num", { "data-testid": "wallet-token-balance" }, "…");
  listener.tokenBalance(token.address).then((b) => { balance.textContent = `Wallet: ${ctx.fmt(b, token)}`; }).catch(() => { balance.textContent = ""; });
  const amount = h("input.input", { value: ctx.form.amount, inputmode: "decimal", "data-testid": "deposit-input", oninput: (e) => { ctx.form.amount = e.target.value; } });
  const body = [
    h("div.card-head", h("h3", listener.channels.length ? "Open a new channel" : "Open your listening channel"), h("span.chip.accent", "one deposit")),
    h("div.form-grid",
      h("div.field", h("span", "Pay with"), h("div.seg", ctx.info.tokens.map((t) => h("button", {
        class: t.address === token.address ? "on" : "", "data-testid": `token-${t.symbol}`,
        onclick: () => { ctx.form.token = t.address; ctx.form.amount = ""; ctx.listener.refreshCatalog(t.address).catch(() => {}); ctx.listener.changed(); },
      }, t.symbol)))),
      h("label.field", h("span", "Deposit"), h("div.input-wrap", amount, h("span.suffix", token.symbol))),
      h("div.presets", presets.map((p) => h("button", { type: "button", class: p === ctx.form.amount ? "on" : "", onclick: () => { ctx.form.amount = p; amount.value = p; } }, `${p} ${token.symbol}`))),
      balance,
      !isEth ? h("div.field", h("span", "Funding"), h("div.seg",
        listener.gas.quote ? h("button", { class: method === "gasless" ? "on" : "", "data-testid": "method-gasless", onclick: () => { ctx.form.method = "gasless"; ctx.listener.changed(); } }, "Gas-free") : null,
        h("button", { class: method === "permit" ? "on" : "", "data-testid": "method-permit", onclick: () => { ctx.form.method = "permit"; ctx.listener.changed(); } }, "One signature (permit)"),
        h("button", { class: method === "approve" ? "on" : "", "data-testid": "method-approve", onclick: () => { ctx.form.method = "approve"; ctx.listener.changed(); } }, "Approve + open"))) : null,
      method === "gasless" ? gasFreeNote(ctx, token, "your deposit") : null,
      h("label.field", h("span", "Session key valid for"), h("select.input", { onchange: (e) => { ctx.form.days = Number(e.target.value); } },
        [1, 7, 30].map((d) => h("option", { value: d, selected: d === ctx.form.days }, `${d} day${d > 1 ? "s" : ""}`)))),
      h("div.muted", { style: { fontSize: "12.5px" } }, "A fresh key is created in this browser and authorised in the open transaction. It can only pay from this channel."),
      busyButton(ctx, "open", "Open channel", async () => {
        const value = parseAmount(ctx.form.amount, token);
        if (!value) throw new Error("enter a deposit amount");
        const progress = (msg) => {
          ctx.form.progress = msg;
          ctx.listener.changed();
        };
        if (method === "gasless") await listener.openGasless({ token: token.address, amount: value, maxFee: listener.gas.quote.fee, days: ctx.form.days }, progress);
        else await listener.openChannel({ token: token.address, amount: value, method, days: ctx.form.days }, progress);
        ctx.form.panel = null;
        ctx.form.progress = null;
        ctx.toast(`Channel open with ${ctx.fmt(value, token)} — press play`);
      }, "btn primary", "open-channel"),
      !isEth ? h("button.btn.small.ghost", { "data-testid": "faucet", onclick: async () => {
        try {
          await listener.mintTestTokens(token.address, 100n * 10n ** BigInt(token.decimals));
          ctx.toast(`Minted 100 test ${token.symbol}`);
          ctx.listener.changed();
          keysReset();
        } catch (err) {
          ctx.showError(err, "Mint failed");
        }
      } }, `Get 100 test ${token.symbol}`) : null),
  ];
  return h("div.card.channel-card", { "data-testid": "channel-card", "data-status": "none" }, body);
}

function keysReset() {
  /* the balance line refreshes on the next render */
}

function channelPicker(ctx) {
  const { listener } = ctx;
  if (listener.channels.length < 2 && !(listener.channel?.status === "closed")) return null;
  return h("div.card",
    h("h3", "Your channels"),
    h("div.history", listener.channels.map((c) => h("div.h-item", { style: { cursor: "pointer" }, onclick: () => { ctx.form.panel = null; listener.selectChannel(c.channelId).catch((e) => ctx.showError(e)); } },
      h("div.h-art", { style: { background: artStyle(c.channelId) } }),
      h("div", { style: { minWidth: 0 } }, h("div.h-title.mono", shortAddr(c.channelId)), h("div.h-sub", `${c.status} · ${ctx.fmt(c.deposit, c.token)} deposit`)),
      h("div.h-amt", ctx.fmt(c.spent ?? c.settled, c.token), h("small", c.channelId === listener.channel?.channelId ? "active" : "spent"))))));
}

// ------------------------------------------------------------------------------------------ history
const KIND_ICON = { play: "▶", seconds: "◷", tip: "♥", download: "⬇" };

function historyRow(ctx, item, fresh) {
  const token = ctx.listener.token();
  const direct = item.kind === "tip" && !item.title;
  const what = direct ? `Tip to ${shortAddr("0x" + item.target.slice(26))}` : (item.title ?? shortAddr(item.target));
  const sub = item.kind === "play" ? "Play" : item.kind === "seconds" ? `${item.units} s listened` : item.kind === "tip" ? (item.memo ? `Tip · “${item.memo}”` : "Tip") : "Purchase";
  return h("div.h-item", { class: fresh === item.seq ? "new" : "", "data-testid": "history-item", "data-kind": item.kind },
    h("div.h-art", { style: { background: direct ? avatarStyle("0x" + item.target.slice(26)) : artStyle(item.target) } }, KIND_ICON[item.kind]),
    h("div", { style: { minWidth: 0 } }, h("div.h-title", what), h("div.h-sub", `${sub} · ${fmtTime(item.at)}`)),
    h("div.h-amt", item.amount === "0" ? "free" : ctx.fmt(item.amount, token), h("small", `#${item.seq}`)));
}

function renderHistory(ctx, el, items, fresh) {
  if (!ctx.listener.channel) {
    mount(el, h("div.empty", "Your plays and tips will show up here, each with what it cost."));
    return;
  }
  if (!items.length) {
    mount(el, h("div.empty", "Nothing paid yet — press play on a track."));
    return;
  }
  mount(el, items.map((i) => historyRow(ctx, i, fresh)));
}

// ------------------------------------------------------------------------------------------ activity view
/** Every payment of the account's channels (newest first), with its date, channel, amount and settlement status. */
export function renderActivity(ctx, root) {
  const list = h("div.history", { "data-testid": "activity" });
  const summary = h("div.kpis.kpis-3");
  mount(root, h("div", { style: { maxWidth: "980px" } },
    h("div.studio-head", h("div", h("div.label", "Listening"), h("h1", "Activity"))),
    h("div", { style: { marginTop: "20px" } }, summary),
    h("div.card", { style: { marginTop: "16px" } }, list)));
  let items = null;
  let loadedFor = null;
  let loading = false;
  async function load() {
    const key = JSON.stringify(ctx.listener.channels.map((c) => [c.channelId, c.seq, c.settled, c.status]));
    if (key === loadedFor || loading) return;
    loading = true;
    try {
      items = await ctx.listener.activity();
      loadedFor = key;
    } finally {
      loading = false;
    }
    draw();
  }
  function draw() {
    const { listener } = ctx;
    if (!listener.channels.length) {
      mount(summary);
      mount(list, h("div.empty", ctx.wallet ? "No channel yet — open one on the Listen page." : "Connect a wallet to see your activity."));
      return;
    }
    const token = listener.token();
    const mine = (items ?? []).filter((i) => i.token.toLowerCase() === token.address.toLowerCase());
    const sum = (pred) => mine.filter(pred).reduce((a, i) => a + BigInt(i.amount), 0n);
    mount(summary,
      h("div.kpi", h("span", "This session"), h("b", { "data-testid": "activity-session" }, ctx.fmt(listener.sessionSpent, token))),
      h("div.kpi.pending", h("span", h("span.dot"), "Pending settlement"), h("b", ctx.fmt(sum((i) => i.status === "pending"), token))),
      h("div.kpi.settled", h("span", h("span.dot"), "Settled on-chain"), h("b", ctx.fmt(sum((i) => i.status === "settled"), token))));
    if (items === null) {
      mount(list, h("div.boot", h("div.spinner"), "Loading your payments…"));
      return;
    }
    if (!items.length) {
      mount(list, h("div.empty", "Nothing paid yet — press play on a track."));
      return;
    }
    mount(list, items.map((i) => activityRow(ctx, i)));
  }
  function update() {
    draw();
    load().catch((err) => ctx.showError(err, "Could not load your activity"));
  }
  update();
  return { update };
}

function activityRow(ctx, item) {
  const token = ctx.tokenOf(item.token);
  const direct = item.kind === "tip" && !item.title;
  const track = direct ? null : ctx.listener.track(item.target);
  const what = direct ? `Tip to ${shortAddr("0x" + item.target.slice(26))}` : (item.title ?? shortAddr(item.target));
  const sub = item.kind === "play" ? "Play" : item.kind === "seconds" ? `${item.units} s listened` : item.kind === "tip" ? (item.memo ? `Tip · “${item.memo}”` : "Tip") : "Purchase";
  return h("div.h-item", { "data-testid": "history-item", "data-kind": item.kind, "data-status": item.status },
    h("div.h-art", { style: { background: direct ? avatarStyle("0x" + item.target.slice(26)) : artStyle(item.target) } }, KIND_ICON[item.kind]),
    h("div", { style: { minWidth: 0 } },
      h("div.h-title", track ? h("a", { href: `#/artist/${track.owner}`, title: `More by ${track.owner}` }, what) : what),
      h("div.h-sub", `${sub} · ${fmtTime(item.at)} · channel `, h("span.mono", { title: item.channelId }, shortAddr(item.channelId)))),
    h("div.h-amt", item.amount === "0" ? "free" : ctx.fmt(item.amount, token),
      h("small", h("span.chip.tiny", { class: item.status === "settled" ? "teal" : "warn", "data-testid": "settlement" }, item.status))));
}

// ------------------------------------------------------------------------------------------ artist page
/** #/artist/<address>: the artist's tracks (as primary artist) and the tracks they are paid on as a collaborator. */
export function renderArtist(ctx, root, address) {
  ctx = viewState(ctx);
  let who;
  try {
    who = getAddress(address);
  } catch {
    mount(root, h("div.connect-cta", { "data-testid": "artist-page" }, h("h2", "No such artist"), h("p", `“${address}” is not an address.`),
      h("a.btn.primary", { href: "#/listen" }, "Back to the catalog")));
    return {};
  }
  const own = h("div.tiles", { "data-testid": "artist-tracks" });
  const featured = h("div.tiles", { "data-testid": "artist-featured" });
  const featuredHead = h("div.section-head", h("h2", "Also paid on"));
  const count = h("span.muted");
  const nameEl = h("h1", { "data-testid": "artist-name" }, artistName(who));
  mount(root, h("div", { "data-testid": "artist-page", "data-address": who },
    h("div.artist-head",
      h("span.avatar.lg", { style: { background: avatarStyle(who) } }),
      h("div", { style: { minWidth: 0 } }, h("div.label", "Artist"), nameEl,
        h("div.mono.faint.addr", who), count)),
    h("div.section-head", h("h2", "Tracks")), own, featuredHead, featured));
  let key = null;
  function update() {
    const { listener } = ctx;
    const mine = listener.catalog.filter((t) => getAddress(t.owner) === who);
    const paidOn = listener.catalog.filter((t) => getAddress(t.owner) !== who && t.split.recipients.some((r) => getAddress(r) === who));
    const k = JSON.stringify([mine.map((t) => t.trackId + JSON.stringify(t.terms)), paidOn.map((t) => t.trackId), listener.catalogToken, artistNames.version,
      listener.channel?.status, listener.ledger ? [...listener.ledger.plays] : null]);
    if (k !== key) {
      key = k;
      nameEl.textContent = artistName(who);
      count.textContent = `${mine.length} track${mine.length === 1 ? "" : "s"} in ${listener.token().symbol}`;
      if (mine.length) renderTiles(ctx, own, mine);
      else mount(own, h("div.empty", { style: { gridColumn: "1 / -1" } }, "No tracks of this artist are offered in this token."));
      featuredHead.classList.toggle("hidden", !paidOn.length);
      if (paidOn.length) renderTiles(ctx, featured, paidOn);
      else mount(featured);
    }
    updateTilesPlayer(ctx, own);
    updateTilesPlayer(ctx, featured);
  }
  update();
  return { update };
}
