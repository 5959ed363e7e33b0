// The player bar: real audio from the relay, paid as it plays. The audio streams through MSE (lib/stream.js): the
// relay serves each segment only against the grant a payment earned. A per-play track is paid when it starts (or
// once its free minSeconds preview was heard); a per-second track is paid a segment's seconds ahead whenever the
// relay asks (402) for the next segment, which keeps the payment at most one segment ahead of what was heard.
// A refused payment stops the music and shows the relay's reason.
import * as L from "../lib/ledger.js";
import { meteringOf } from "../lib/pricing.js";
import { PaidStream } from "../lib/stream.js";
import { Ticker, artStyle, artistName, fmtClock, h, mount, parseAmount, trackTitle } from "../lib/ui.js";

export const CHUNK_SECONDS = 5;
const VOLUME_KEY = "chainstream.volume";

const ICONS = {
  play: '<svg viewBox="0 0 24 24"><path d="M7 4.5v15a1 1 0 0 0 1.5.86l12.5-7.5a1 1 0 0 0 0-1.72L8.5 3.64A1 1 0 0 0 7 4.5Z"/></svg>',
  pause: '<svg viewBox="0 0 24 24"><rect x="6" y="4" width="4" height="16" rx="1.2"/><rect x="14" y="4" width="4" height="16" rx="1.2"/></svg>',
  prev: '<svg viewBox="0 0 24 24"><path d="M6 5h2v14H6zM20 5.8v12.4a.8.8 0 0 1-1.24.67L10 13.1a1.3 1.3 0 0 1 0-2.2l8.76-5.77A.8.8 0 0 1 20 5.8Z"/></svg>',
  next: '<svg viewBox="0 0 24 24"><path d="M16 5h2v14h-2zM4 5.8v12.4a.8.8 0 0 0 1.24.67L14 13.1a1.3 1.3 0 0 0 0-2.2L5.24 5.13A.8.8 0 0 0 4 5.8Z"/></svg>',
  queue: '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"><path d="M4 6h12M4 12h12M4 18h8m6-3v6m-3-3h6"/></svg>',
  volume: '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M11 5 6 9H3v6h3l5 4V5Zm4.5 3.5a5 5 0 0 1 0 7M18.4 5.6a9 9 0 0 1 0 12.8"/></svg>',
  heart: '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2"><path d="M20.8 4.6a5.5 5.5 0 0 0-7.8 0L12 5.7l-1-1.1a5.5 5.5 0 0 0-7.8 7.8l1 1.1L12 21l7.8-7.5 1-1.1a5.5 5.5 0 0 0 0-7.8Z"/></svg>',
};
export { ICONS };

export class Player {
  constructor(ctx, el, audio) {
    this.ctx = ctx;
    this.el = el;
    this.audio = audio;
    this.track = null;
    this.mode = "play";
    this.status = "idle"; // idle | loading | paying | playing | paused | ended
    this.charged = false; // the current play was paid
    this.heard = 0; // seconds heard of the current play
    this.unpaid = 0; // seconds heard and not yet paid (per-second metering)
    this.lastTime = 0;
    this.inflight = null;
    this.stream = null; // the PaidStream of the current play
    this.grant = null; // the grant of the current play's payment (per-play tracks)
    this.queue = []; // track ids up next (this page only)
    this.played = []; // track ids played before the current one (for Previous)
    this.build();
    this.renderQueueCount();
    const stored = Number(localStorage.getItem(VOLUME_KEY) ?? "1");
    this.setVolume(Number.isFinite(stored) ? stored : 1);
    audio.addEventListener("timeupdate", () => this.onTime());
    audio.addEventListener("ended", () => this.onEnded());
    audio.addEventListener("pause", () => { if (this.status === "playing") this.setStatus("paused"); this.flush(); });
    audio.addEventListener("play", () => { this.lastTime = audio.currentTime; });
    setInterval(() => this.tick(), 200);
    ctx.listener.addEventListener("change", () => {
      this.tipBtn.disabled = !this.track || ctx.listener.channel?.status !== "open";
    });
  }

  // ------------------------------------------------------------------------------------------ queue
  /** Add a track to "up next" (played after the current one ends, or with Next). */
  enqueue(trackId) {
    this.queue.push(trackId);
    this.renderQueueCount();
    this.ctx.listener.changed("queue");
  }

