// Artist studio: earnings per track (pending -> settled -> claimed), a chart of the last 24 hours, CSV export,
// on-chain claims; registering tracks (content hash, prices, revenue split with platform fee) and changing a
// track's price or split later. The view renders lib/artist.js's model and calls it: it sends no transaction itself.
import { ZeroAddress, getAddress, isAddress, keccak256 } from "ethers";

import { ZERO_ADDRESS, applySplit, splitProblems } from "../lib/protocol.js";
import { Model, termsFromJson } from "../lib/pricing.js";
import { artStyle, avatarStyle, fmtTime, h, mount, parseAmount, shortAddr, svg, trackTitle } from "../lib/ui.js";
import { Artist, MAX_TITLE, addShare, parsePct, pctText, removeShare, setShare, titleProblem } from "../lib/artist.js";

/** The studio's own state: made afresh on each visit (nothing survives navigation but what the chain and relay keep). */
function viewState(ctx) {
  const S = {
    token: ZeroAddress, // earnings token shown
    artist: null, // the Artist model of the connected account
    earnings: null,
    claimable: {},
    claimResult: {},
    catalog: [],
    editing: null, // trackId being edited
    busy: null,
    reg: null, // register form state
    upload: null, // the latest upload's outcome
    payoutToken: (ctx.info.tokens.find((t) => t.address !== ZeroAddress) ?? ctx.info.tokens[0])?.address ?? ZeroAddress,
    payoutForm: { threshold: "", period: "0", maxFee: "" },
  };
  return Object.assign(Object.create(ctx), { S });
}

function newTermsState(token) {
  return { token, perPlay: "", perSecond: "", download: "", model: Model.FLAT, ownAfter: 8, minSeconds: 0 };
}

function newSplitState(owner) {
  return { rows: [{ address: owner ?? "", bps: 10_000, pct: "100" }], feeOn: false, feeRecipient: "", feePct: "5" };
}

export function renderStudio(ctx, root) {
  ctx = viewState(ctx);
  let timer = null;
  let sse = null;
  let generation = 0; // bumped by stop(): an event stream opened after it is closed at once
  let account = null;
  let catalogKey = null;
  let earningsKey = null;
  let claimsKey = null;
  let payoutsKey = null;
  const payoutsEl = h("div");
  const earningsEl = h("div");
  const tracksEl = h("div");
  const claimEl = h("div");
  const registerEl = h("div");
  const nameEl = h("div", { "data-testid": "name-editor" });
  // the CSV link carries the artist's read token in its URL (a link cannot send headers): set once signed
  const csvEl = h("a.btn", { href: "#", "aria-disabled": "true", "data-testid": "csv-export" }, "Export CSV");

  function layout() {
    if (!ctx.wallet?.account) {
      mount(root, h("div.connect-cta", h("h2", "Your artist studio"), h("p", "Connect the wallet that owns your tracks to register music, set prices and splits, and claim earnings."),
        h("button.btn.primary", { onclick: () => ctx.connect() }, "Connect wallet")));
      return false;
    }
    if (!ctx.chainOk()) {
      mount(root, h("div.connect-cta", h("h2", "Wrong network"), h("p", `Switch your wallet to chain ${ctx.info.chainId}.`)));
      return false;
    }
    mount(root,
      h("div.studio-head",
        h("div", h("div.label", "Artist studio"), h("h1", "Earnings & catalog"),
          h("div.row", { style: { marginTop: "6px" } }, h("span.avatar.sm", { style: { background: avatarStyle(ctx.wallet.account) } }), h("span.mono.muted", ctx.wallet.account)),
          nameEl),
        h("div.row",
          csvEl,
          h("a.btn.primary", { href: "#register", onclick: (e) => { e.preventDefault(); registerEl.scrollIntoView({ behavior: "smooth" }); } }, "Register a track"))),
      h("div.studio-grid",
        h("div", { style: { display: "flex", flexDirection: "column", gap: "20px" } }, earningsEl, tracksEl),
        h("div", { style: { display: "flex", flexDirection: "column", gap: "20px" } }, claimEl, payoutsEl, registerEl)));
    return true;
  }

  async function load() {
    const artist = ctx.S.artist;
    if (!ctx.chainOk() || !artist) return;
    await artist.load();
    if (artist !== ctx.S.artist || artist.account !== ctx.wallet?.account) return;
    ctx.S.earnings = artist.earnings;
    ctx.S.catalog = artist.catalog;
    csvEl.href = artist.csvUrl;
    csvEl.download = `earnings-${artist.account}.csv`;
    csvEl.removeAttribute("aria-disabled");
    ctx.S.claimable = { ...artist.claimable };
    drawName(ctx, nameEl, artist);
    draw();
  }

  function draw() {
    if (!ctx.S.earnings) {
      mount(earningsEl, h("div.card", h("div.boot", h("div.spinner"), "Loading earnings…")));
      return;
    }
    // redraw only what changed (no flicker, nothing detached under the pointer)
    const ekey = JSON.stringify([ctx.S.earnings, ctx.S.token, Math.floor(Date.now() / 3_600_000)]);
    if (ekey !== earningsKey) {
      earningsKey = ekey;
      drawEarnings(ctx, earningsEl, redraw);
    }
    const ckey = JSON.stringify([Object.entries(ctx.S.claimable).map(([k, v]) => [k, String(v)]), ctx.S.busy, ctx.S.claimResult], (k, v) => (typeof v === "bigint" ? String(v) : v));
    if (ckey !== claimsKey) {
      claimsKey = ckey;
      drawClaims(ctx, claimEl, redraw, load);
    }
    const pkey = JSON.stringify([ctx.S.artist?.payouts, ctx.S.artist?.payoutQuote, ctx.S.payoutToken, ctx.S.busy], (k, v) => (typeof v === "bigint" ? String(v) : v));
    if (pkey !== payoutsKey) {
      payoutsKey = pkey;
      drawPayouts(ctx, payoutsEl, redraw);
    }
    const key = JSON.stringify([ctx.S.catalog.map((t) => [t.trackId, t.splitHash, t.terms]), ctx.S.editing, ctx.wallet.account]);
    if (key !== catalogKey) {
      catalogKey = key;
      drawTracks(ctx, tracksEl, () => { catalogKey = null; draw(); });
    }
  }

  const redraw = () => {
    earningsKey = claimsKey = payoutsKey = null;
    draw();
  };

  let started = null;
  function start() {
    stop();
    started = `${ctx.wallet?.account}|${ctx.chainOk()}`;
    if (!layout()) return;
    account = ctx.wallet.account;
    ctx.S.artist = new Artist(ctx, account);
    catalogKey = earningsKey = claimsKey = payoutsKey = null;
    if (!ctx.S.reg || ctx.S.reg.owner !== account) ctx.S.reg = { owner: account, title: "", trackId: "", fileName: "", terms: newTermsState(ZeroAddress), split: newSplitState(account) };
    drawRegister(ctx, registerEl, () => load().catch(() => {}));
    draw();
    load().catch((err) => ctx.showError(err, "Could not load your earnings"));
    timer = setInterval(() => load().catch(() => {}), 3000);
    const mine = generation;
    ctx.relay.events({ payee: account }, () => load().catch(() => {}))
      .then((source) => {
        if (mine === generation) sse = source;
        else source.close();
      })
      .catch(() => {}); // the 3 s poll keeps the earnings current anyway
  }

  function stop() {
    generation += 1;
    clearInterval(timer);
    sse?.close();
    sse = null;
  }

  start();
  return {
    update() {
      if (`${ctx.wallet?.account}|${ctx.chainOk()}` !== started) start();
    },
    dispose: stop,
  };
}

