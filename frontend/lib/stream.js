// Paid streaming through Media Source Extensions: a track's fMP4/AAC segments fetched from the relay one at a time,
// each with the grant its payment earned (docs/API.md, "Audio"). No DOM rendering here: the player view owns the
// <audio> element and hands it in; the object URL it plays is a blob: URL (the page's CSP needs `media-src blob:`).
//
// The stream stays at most one segment ahead of playback. A segment the relay answers 402 for is paid through the
// `pay(segment, refusal)` callback (the player pays the segment's seconds ahead, or the play) and fetched again with
// the new grant; any other refusal stops the stream with the relay's error.
import { RelayError } from "./relay.js";

export const GRANT_HEADER = "X-ChainStream-Grant";
const MAX_PAY_ATTEMPTS = 3;

export class PaidStream extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.base          the relay's base URL ("" for the page's origin)
   * @param {HTMLMediaElement} o.audio
   * @param {string} o.trackId
   * @param {(segment: object, refusal: RelayError) => Promise<string>} o.pay  pays and resolves to a grant token
   * @param {(segment: object) => Promise<string|null>} [o.before]  pays ahead before a fetch if it knows it must
   *   (resolves to a new grant, or null to keep the current one)
   */
  constructor({ base = "", audio, trackId, pay, before = null }) {
    super();
    this.before = before;
    this.base = base;
    this.audio = audio;
    this.trackId = trackId;
    this.pay = pay;
    this.grant = null;
    this.manifest = null;
    this.next = 0; // the next segment to fetch
    this.closed = false;
    this.started = false;
    this.buffering = false;
    this.error = null;
    this.url = null;
    this.onTime = () => this.wake();
    this.onWaiting = () => this.setBuffering(true);
    this.onPlaying = () => this.setBuffering(false);
  }

  /** Read the manifest, attach a MediaSource to the audio element, append the init segment (free). */
  async open() {
    this.manifest = await this.json(`/api/v1/tracks/${this.trackId}/media`);
    if (!window.MediaSource || !MediaSource.isTypeSupported(this.manifest.mime)) {
      throw new RelayError(0, { error: { code: "unsupported_browser", message: `this browser cannot play ${this.manifest.mime} through Media Source Extensions` } });
    }
    this.source = new MediaSource();
    this.url = URL.createObjectURL(this.source);
    this.audio.src = this.url;
    await new Promise((resolve) => this.source.addEventListener("sourceopen", resolve, { once: true }));
    this.source.duration = this.manifest.duration;
    this.buffer = this.source.addSourceBuffer(this.manifest.mime);
    await this.append(await this.bytes(this.manifest.init));
    this.audio.addEventListener("timeupdate", this.onTime);
    this.audio.addEventListener("seeking", this.onTime);
    this.audio.addEventListener("waiting", this.onWaiting);
    this.audio.addEventListener("playing", this.onPlaying);
    return this.manifest;
  }

  /** Start fetching segments (after the player paid what it pays up front), with `grant` if it has one. */
  start(grant = null) {
    if (grant) this.grant = grant;
    if (this.started) return;
    this.started = true;
    this.pump();
  }

  /** The segment index playing now. */
  current() {
    const t = this.audio.currentTime * 1000;
    const segs = this.manifest.segments;
    let i = 0;
    while (i + 1 < segs.length && segs[i + 1].start * 1000 <= t) i += 1;
    return i;
  }

  async pump() {
    const segs = this.manifest.segments;
    try {
      while (!this.closed && this.next < segs.length) {
        // A seek forward skips what lies before it: never fetched, so never paid for (fMP4 fragments carry their
        // own timestamps, so appending from the new position is enough).
        this.next = Math.max(this.next, this.current());
        if (this.next > this.current() + 1) {
          await new Promise((resolve) => { this.wake = resolve; });
          continue;
        }
        const seg = segs[this.next];
        this.setBuffering(this.next === this.current() && this.audio.readyState < 3);
        await this.append(await this.segment(seg));
        this.next += 1;
      }
      if (!this.closed && this.source.readyState === "open") this.source.endOfStream();
    } catch (err) {
      if (this.closed) return;
      this.error = err;
      this.dispatchEvent(new CustomEvent("error", { detail: err }));
    }
  }

  wake() {} // replaced while the pump waits for playback to move on

  /** One segment's bytes: with the current grant; on 402, pay (the callback) and try again. */
  async segment(seg) {
    if (this.before) {
      const grant = await this.before(seg);
      if (grant) this.grant = grant;
    }
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.bytes(seg.url, this.grant);
      } catch (err) {
        if (!(err instanceof RelayError) || err.status !== 402 || attempt >= MAX_PAY_ATTEMPTS || this.closed) throw err;
        this.grant = await this.pay(seg, err);
      }
    }
  }

  setBuffering(on) {
    if (this.buffering === on) return;
    this.buffering = on;
    this.dispatchEvent(new Event("change"));
  }

  append(data) {
    return new Promise((resolve, reject) => {
      if (this.closed) return resolve();
      const done = () => { cleanup(); resolve(); };
      const fail = () => { cleanup(); reject(new RelayError(0, { error: { code: "bad_media", message: "the browser could not decode a segment" } })); };
      const cleanup = () => { this.buffer.removeEventListener("updateend", done); this.buffer.removeEventListener("error", fail); };
      this.buffer.addEventListener("updateend", done);
      this.buffer.addEventListener("error", fail);
      this.buffer.appendBuffer(data);
    });
  }

  async fetch(path, grant) {
    let res;
    try {
      res = await fetch(this.base + path, { headers: grant ? { [GRANT_HEADER]: grant } : {}, cache: "no-store" });
    } catch (err) {
      throw new RelayError(0, { error: { code: "relay_unreachable", message: `the relay did not answer (${err.message})` } });
    }
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch { body = { error: { code: `http_${res.status}`, message: res.statusText } }; }
      const err = new RelayError(res.status, body);
      err.payment = body?.payment ?? null;
      throw err;
    }
    return res;
  }

  async json(path) { return (await this.fetch(path)).json(); }
  async bytes(path, grant) { return (await this.fetch(path, grant)).arrayBuffer(); }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.wake();
    this.audio.removeEventListener("timeupdate", this.onTime);
    this.audio.removeEventListener("seeking", this.onTime);
    this.audio.removeEventListener("waiting", this.onWaiting);
    this.audio.removeEventListener("playing", this.onPlaying);
    if (this.url) URL.revokeObjectURL(this.url);
  }
}