  dequeue(index) {
    this.queue.splice(index, 1);
    this.renderQueueCount();
    this.ctx.listener.changed("queue");
  }

  renderQueueCount() {
    this.queueBtn.dataset.count = String(this.queue.length);
    this.queueCount.textContent = this.queue.length ? String(this.queue.length) : "";
    this.nextBtn.disabled = !this.track && !this.queue.length;
  }

  /** Next: the first queued track, else the catalog's next track (each play is paid as usual). */
  next() {
    const catalog = this.ctx.listener.catalog;
    let id = this.queue.shift();
    if (!id && catalog.length) {
      const i = catalog.findIndex((t) => t.trackId === this.track?.trackId);
      id = catalog[(i + 1) % catalog.length].trackId;
    }
    this.renderQueueCount();
    if (!id) return;
    if (this.track) this.played.push(this.track.trackId);
    this.play(id);
  }

  /** Previous: back to the start of this track if it has played a few seconds, else the track played before it. */
  previous() {
    if (this.track && (this.audio.currentTime > 3 || !this.played.length)) {
      this.seekTo(0);
      return;
    }
    const id = this.played.pop();
    if (id) this.play(id);
  }

  // ------------------------------------------------------------------------------------------ seek & volume
  /**
   * Seek within what is paid: anywhere once a play is paid (or in a per-second track: a forward seek skips the
   * segments it jumps over, never fetched nor paid); within the free preview before a per-play track is paid.
   */
  seekTo(seconds) {
    const d = this.audio.duration;
    if (!this.track || !Number.isFinite(d) || !d) return;
    let t = Math.max(0, Math.min(seconds, d - 0.25));
    if (this.mode === "play" && !this.charged) {
      const min = this.ctx.listener.listing(this.track.trackId)?.terms.minSeconds ?? 0;
      t = Math.min(t, Math.max(0, min - 1));
    }
    this.audio.currentTime = t;
    this.lastTime = t;
  }

  seekBy(delta) {
    this.seekTo((this.audio.currentTime || 0) + delta);
  }

  setVolume(v) {
    v = Math.max(0, Math.min(1, Math.round(v * 100) / 100));
    this.audio.volume = v;
    this.volume.value = String(Math.round(v * 100));
    try {
      localStorage.setItem(VOLUME_KEY, String(v));
    } catch {
      /* not stored: the volume still applies */
    }
  }

  build() {
    this.art = h("div.p-art");
    this.title = h("div.p-title", { "data-testid": "player-title" }, "Nothing playing");
    this.sub = h("div.p-sub", "Pick a track — you pay only for what you hear");
    this.playBtn = h("button.p-play", { html: ICONS.play, "aria-label": "Play", disabled: true, "data-testid": "player-toggle", onclick: () => this.toggle() });
    this.prevBtn = h("button.p-btn", { html: ICONS.prev, "aria-label": "Previous", title: "Previous (Shift+←)", "data-testid": "player-prev", onclick: () => this.previous() });
    this.nextBtn = h("button.p-btn", { html: ICONS.next, "aria-label": "Next", title: "Next (Shift+→)", "data-testid": "player-next", onclick: () => this.next() });
    this.bar = h("i", { style: { width: "0%" } });
    this.paidBar = h("b", { style: { width: "0%" } });
    this.seek = h("input.p-seek", { type: "range", min: 0, max: 1000, step: 1, value: 0, "aria-label": "Seek", "data-testid": "player-seek",
      oninput: (e) => this.seekTo((Number(e.target.value) / 1000) * (this.audio.duration || 0)) });
    this.cur = h("span", { "data-testid": "player-time" }, "0:00");
    this.dur = h("span", "0:00");
    this.rate = h("div.spend-rate", "");
    this.spendVal = h("div.spend-val", { "data-testid": "session-spend" }, "0");
    this.spendTicker = new Ticker(this.spendVal, (v) => this.ctx.fmt(v, this.ctx.listener?.token()));
    this.tipBtn = h("button.btn.small.p-tip", { html: ICONS.heart + "<span>Tip</span>", "aria-label": "Tip this track", disabled: true, "data-testid": "player-tip", onclick: () => this.track && openTipModal(this.ctx, this.track.trackId) });
    this.volume = h("input.p-vol", { type: "range", min: 0, max: 100, step: 1, value: 100, "aria-label": "Volume", "data-testid": "player-volume",
      oninput: (e) => this.setVolume(Number(e.target.value) / 100) });
    this.queueCount = h("span.p-count");
    this.queueBtn = h("button.p-btn", { html: ICONS.queue, "aria-label": "Up next", title: "Up next", "data-testid": "player-queue", onclick: () => openQueueModal(this.ctx) }, this.queueCount);
    this.spendTicker.set(0n, { animate: false });
    this.statusChip = h("span.chip.hidden", { "data-testid": "player-status", "data-status": "idle" }, "idle");
    mount(this.el,
      h("div.p-now", this.art, h("div", { style: { minWidth: 0 } }, this.title, this.sub)),
      h("div.p-center",
        h("div.p-controls", this.statusChip, this.prevBtn, this.playBtn, this.nextBtn, this.tipBtn),
        h("div.p-progress", this.cur, h("div.p-bar", this.paidBar, this.bar, this.seek), this.dur)),
      h("div.p-right",
        h("label.p-volume", { html: ICONS.volume }, this.volume),
        this.queueBtn,
        h("div.spend", h("div.label", h("span.live-dot"), "Spent this session"), this.spendVal, this.rate)));
  }