// ------------------------------------------------------------------------------------------ earnings
function drawEarnings(ctx, el, redraw) {
  const e = ctx.S.earnings;
  const token = ctx.tokenOf(ctx.S.token);
  const totals = e.tokens[token.address] ?? e.tokens[token.address.toLowerCase()] ?? { pending: "0", settled: "0", claimed: "0", total: "0" };
  const rows = e.tracks.filter((t) => getAddress(t.token) === token.address);
  const kpi = (cls, label, value, testid) => h("div.kpi", { class: cls }, h("span", cls ? h("span.dot") : null, label), h("b", { "data-testid": testid }, ctx.fmt(value, token)));
  mount(el, h("div.card", { "data-testid": "earnings" },
    h("div.card-head", h("h3", "Earnings"), h("div.seg", ctx.info.tokens.map((t) => h("button", { class: t.address === token.address ? "on" : "", onclick: () => { ctx.S.token = t.address; redraw(); } }, t.symbol)))),
    h("div.kpis",
      kpi("", "Earned", totals.total, "earned-total"),
      kpi("pending", "Pending", totals.pending, "earned-pending"),
      kpi("settled", "Settled", totals.settled, "earned-settled"),
      kpi("claimed", "Claimed", totals.claimed, "earned-claimed")),
    chart(ctx, e.timeline.filter((p) => getAddress(p.token) === token.address), token),
    h("div.row", { style: { justifyContent: "space-between", marginTop: "2px" } },
      h("div.legend", h("span", h("span.dot", { style: { color: "#8b6cff" } }), "per hour"), h("span", h("span.dot", { style: { color: "var(--accent-2)" } }), "cumulative")),
      h("span.faint", "last 24 hours")),
    h("div.divider"),
    h("div.row", { style: { justifyContent: "space-between", marginBottom: "4px" } }, h("div.label", "By track"),
      h("div.legend", h("span", h("span.dot", { style: { color: "var(--warn)" } }), "pending"), h("span", h("span.dot", { style: { color: "var(--accent-2)" } }), "settled on-chain"), h("span", h("span.dot", { style: { color: "var(--accent)" } }), "claimed"))),
    rows.length ? h("div.tbl-wrap", h("table.tbl", { "data-testid": "earnings-table" },
      h("thead", h("tr", h("th", "Track"), h("th.r", "Plays"), h("th.r", { title: "seconds of audio paid for, per second" }, "Seconds paid"), h("th.r", { title: "seconds of audio the relay delivered (metered)" }, "Delivered"), h("th.r", "Tips"), h("th.r", "Earned"), h("th", "Status"))),
      h("tbody", rows.map((r) => {
        const earned = BigInt(r.earned) || 1n;
        const pct = (v) => `${Number((BigInt(v) * 10000n) / earned) / 100}%`;
        const direct = !r.title && /^0x0{24}/.test(r.target);
        return h("tr", { "data-testid": "earnings-row", "data-title": r.title ?? "" },
          h("td", h("div.t-track", h("div.t-art", { style: { background: direct ? avatarStyle("0x" + r.target.slice(26)) : artStyle(r.target) } }),
            h("div", h("div", r.title ?? (direct ? "Direct tips" : shortAddr(r.target))), h("div.faint", { style: { fontSize: "11.5px" } }, `${ctx.fmt(r.pending, token)} pending`)))),
          h("td.r", r.plays), h("td.r", { "data-testid": "seconds-paid" }, r.seconds),
          h("td.r", { "data-testid": "seconds-delivered" }, r.secondsDelivered == null ? "—" : String(Math.round(r.secondsDelivered * 10) / 10)),
          h("td.r", ctx.fmt(r.tips, token)), h("td.r", h("b", ctx.fmt(r.earned, token))),
          h("td", h("div.stack", { title: `claimed ${ctx.fmt(r.claimed, token)} · settled ${ctx.fmt(r.settled, token)} · pending ${ctx.fmt(r.pending, token)}` },
            h("i.s-claimed", { style: { width: pct(r.claimed) } }), h("i.s-settled", { style: { width: pct(r.settled) } }), h("i.s-pending", { style: { width: pct(r.pending) } }))));
      })))) : h("div.empty", "No earnings in this token yet. Plays show up here the moment a listener's voucher is accepted.")));
}