  setStatus(status) {
    this.status = status;
    this.playBtn.innerHTML = status === "playing" || status === "loading" || status === "paying" ? ICONS.pause : ICONS.play;
    this.playBtn.disabled = !this.track;
    this.tipBtn.disabled = !this.track || this.ctx.listener.channel?.status !== "open";
    const label = { idle: "idle", loading: "loading", paying: "paying…", playing: this.mode === "seconds" ? "metering" : "paid", paused: "paused", ended: "ended" }[status];
    this.statusChip.textContent = label;
    this.statusChip.dataset.status = status;
    this.statusChip.className = "chip " + (status === "playing" ? "teal" : status === "paying" ? "accent" : "") + (status === "idle" ? " hidden" : "");
    this.ctx.listener.changed("player");
  }

  isPlaying(trackId) {
    return this.track?.trackId === trackId && ["playing", "loading", "paying"].includes(this.status);
  }

  /** Start a track (or resume it). */
  async play(trackId, { mode } = {}) {
    const { listener } = this.ctx;
    if (!listener.channel || listener.channel.status !== "open") {
      this.ctx.banner({ kind: "warn", id: "need-channel", title: "Open a channel to start listening", message: "Deposit once; every play is then paid from your browser without wallet pop-ups." });
      document.querySelector("[data-testid=channel-card]")?.scrollIntoView({ behavior: "smooth" });
      return;
    }
    const listing = listener.listing(trackId);
    if (!listing) {
      this.ctx.banner({ kind: "warn", title: "Not available in your channel's token", message: "This track has no price in the token your channel holds." });
      return;
    }
    if (this.track?.trackId === trackId && this.status === "paused") {
      await this.resume();
      return;
    }
    this.stop();
    this.track = listener.track(trackId);
    this.mode = mode ?? meteringOf(listing.terms);
    this.charged = false;
    this.heard = 0;
    this.unpaid = 0;
    this.renderTrack(listing);
    this.setStatus("loading");
    this.grant = null;
    this.aheadMs = 0; // per-second: milliseconds paid ahead in this play minus milliseconds fetched
    const stream = this.stream = new PaidStream({
      audio: this.audio, trackId,
      pay: (seg, refusal) => this.payFor(stream, seg, refusal),
      before: (seg) => this.payAhead(stream, seg),
    });
    stream.addEventListener("change", () => this.showBuffering(stream.buffering));
    stream.addEventListener("error", (e) => this.streamFailed(e.detail));
    try {
      await stream.open();
    } catch (err) {
      this.setStatus("idle");
      if (err?.code === "media_not_published") {
        this.ctx.banner({ kind: "warn", title: "No audio yet", message: "The artist has not uploaded this track's audio to the relay.", code: err.code });
      } else if (err?.code === "relay_unreachable" || err?.status >= 500) {
        this.ctx.showError(err, "The relay is not answering"); // the relay is down, not the track
      } else {
        this.ctx.banner({ kind: "error", title: "Could not load the audio", message: err.message, code: err?.code ?? "no_audio" });
      }
      return;
    }
    if (this.stream !== stream) return; // another track was chosen meanwhile
    if (this.mode === "play" && listing.terms.minSeconds === 0) {
      if (!(await this.chargePlay())) return;
    }
    await this.startAudio();
  }

  /** Per-second: before fetching `seg`, pay its seconds if what this play paid ahead does not cover it (the relay
   * serves a segment while the seconds it served stay below the seconds paid: one segment ahead at most). */
  async payAhead(stream, seg) {
    if (this.mode !== "seconds" || this.stream !== stream) return null;
    const grant = this.aheadMs <= 0 ? await this.paySeconds(seg) : null;
    this.aheadMs -= Math.round(seg.duration * 1000);
    return grant;
  }

  /** Pay a segment's seconds ahead; they count against the seconds heard (unpaid may go below zero). */
  async paySeconds(seg) {
    const id = this.track.trackId;
    const seconds = Math.max(1, Math.round(seg.duration));
    this.unpaid -= seconds;
    this.aheadMs += seconds * 1000;
    while (this.inflight) await this.inflight.catch(() => {}); // one voucher at a time, in order
    const p = this.ctx.listener.pay(() => L.chargeSeconds(this.ctx.listener.listing(id), seconds));
    this.inflight = p;
    try {
      const { ack } = await p;
      return ack.grant?.token ?? null;
    } catch (err) {
      this.unpaid += seconds;
      this.aheadMs -= seconds * 1000;
      throw err;
    } finally {
      if (this.inflight === p) this.inflight = null;
    }
  }

  /** The stream needs a grant for `seg` (the relay answered 402): pay what it takes and return the new grant. */
  async payFor(stream, seg, refusal) {
    if (this.stream !== stream) throw refusal;
    if (this.mode === "seconds") return this.paySeconds(seg);
    if (this.grant && refusal.code === "payment_required" && this.charged) throw refusal;
    if (!this.charged || refusal.code === "grant_expired") {
      if (!(await this.chargePlay())) throw refusal;
      this.setStatus("playing");
    }
    if (!this.grant) await this.charging;
    return this.grant;
  }

  showBuffering(on) {
    this.statusChip.dataset.buffering = on ? "1" : "";
    if (on && this.status === "playing") this.statusChip.textContent = "buffering…";
    else if (!on) this.setStatus(this.status);
  }

  streamFailed(err) {
    if (this.status === "idle") return;
    this.audio.pause();
    this.setStatus("paused");
    if (err?.status === 402) {
      this.ctx.banner({ kind: "error", title: "Payment required", message: `The relay will not send more of this track without a payment: ${err.message}`, code: err.code, id: "stream-402" });
    } else {
      this.ctx.showError(err, "Streaming stopped");
    }
  }

  async startAudio() {
    const listing = this.track && this.ctx.listener.listing(this.track.trackId);
    if (this.mode === "play" && !this.charged && listing?.terms.minSeconds === 0) {
      if (!(await this.chargePlay())) return; // (a resumed play whose payment was refused earlier)
    }
    this.stream?.start(this.grant);
    try {
      this.lastTime = this.audio.currentTime;
      await this.audio.play();
      this.setStatus("playing");
    } catch (err) {
      this.setStatus("paused");
      this.ctx.banner({ kind: "warn", title: "Playback was blocked", message: err.message });
    }
  }

  async resume() {
    if (this.status === "ended") return this.play(this.track.trackId, { mode: this.mode });
    await this.startAudio();
  }

  toggle() {
    if (!this.track) return;
    if (this.status === "playing") this.audio.pause();
    else if (this.status === "paused") this.resume();
    else if (this.status === "ended" || this.status === "idle") this.play(this.track.trackId, { mode: this.mode });
  }

  stop() {
    if (this.track && this.status !== "idle") {
      this.audio.pause();
      this.flush();
    }
    this.stream?.close();
    this.stream = null;
    this.setStatus(this.track ? "idle" : "idle");
  }