/** Hourly earnings over the last 24 hours: bars plus a cumulative line (inline SVG, no library). */
function chart(ctx, points, token) {
  const W = 640, H = 150, pad = { l: 8, r: 8, t: 16, b: 22 };
  const nowHour = Math.floor(Date.now() / 3_600_000) * 3600;
  const hours = Array.from({ length: 24 }, (_, i) => nowHour - (23 - i) * 3600);
  const byHour = new Map(points.map((p) => [p.hour, BigInt(p.amount)]));
  const before = points.filter((p) => p.hour < hours[0]).reduce((a, p) => a + BigInt(p.amount), 0n);
  const values = hours.map((hr) => byHour.get(hr) ?? 0n);
  const max = values.reduce((a, b) => (b > a ? b : a), 0n);
  let run = before;
  const cum = values.map((v) => (run += v));
  const cumMax = cum.at(-1) || 1n;
  const bw = (W - pad.l - pad.r) / 24;
  const y = (v, m) => H - pad.b - (m ? Number((v * 1000n) / m) / 1000 : 0) * (H - pad.t - pad.b);
  const bars = values.map((v, i) => svg("rect", {
    x: pad.l + i * bw + 3, y: v ? y(v, max) : H - pad.b - 2, width: bw - 6, height: v ? H - pad.b - y(v, max) : 2, rx: 3,
    fill: v ? "url(#barGrad)" : "rgba(255,255,255,.06)",
  }, svg("title", {}, document.createTextNode(`${new Date(hours[i] * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" })}: ${ctx.fmt(v, token)}`))));
  const line = cum.map((v, i) => `${i ? "L" : "M"}${pad.l + i * bw + bw / 2},${y(v, cumMax)}`).join(" ");
  const labels = [0, 6, 12, 18, 23].map((i) => svg("text", { x: pad.l + i * bw + bw / 2, y: H - 6, "text-anchor": "middle" },
    document.createTextNode(i === 23 ? "now" : new Date(hours[i] * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" }))));
  return svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", "data-testid": "earnings-chart", role: "img", "aria-label": "Earnings per hour over the last 24 hours" },
    svg("defs", {}, svg("linearGradient", { id: "barGrad", x1: 0, y1: 0, x2: 0, y2: 1 }, svg("stop", { offset: 0, "stop-color": "#8b6cff" }), svg("stop", { offset: 1, "stop-color": "#5a8dff", "stop-opacity": ".55" })),
      svg("linearGradient", { id: "areaGrad", x1: 0, y1: 0, x2: 0, y2: 1 }, svg("stop", { offset: 0, "stop-color": "#19d3a8", "stop-opacity": ".25" }), svg("stop", { offset: 1, "stop-color": "#19d3a8", "stop-opacity": "0" }))),
    [0.25, 0.5, 0.75].map((f) => svg("line", { class: "grid-line", x1: pad.l, x2: W - pad.r, y1: pad.t + f * (H - pad.t - pad.b), y2: pad.t + f * (H - pad.t - pad.b) })),
    svg("path", { d: `${line} L${pad.l + 23 * bw + bw / 2},${H - pad.b} L${pad.l + bw / 2},${H - pad.b} Z`, fill: "url(#areaGrad)" }),
    bars,
    svg("path", { d: line, fill: "none", stroke: "#19d3a8", "stroke-width": 2, "stroke-linejoin": "round", "vector-effect": "non-scaling-stroke" }),
    labels,
    max ? svg("text", { x: W - pad.r, y: 11, "text-anchor": "end" }, document.createTextNode(`peak ${ctx.fmt(max, token)}/h · total ${ctx.fmt(cumMax, token)}`)) : null);
}

// ------------------------------------------------------------------------------------------ claims
/** Claim boxes are built once and updated in place, so a refresh never swaps a button under the pointer. */
function drawClaims(ctx, el, redraw, reload) {
  if (!el.firstChild || el.dataset.account !== ctx.wallet.account) {
    el.dataset.account = ctx.wallet.account;
    mount(el, h("div.card", { "data-testid": "claims" },
      h("div.card-head", h("h3", "Claim"), h("span.faint", "credited on-chain by settlements")),
      ctx.info.tokens.map((t) => {
        const button = h("button.btn.primary", { "data-testid": `claim-${t.symbol}`, onclick: () => claim(ctx, t, reload, redraw) }, "Claim");
        return h("div", { "data-token": t.address },
          h("div.claim-box",
            h("div", h("div.label", `${t.symbol} claimable`), h("b.num", { "data-testid": `claimable-${t.symbol}`, "data-role": "amount" })),
            button),
          h("div.claim-result.hidden", { "data-testid": `claim-result-${t.symbol}`, "data-role": "result" }));
      })));
  }
  for (const t of ctx.info.tokens) {
    const box = el.querySelector(`[data-token="${t.address}"]`);
    const amount = ctx.S.claimable[t.address] ?? 0n;
    box.querySelector("[data-role=amount]").textContent = ctx.fmt(amount, t);
    const button = box.querySelector("button");
    const busy = ctx.S.busy === "claim-" + t.address;
    button.disabled = !amount || !!ctx.S.busy;
    if (button.dataset.busy !== String(busy)) {
      button.dataset.busy = String(busy);
      mount(button, busy ? [h("span.spinner"), "Claiming…"] : "Claim");
    }
    const result = ctx.S.claimResult[t.address];
    const line = box.querySelector("[data-role=result]");
    line.classList.toggle("hidden", !result);
    if (result) line.textContent = `✓ Claimed ${ctx.fmt(result.amount ?? 0n, t)} at ${fmtTime(result.at)} · tx ${shortAddr(result.hash)}`;
  }
}

// ------------------------------------------------------------------------------------------ payouts
const PERIODS = [[0, "no period"], [3600, "hourly"], [86400, "daily"], [604800, "weekly"], [2592000, "every 30 days"]];

/**
 * Scheduled payouts of one token: the schedule in force (read from the contract by the relay), when the next payout
 * can come, every payout with its transaction; opt in (threshold and/or period, the most the relay may keep per
 * payout) or out, by one signature the relay submits (no gas).
 */
function drawPayouts(ctx, el, redraw) {
  const artist = ctx.S.artist;
  if (!artist?.payouts || !artist.payoutQuote) {
    mount(el, null);
    return;
  }
  const token = ctx.tokenOf(ctx.S.payoutToken);
  const view = artist.payoutsOf(token.address);
  const s = view?.schedule;
  const f = ctx.S.payoutForm;
  const busy = ctx.S.busy === "payouts";
  const on = !!s?.enabled;
  const next = view?.nextPayoutAt;
  const nextText = !on ? "—" : next ? fmtTime(next) : `as soon as ${s.threshold !== "0" ? `your balance reaches ${ctx.fmt(s.threshold, token)}` : "a payout round runs"}`;
  const input = (key, attrs) => h("input.input", { value: f[key], inputmode: "decimal", oninput: (e) => { f[key] = e.target.value; }, ...attrs });
  const run = async (enabled) => {
    ctx.S.busy = "payouts";
    redraw();
    try {
      const threshold = f.threshold.trim() ? parseAmount(f.threshold, token) : 0n;
      const maxFee = f.maxFee.trim() ? parseAmount(f.maxFee, token) : artist.payoutQuote.payoutFee;
      if (threshold === null || maxFee === null) throw new Error("enter amounts as numbers");
      await artist.schedulePayouts(token.address, enabled ? { threshold, period: Number(f.period), maxFee } : { enabled: false, maxFee: s ? BigInt(s.maxFee) : 0n });
      ctx.toast(enabled ? `Payouts in ${token.symbol} scheduled` : `Payouts in ${token.symbol} stopped: claim as before`);
    } catch (err) {
      ctx.showError(err, "Payout schedule refused");
    } finally {
      ctx.S.busy = null;
      redraw();
    }
  };
  const payouts = [...(view?.payouts ?? [])].reverse();
  mount(el, h("div.card", { "data-testid": "payouts", "data-enabled": String(on) },
    h("div.card-head", h("h3", "Payouts"), h("div.seg", ctx.info.tokens.map((t) => h("button", {
      class: t.address === token.address ? "on" : "", "data-testid": `payout-token-${t.symbol}`,
      onclick: () => { ctx.S.payoutToken = t.address; redraw(); } }, t.symbol)))),
    h("div.muted", "The relay pushes your balance to you on a schedule: no claim, no gas. Claiming by hand keeps working."),
    h("div.kv-list", { "data-testid": "payout-schedule" },
      h("div", h("span.k", "Schedule"), h("span", { "data-testid": "payout-status" }, on ? "on" : "off")),
      on ? [
        h("div", h("span.k", "From a balance of"), h("span", { "data-testid": "payout-threshold" }, s.threshold === "0" ? "any" : ctx.fmt(s.threshold, token))),
        h("div", h("span.k", "How often"), h("span", { "data-testid": "payout-period" }, s.period ? `at most ${PERIODS.find(([p]) => p === s.period)?.[1] ?? `every ${s.period} s`}` : "whenever the balance is due")),
        h("div", h("span.k", "Fee per payout, at most"), h("span", { "data-testid": "payout-max-fee" }, ctx.fmt(s.maxFee, token))),
        h("div", h("span.k", "To"), h("span.mono", s.recipient === ZERO_ADDRESS ? "your wallet" : shortAddr(s.recipient))),
      ] : null,
      h("div", h("span.k", "Next payout"), h("span", { "data-testid": "payout-next" }, nextText))),
    h("div.inline-form",
      h("label.field", h("span", "Pay me once my balance reaches"), h("div.input-wrap", input("threshold", { placeholder: "e.g. 1", "data-testid": "payout-threshold-input" }), h("span.suffix", token.symbol))),
      h("label.field", h("span", "and at most"), h("select.input", { "data-testid": "payout-period-input", onchange: (e) => { f.period = e.target.value; } },
        PERIODS.map(([p, label]) => h("option", { value: String(p), selected: String(p) === f.period }, label)))),
      h("label.field", h("span", "The relay's fee per payout, at most"), h("div.input-wrap",
        input("maxFee", { placeholder: ctx.fmt(artist.payoutQuote.payoutFee, token, { symbol: false }), "data-testid": "payout-max-fee-input" }), h("span.suffix", token.symbol))),
      h("div.muted", { "data-testid": "payout-fee-quote", "data-fee": String(artist.payoutQuote.payoutFee) },
        `The relay now keeps ${ctx.fmt(artist.payoutQuote.payoutFee, token)} per payout (never more than your maximum).`),
      h("div.row",
        h("button.btn.primary.small", { "data-testid": "payout-opt-in", disabled: !!ctx.S.busy, onclick: () => run(true) }, busy ? [h("span.spinner"), "Signing…"] : on ? "Update schedule" : "Schedule payouts"),
        on ? h("button.btn.small.danger", { "data-testid": "payout-opt-out", disabled: !!ctx.S.busy, onclick: () => run(false) }, "Stop payouts") : null)),
    payouts.length ? h("div.tbl-wrap", h("table.tbl", { "data-testid": "payouts-table" },
      h("thead", h("tr", h("th", "Block"), h("th.r", "Paid"), h("th.r", "Fee"), h("th", "To"), h("th", "Transaction"))),
      h("tbody", payouts.map((p) => h("tr", { "data-testid": "payout-row", "data-tx": p.txHash },
        h("td", String(p.block)), h("td.r", ctx.fmt(p.amount, token)), h("td.r", ctx.fmt(p.fee, token)),
        h("td.mono", shortAddr(p.to)), h("td.mono", { title: p.txHash }, shortAddr(p.txHash))))))) : h("div.empty", { "data-testid": "no-payouts" }, "No payouts yet.")));
}

async function claim(ctx, t, reload, redraw) {
  ctx.S.busy = "claim-" + t.address;
  redraw();
  try {
    const { amount, hash } = await ctx.S.artist.claim(t.address);
    ctx.S.claimResult[t.address] = { amount, hash, at: Date.now() / 1000 };
    ctx.toast(`Claimed ${ctx.fmt(amount ?? 0n, t)} to your wallet`);
  } catch (err) {
    ctx.showError(err, "Claim failed");
  } finally {
    ctx.S.busy = null;
    await reload().catch(() => {});
    redraw();
  }
}

// ------------------------------------------------------------------------------------------ your tracks
function drawTracks(ctx, el, redraw) {
  const mine = ctx.S.catalog.filter((t) => getAddress(t.owner) === getAddress(ctx.wallet.account));
  mount(el, h("div.card", { "data-testid": "my-tracks" },
    h("div.card-head", h("h3", "Your tracks"), h("span.faint", `${mine.length} registered`)),
    mine.length ? mine.map((t) => {
      const editing = ctx.S.editing === t.trackId;
      const prices = Object.entries(t.terms).map(([addr, terms]) => {
        const tok = ctx.tokenOf(addr);
        const x = termsFromJson(terms);
        const parts = [];
        if (x.model === Model.STREAM_TO_OWN) parts.push(`${ctx.fmt(x.perPlay, tok)} first play, own after ${x.ownAfter}`);
        else if (x.perPlay) parts.push(`${ctx.fmt(x.perPlay, tok)}/play`);
        if (x.perSecond) parts.push(`${ctx.fmt(x.perSecond, tok)}/s`);
        if (x.download) parts.push(`buy ${ctx.fmt(x.download, tok)}`);
        return h("span.chip", parts.join(" · ") || `${tok.symbol}: free`);
      });
      return h("div", { "data-testid": "my-track", "data-title": t.title },
        h("div.my-track",
          h("div.art", { style: { background: artStyle(t.trackId) } }),
          h("div", { style: { minWidth: 0 } }, h("div.h-title", trackTitle(t)),
            h("div.row.wrap", { style: { gap: "5px", marginTop: "4px" } }, prices,
              h("span.chip", `split v${t.splitVersion}: ${t.split.recipients.length} recipient${t.split.recipients.length > 1 ? "s" : ""}${t.split.feeBps ? ` + ${t.split.feeBps / 100}% fee` : ""}`))),
          h("button.btn.small", { "data-testid": "edit-track", onclick: () => { ctx.S.editing = editing ? null : t.trackId; redraw(); } }, editing ? "Done" : "Edit")),
        editing ? trackEditor(ctx, t, redraw) : null);
    }) : h("div.empty", "You have no tracks on this registry yet.")));
}

function trackEditor(ctx, t, redraw) {
  const firstToken = Object.keys(t.terms)[0] ?? ZeroAddress;
  const ed = ctx.S[`edit-${t.trackId}`] ??= {
    terms: termsStateFrom(ctx, firstToken, t.terms[firstToken]),
    split: { rows: t.split.recipients.map((a, i) => ({ address: a, bps: t.split.bps[i], pct: pctText(t.split.bps[i]) })), feeOn: t.split.feeBps > 0,
      feeRecipient: t.split.feeBps ? t.split.feeRecipient : "", feePct: String((t.split.feeBps || 500) / 100) },
  };
  const termsEl = h("div");
  const splitEl = h("div");
  const drawTerms = () => mount(termsEl, termsEditor(ctx, ed.terms, {
    onToken: (addr) => { ed.terms = termsStateFrom(ctx, addr, t.terms[addr]); drawTerms(); },
  }));
  drawTerms();
  mount(splitEl, splitEditor(ctx, ed.split, () => samplePrice(ctx, ed.terms)));
  return h("div.inline-form", { "data-testid": "track-editor", style: { marginBottom: "12px" } },
    h("div.label", "Price"), termsEl,
    h("div.row", actionButton(ctx, "save-terms", "Save price", async () => {
      const terms = termsFromState(ctx, ed.terms);
      await ctx.S.artist.setTerms(t.trackId, ed.terms.token, terms);
      ctx.toast(`New price for “${t.title}” is live`);
      delete ctx.S[`edit-${t.trackId}`];
      ctx.S.editing = null;
      redraw();
    })),
    h("div.divider"),
    h("div.label", "Revenue split"), splitEl,
    h("div.row", actionButton(ctx, "save-split", "Publish new split", async () => {
      await ctx.S.artist.setSplit(t.trackId, splitFromState(ed.split));
      ctx.toast(`Split v${t.splitVersion + 1} published for “${t.title}” — it applies to plays from now on`);
      delete ctx.S[`edit-${t.trackId}`];
      ctx.S.editing = null;
      redraw();
    }), h("span.faint", "Plays already paid keep the split they were priced with.")));
}

/** The artist's name: the one it signed (verified here), and a field to sign a new one (one wallet signature). */
function drawName(ctx, el, artist) {
  const input = h("input.input", { value: artist.name() ?? "", maxlength: 64, placeholder: "Your artist name", "data-testid": "name-input", "aria-label": "Your artist name" });
  mount(el, h("div.row", { style: { marginTop: "8px", gap: "8px" } },
    h("span.muted", "Shown as"), h("b", { "data-testid": "studio-name" }, artist.name() ?? "your address (no name signed)"),
    input,
    actionButton(ctx, "set-name", "Sign name", async () => {
      await artist.setName(input.value);
      drawName(ctx, el, artist);
    }, "btn small")));
}

function actionButton(ctx, id, label, action, cls = "btn primary small") {
  const btn = h("button", { class: cls, "data-testid": id, onclick: async () => {
    btn.disabled = true;
    const old = [...btn.childNodes];
    btn.replaceChildren(h("span.spinner"), "Confirm in wallet…");
    try {
      await action();
    } catch (err) {
      ctx.showError(err, `${label} failed`);
    } finally {
      btn.disabled = false;
      btn.replaceChildren(...old);
    }
  } }, label);
  return btn;
}

// ------------------------------------------------------------------------------------------ terms editor
function termsStateFrom(ctx, tokenAddr, json) {
  const token = ctx.tokenOf(tokenAddr);
  const s = newTermsState(token.address);
  if (!json) return s;
  const t = termsFromJson(json);
  const fmt = (v) => (v ? ctx.fmt(v, token, { symbol: false, sig: 8 }).replace(/,/g, "") : "");
  return { ...s, perPlay: fmt(t.perPlay), perSecond: fmt(t.perSecond), download: fmt(t.download), model: t.model, ownAfter: t.ownAfter || 8, minSeconds: t.minSeconds };
}

function termsFromState(ctx, s) {
  const token = ctx.tokenOf(s.token);
  const amt = (text, name) => {
    if (!String(text).trim()) return 0n;
    const v = parseAmount(text, token);
    if (v === null) throw new Error(`${name}: not an amount`);
    return v;
  };
  const terms = {
    perPlay: amt(s.perPlay, "price per play"), perSecond: amt(s.perSecond, "price per second"), download: amt(s.download, "download price"),
    model: Number(s.model), ownAfter: Number(s.model) === Model.STREAM_TO_OWN ? Number(s.ownAfter) : 0, minSeconds: Number(s.minSeconds) || 0, enabled: true,
  };
  if (terms.model === Model.STREAM_TO_OWN && !(terms.ownAfter >= 1 && terms.ownAfter <= 32)) throw new Error("stream-to-own needs 1..32 paid plays");
  if (terms.model === Model.STREAM_TO_OWN && !terms.perPlay) throw new Error("stream-to-own needs a first-play price");
  return terms;
}

function samplePrice(ctx, s) {
  const token = ctx.tokenOf(s.token);
  const per = parseAmount(s.perPlay, token);
  if (per) return { amount: per, label: "per play", token };
  const sec = parseAmount(s.perSecond, token);
  if (sec) return { amount: sec * 60n, label: "per minute", token };
  return { amount: 10n ** BigInt(token.decimals), label: `per ${token.symbol}`, token };
}

function termsEditor(ctx, s, { onToken } = {}) {
  const token = ctx.tokenOf(s.token);
  const input = (key, placeholder, testid) => h("div.input-wrap", h("input.input", { value: s[key], placeholder, inputmode: "decimal", "data-testid": testid, oninput: (e) => { s[key] = e.target.value; } }), h("span.suffix", token.symbol));
  const ownWrap = h("label.field", { class: Number(s.model) === Model.STREAM_TO_OWN ? "" : "hidden" }, h("span", "Owned after (plays)"),
    h("input.input", { type: "number", min: 1, max: 32, value: s.ownAfter, oninput: (e) => { s.ownAfter = e.target.value; } }));
  return h("div.form-grid",
    h("div.row.wrap",
      h("div.seg", ctx.info.tokens.map((t) => h("button", { type: "button", class: t.address === token.address ? "on" : "", "data-testid": `terms-token-${t.symbol}`,
        onclick: () => (onToken ? onToken(t.address) : null) }, t.symbol))),
      h("select.input", { style: { width: "auto" }, "data-testid": "model", onchange: (e) => { s.model = Number(e.target.value); ownWrap.classList.toggle("hidden", s.model !== Model.STREAM_TO_OWN); } },
        h("option", { value: Model.FLAT, selected: Number(s.model) === Model.FLAT }, "Flat price per play"),
        h("option", { value: Model.STREAM_TO_OWN, selected: Number(s.model) === Model.STREAM_TO_OWN }, "Stream to own (price doubles)"))),
    h("div.grid-3",
      h("label.field", h("span", "Per play"), input("perPlay", "0.00002", "price-play")),
      h("label.field", h("span", "Per second"), input("perSecond", "0", "price-second")),
      h("label.field", h("span", "Download"), input("download", "0", "price-download"))),
    h("div.grid-2", ownWrap,
      h("label.field", h("span", "Charge a play after (s)"), h("input.input", { type: "number", min: 0, max: 600, value: s.minSeconds, oninput: (e) => { s.minSeconds = e.target.value; } }))));
}

// ------------------------------------------------------------------------------------------ split editor
const SPLIT_COLORS = ["#8b6cff", "#19d3a8", "#5a8dff", "#ffb54a", "#ff5d7c", "#c66bff", "#3ee07d", "#ffd84a"];

function splitFromState(s) {
  const rows = s.rows;
  return {
    recipients: rows.map((r) => (isAddress(r.address.trim()) ? getAddress(r.address.trim()) : r.address.trim())),
    bps: rows.map((r) => parsePct(r.pct) ?? NaN),
    feeRecipient: s.feeOn ? (isAddress(s.feeRecipient.trim()) ? getAddress(s.feeRecipient.trim()) : s.feeRecipient.trim() || ZERO_ADDRESS) : ZERO_ADDRESS,
    feeBps: s.feeOn ? Math.round(parseFloat(s.feePct) * 100) : 0,
  };
}

/** Recipients with shares (in %, stored as bps) and an optional platform fee, validated as you type: shares
 * must sum to exactly 10,000 bps, recipients be distinct valid addresses, the fee 0..50% with a recipient. The
 * shares stay at 100 %: a new collaborator joins with an equal share; setting a collaborator's share gives the rest to the
 * primary artist, setting the primary's rebalances the collaborators (lib/artist.js); the platform fee is off the top. */
function splitEditor(ctx, s, sample) {
  const el = h("div.form-grid", { "data-testid": "split-editor" });
  const rowsEl = h("div.split-rows");
  const bar = h("div.split-bar");
  const status = h("div.split-total", { "data-testid": "split-status" });
  const preview = h("div");
  const feeRow = h("div");
  /** Take new shares: every row's bps and text (and the inputs not being typed in). */
  const setAll = (bps, except = -1) => {
    s.rows.forEach((r, i) => {
      if (i === except) return;
      r.bps = bps[i];
      r.pct = pctText(bps[i]);
      const input = rowsEl.querySelectorAll("[data-testid=split-pct]")[i];
      if (input) input.value = r.pct;
    });
  };
  const current = () => s.rows.map((r) => parsePct(r.pct) ?? r.bps ?? 0);
  const addBtn = h("button.btn.small", { type: "button", "data-testid": "add-collaborator", onclick: () => {
    const next = addShare(current());
    s.rows.push({ address: "", bps: next.at(-1), pct: pctText(next.at(-1)) });
    setAll(next);
    drawRows();
    rowsEl.querySelectorAll("[data-testid=split-address]")[s.rows.length - 1]?.focus();
  } }, "+ Add collaborator");
  const refresh = () => {
    const split = splitFromState(s);
    const problems = splitProblems(split);
    const badAddr = s.rows.map((r) => !isAddress(r.address.trim()));
    rowsEl.querySelectorAll("[data-testid=split-address]").forEach((input, i) => input.classList.toggle("invalid", !!s.rows[i]?.address && badAddr[i]));
    if (badAddr.some(Boolean)) problems.unshift("every recipient needs a valid address");
    if (s.feeOn && !isAddress(s.feeRecipient.trim())) problems.unshift("the platform fee needs a valid recipient address");
    const sum = split.bps.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
    mount(bar, split.bps.map((b, i) => h("i", { style: { width: `${(Number.isFinite(b) ? b : 0) / 100}%`, background: SPLIT_COLORS[i % SPLIT_COLORS.length] } })));
    status.className = "split-total " + (problems.length ? "bad" : "ok");
    status.dataset.valid = problems.length ? "false" : "true";
    mount(status, h("span", problems.length ? problems[0] : "Split is valid"), h("span.num", `${(sum / 100).toFixed(2)}% · ${sum} / 10000 bps`));
    if (problems.length) return mount(preview);
    const { amount, label, token } = sample();
    const shares = applySplit(split, amount);
    const name = (a) => (a === split.feeRecipient && split.feeBps ? "Platform" : a === split.recipients[0] ? "Primary" : `Collaborator ${split.recipients.indexOf(a)}`);
    mount(preview, h("div.preview", { "data-testid": "split-preview" }, h("div", h("span", `Of ${ctx.fmt(amount, token)} ${label}:`)),
      shares.map(([a, v]) => h("div", h("span", `${name(a)} ${shortAddr(a)}`), h("span.num", ctx.fmt(v, token))))));
  };
  const drawRows = () => {
    mount(rowsEl, s.rows.map((r, i) => h("div.split-row", { "data-testid": "split-row" },
      h("div", h("input.input.mono", { value: r.address, placeholder: "0x… collaborator address", "data-testid": "split-address", oninput: (e) => { r.address = e.target.value; refresh(); } }),
        h("div.tag", i === 0 ? "Primary artist — receives rounding dust" : `Collaborator ${i}`)),
      h("div.input-wrap", h("input.input", { value: r.pct, inputmode: "decimal", placeholder: "0", "data-testid": "split-pct", "aria-label": `Share of ${i === 0 ? "the primary artist" : `collaborator ${i}`} in %`,
        oninput: (e) => {
          r.pct = e.target.value;
          const v = parsePct(r.pct);
          if (v !== null && s.rows.length > 1) {
            const before = current();
            before[i] = v;
            setAll(setShare(before, i, v), i);
            r.bps = v;
          }
          refresh();
        } }), h("span.suffix", "%")),
      i === 0 ? h("span") : h("button.btn.icon.ghost", { type: "button", "aria-label": `Remove collaborator ${i}`, "data-testid": "remove-collaborator", onclick: () => {
        const next = removeShare(current(), i);
        s.rows.splice(i, 1);
        setAll(next);
        drawRows();
      } }, "×"))));
    addBtn.disabled = s.rows.length >= 16;
    refresh();
  };
  const drawFee = () => {
    mount(feeRow, s.feeOn ? h("div.split-row",
      h("input.input.mono", { value: s.feeRecipient, placeholder: "0x… platform address", "data-testid": "fee-address", oninput: (e) => { s.feeRecipient = e.target.value; refresh(); } }),
      h("div.input-wrap", h("input.input", { value: s.feePct, inputmode: "decimal", "data-testid": "fee-pct", oninput: (e) => { s.feePct = e.target.value; refresh(); } }), h("span.suffix", "%")), h("span")) : null);
    refresh();
  };
  mount(el, rowsEl, h("div.row", addBtn), bar,
    h("label.row", { style: { gap: "8px", cursor: "pointer" } }, h("input", { type: "checkbox", checked: s.feeOn, "data-testid": "fee-toggle", onchange: (e) => { s.feeOn = e.target.checked; drawFee(); } }), "Platform fee, off the top"),
    feeRow, status, preview);
  drawRows();
  drawFee();
  return el;
}

// ------------------------------------------------------------------------------------------ register
function drawRegister(ctx, el, reload) {
  const r = ctx.S.reg;
  const hashInput = h("input.input.mono", { value: r.trackId, placeholder: "0x… keccak256 of the audio file", "data-testid": "content-hash", oninput: (e) => { r.trackId = e.target.value.trim(); } });
  const fileLabel = h("span", r.fileName ? `${r.fileName} hashed ✓` : "Choose an audio file to hash it in your browser");
  const file = h("input", { type: "file", accept: "audio/*", class: "hidden", "data-testid": "audio-file", onchange: async (e) => {
    const f = e.target.files?.[0];
    if (!f) return;
    fileLabel.textContent = `Hashing ${f.name}…`;
    const id = keccak256(new Uint8Array(await f.arrayBuffer()));
    r.trackId = id;
    r.fileName = f.name;
    r.file = f; // uploaded to the relay once the track is registered
    hashInput.value = id;
    fileLabel.textContent = `${f.name} hashed ✓`;
    if (!r.title) {
      r.title = f.name.replace(/\.[^.]+$/, "").replace(/[-_]+/g, " ");
      titleInput.value = r.title;
      if (r.titleTried) showTitleProblem(titleProblem(r.title));
    }
  } });
  const titleProblemEl = h("div.field-problem.hidden", { "data-testid": "title-problem", role: "alert" });
  const showTitleProblem = (problem) => {
    titleInput.classList.toggle("invalid", !!problem);
    titleInput.setAttribute("aria-invalid", problem ? "true" : "false");
    titleProblemEl.classList.toggle("hidden", !problem);
    titleProblemEl.textContent = problem ?? "";
  };
  const titleInput = h("input.input", { value: r.title, placeholder: "Track title", maxlength: MAX_TITLE, required: true, "data-testid": "track-title", "aria-describedby": "title-problem",
    oninput: (e) => { r.title = e.target.value; if (r.titleTried) showTitleProblem(titleProblem(r.title)); } });
  titleProblemEl.id = "title-problem";
  const termsEl = h("div");
  const drawTerms = () => mount(termsEl, termsEditor(ctx, r.terms, { onToken: (addr) => { r.terms = { ...r.terms, token: addr, perPlay: "", perSecond: "", download: "" }; drawTerms(); } }));
  drawTerms();
  const last = ctx.S.upload; // the latest upload's outcome stays shown after the form resets
  const progress = h("div.upload-progress", { class: last ? "" : "hidden", "data-testid": "upload-progress", "data-state": last?.state ?? "idle" },
    h("div.p-bar", h("i", { style: { width: `${last?.pct ?? 0}%` } })), h("span.faint", last?.text ?? ""));
  mount(el, h("div.card#register", { "data-testid": "register" },
    h("div.card-head", h("h3", "Register a track"), h("span.chip.accent", "on-chain")),
    h("div.form-grid",
      h("label.field", h("span", "Title"), titleInput, titleProblemEl),
      h("div.field", h("span", "Content hash (track id)"),
        h("label.drop", file, fileLabel),
        hashInput, progress),
      h("div.field", h("span", "Price"), termsEl),
      h("div.field", h("span", "Revenue split"), splitEditor(ctx, r.split, () => samplePrice(ctx, r.terms))),
      actionButton(ctx, "register-track", "Register track", async () => {
        r.titleTried = true;
        const problem = titleProblem(r.title);
        showTitleProblem(problem);
        if (problem) {
          titleInput.focus();
          return; // said next to the field; nothing is sent
        }
        const terms = termsFromState(ctx, r.terms);
        await ctx.S.artist.registerTrack({ trackId: r.trackId, title: r.title, token: r.terms.token, terms, split: splitFromState(r.split) });
        ctx.toast(`“${r.title.trim()}” is registered`);
        if (r.file && keccak256(new Uint8Array(await r.file.arrayBuffer())) === r.trackId) {
          await uploadAudio(ctx, r.file, r.trackId, progress);
          ctx.toast(`“${r.title.trim()}” is playable: its audio is on the relay`);
        }
        ctx.S.reg = { owner: r.owner, title: "", trackId: "", fileName: "", terms: newTermsState(r.terms.token), split: newSplitState(r.owner) };
        drawRegister(ctx, el, reload);
        await reload();
      }, "btn primary"))));
}

// ------------------------------------------------------------------------------------------ upload
/** Publish the audio through the model, showing its progress (kept in the view state after the form resets). */
function uploadAudio(ctx, file, trackId, progress) {
  const bar = progress.querySelector("i");
  const label = progress.querySelector("span");
  return ctx.S.artist.uploadAudio(file, trackId, (state, text, pct) => {
    ctx.S.upload = { state, text, pct: pct ?? ctx.S.upload?.pct ?? 0 };
    progress.classList.remove("hidden");
    progress.dataset.state = state;
    label.textContent = text;
    if (pct !== undefined) bar.style.width = `${pct}%`;
  });
}