  async chargePlay() {
    this.setStatus("paying");
    const id = this.track.trackId;
    this.charged = true; // before the await: the preview's onTime charge must not pay the same play again
    const charging = this.charging = this.ctx.listener.pay((state) => L.chargePlay(state, this.ctx.listener.listing(id)));
    try {
      const { ack } = await charging;
      this.grant = ack.grant?.token ?? null;
      return true;
    } catch (err) {
      this.charged = false;
      this.refused(err);
      return false;
    }
  }

  /** Pay for the seconds heard so far (per-second metering); refused -> stop. */
  flush(min = 1) {
    if (this.mode !== "seconds" || !this.track) return;
    const seconds = Math.floor(this.unpaid);
    if (seconds < min) return;
    this.unpaid -= seconds;
    this.aheadMs += seconds * 1000; // the relay counts every paid second (replayed audio was paid again)
    const id = this.track.trackId;
    const p = this.ctx.listener.pay(() => L.chargeSeconds(this.ctx.listener.listing(id), seconds));
    this.inflight = p;
    p.catch((err) => {
      this.audio.pause();
      this.refused(err);
    }).finally(() => { if (this.inflight === p) this.inflight = null; });
    return p;
  }

  refused(err) {
    this.audio.pause();
    this.setStatus("paused");
    this.ctx.showError(err, "Payment refused");
  }

  onTime() {
    const t = this.audio.currentTime;
    const delta = t - this.lastTime;
    this.lastTime = t;
    if (this.status !== "playing" || !(delta > 0 && delta < 1.5)) return;
    this.heard += delta;
    if (this.mode === "seconds") {
      this.unpaid += delta;
      if (this.unpaid >= CHUNK_SECONDS && !this.inflight) this.flush(CHUNK_SECONDS);
    } else if (!this.charged) {
      const listing = this.ctx.listener.listing(this.track.trackId);
      if (listing && this.heard >= listing.terms.minSeconds) {
        this.charged = true;
        const charging = this.charging = this.ctx.listener.pay((state) => L.chargePlay(state, this.ctx.listener.listing(this.track.trackId)));
        charging.then(({ ack }) => { this.grant = ack.grant?.token ?? null; }).catch((err) => this.refused(err));
      }
    }
  }

  onEnded() {
    this.flush();
    this.setStatus("ended");
    if (this.queue.length) this.next(); // only what the listener queued plays on by itself
  }

  renderTrack(listing) {
    const t = this.track;
    this.art.style.background = artStyle(t.trackId);
    this.title.textContent = trackTitle(t);
    const token = this.ctx.listener.token();
    const price = this.mode === "seconds"
      ? `${this.ctx.fmt(listing.terms.perSecond, token)} / second`
      : `${this.ctx.fmt(L.chargePlay(this.ctx.listener.ledger, listing).amount, token)} this play`;
    mount(this.sub, h("a.artist-link", { href: `#/artist/${t.owner}` }, artistName(t.owner)), " · ", price);
    this.tipBtn.disabled = false;
  }

  /** The ticking meters: session spend including seconds heard but not yet paid. */
  tick() {
    const { listener } = this.ctx;
    if (!listener) return;
    const d = this.audio.duration || 0;
    const t = this.audio.currentTime || 0;
    this.bar.style.width = d ? `${(t / d) * 100}%` : "0%";
    if (document.activeElement !== this.seek) this.seek.value = String(d ? Math.round((t / d) * 1000) : 0);
    this.seek.disabled = !this.track || !d;
    this.cur.textContent = fmtClock(t);
    this.dur.textContent = fmtClock(d);
    let accrued = 0n;
    if (this.track && this.mode === "seconds") {
      const listing = listener.listing(this.track.trackId);
      if (listing) {
        accrued = (listing.terms.perSecond * BigInt(Math.round(this.unpaid * 1000))) / 1000n;
        this.rate.textContent = `${this.status === "playing" ? "▲ " : ""}${this.ctx.fmt(listing.terms.perSecond, listener.token())}/s`;
      }
      this.paidBar.style.width = d ? `${(Math.max(0, t - this.unpaid) / d) * 100}%` : "0%";
    } else {
      this.paidBar.style.width = this.charged && d ? "100%" : "0%";
      this.rate.textContent = this.track && this.charged ? "paid per play" : "";
    }
    const total = listener.sessionSpent + accrued;
    if (total !== this.spendTicker.value) this.spendTicker.set(total, { animate: accrued === 0n });
  }
}

/** Tip a track (its split applies) with an optional message. */
export function openTipModal(ctx, trackId) {
  const { listener } = ctx;
  if (!listener.channel || listener.channel.status !== "open") {
    ctx.banner({ kind: "warn", id: "need-channel", title: "Open a channel to tip", message: "Tips are paid from your channel like plays." });
    return;
  }
  const track = listener.track(trackId);
  const token = listener.token();
  const presets = token.decimals === 18 ? ["0.0001", "0.0005", "0.001"] : ["0.25", "1", "5"];
  let amountText = presets[1];
  ctx.modal((box, close) => {
    const amount = h("input.input", { value: amountText, inputmode: "decimal", "data-testid": "tip-amount", oninput: (e) => { amountText = e.target.value; sync(); } });
    const memo = h("textarea.input", { placeholder: "Say something to the artist (optional, 280 bytes)", maxlength: 280, "data-testid": "tip-message" });
    const presetRow = h("div.presets", presets.map((p) => h("button", { type: "button", onclick: () => { amount.value = amountText = p; sync(); } }, `${p} ${token.symbol}`)));
    const send = h("button.btn.primary", { "data-testid": "tip-send", onclick: async () => {
      const value = parseAmount(amountText, token);
      if (!value) return;
      send.disabled = true;
      send.replaceChildren(h("span.spinner"), "Sending…");
      problem.classList.add("hidden");
      try {
        await listener.tipTrack(trackId, value, memo.value.trim());
        close();
        ctx.toast(`Tipped ${ctx.fmt(value, token)} to “${trackTitle(track)}” ♥`);
      } catch (err) {
        // the dialog stays open with what was typed: say why here, and let the listener try again
        const d = ctx.describe(err, "Tip refused");
        mount(problem, h("b", d.title), d.message ? h("div", d.message) : null);
        problem.dataset.code = err?.code ?? "";
        problem.classList.remove("hidden");
        mount(send, "Try again");
        sync();
      }
    } }, "Send tip");
    const problem = h("div.modal-problem.hidden", { role: "alert", "data-testid": "tip-error" });
    const sync = () => {
      const ok = !!parseAmount(amountText, token);
      amount.classList.toggle("invalid", !ok);
      send.disabled = !ok;
      for (const b of presetRow.children) b.classList.toggle("on", b.textContent.startsWith(amountText + " "));
    };
    mount(box,
      h("div.row", h("div.p-art", { style: { background: artStyle(trackId), width: "52px", height: "52px" } }),
        h("div", h("h3", `Tip “${trackTitle(track)}”`), h("div.faint", "Split like plays, platform fee included"))),
      h("div.form-grid", { style: { marginTop: "16px" } },
        h("label.field", h("span", "Amount"), h("div.input-wrap", amount, h("span.suffix", token.symbol))), presetRow,
        h("label.field", h("span", "Message"), memo)),
      problem,
      h("div.actions", h("button.btn.ghost", { onclick: close }, "Cancel"), send));
    sync();
  });
}

/** Up next: the queued tracks, each removable. */
export function openQueueModal(ctx) {
  const { player, listener } = ctx;
  ctx.modal((box, close) => {
    const draw = () => mount(box,
      h("h3", "Up next"),
      player.queue.length
        ? h("div.history", { "data-testid": "queue-list" }, player.queue.map((id, i) => {
          const t = listener.track(id);
          return h("div.h-item", { "data-testid": "queue-item" },
            h("div.h-art", { style: { background: artStyle(id) } }),
            h("div", { style: { minWidth: 0 } }, h("div.h-title", t?.title ?? "Unknown track"), h("div.h-sub", t ? artistName(t.owner) : "")),
            h("button.btn.small.ghost", { "aria-label": `Remove ${t?.title ?? "track"} from the queue`, onclick: () => { player.dequeue(i); draw(); } }, "Remove"));
        }))
        : h("div.empty", "Nothing queued. Add tracks with “+ Queue” on a track."),
      h("div.actions", h("button.btn", { onclick: close }, "Close")));
    draw();
  });
}
