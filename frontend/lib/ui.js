// Small DOM and formatting helpers (no framework).
import { formatUnits, parseUnits } from "ethers";

import { artistNames } from "./profiles.js";

/** h("div.card#id", {onclick, class, style, ...attrs}, ...children): build an element. */
export function h(tag, attrs, ...children) {
  const [, name = "div", rest = ""] = tag.match(/^([a-z0-9-]*)(.*)$/i);
  const el = document.createElement(name || "div");
  for (const part of rest.match(/[.#][^.#]+/g) ?? []) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs !== null && attrs !== undefined && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.classList.add(...String(v).split(/\s+/).filter(Boolean));
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "html") el.innerHTML = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace an element's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) el.append(c);
  return el;
}

// ------------------------------------------------------------------------------------------ amounts
/** 0.00002 ETH, 1.25 mUSD: at most `sig` significant digits below 1, 4 decimals above. */
export function fmtAmount(value, token, { sig = 3, symbol = true } = {}) {
  const v = BigInt(value ?? 0);
  const text = formatUnits(v < 0n ? -v : v, token?.decimals ?? 18);
  let [int, frac = ""] = text.split(".");
  frac = frac.replace(/0+$/, "");
  let out;
  if (int !== "0") out = frac ? `${Number(int).toLocaleString("en-US")}.${frac.slice(0, 4).replace(/0+$/, "")}` : Number(int).toLocaleString("en-US");
  else if (!frac) out = "0";
  else {
    const lead = frac.match(/^0*/)[0].length;
    out = `0.${frac.slice(0, lead + sig).replace(/0+$/, "")}`;
  }
  if (out.endsWith(".")) out = out.slice(0, -1);
  return (v < 0n ? "-" : "") + out + (symbol ? ` ${token?.symbol ?? ""}`.trimEnd() : "");
}

/** Parse a human amount ("0.01") into the token's smallest unit; null when invalid. */
export function parseAmount(text, token) {
  try {
    const t = String(text ?? "").trim();
    if (!/^\d*\.?\d*$/.test(t) || t === "" || t === ".") return null;
    return parseUnits(t, token?.decimals ?? 18);
  } catch {
    return null;
  }
}

export const shortAddr = (a) => (a ? `${a.slice(0, 6)}…${a.slice(-4)}` : "");

export function fmtDuration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  const d = Math.floor(seconds / 86400);
  const hms = [Math.floor((seconds % 86400) / 3600), Math.floor((seconds % 3600) / 60), seconds % 60]
    .map((n) => String(n).padStart(2, "0")).join(":");
  return d ? `${d}d ${hms}` : hms;
}

export const fmtClock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

export function fmtTime(unixSeconds) {
  const d = new Date(unixSeconds * 1000);
  const today = new Date();
  const time = d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString("en-GB", { day: "numeric", month: "short" })} ${time}`;
}

// ------------------------------------------------------------------------------------------ art
/** Album-art style CSS background generated from a 32-byte id: two or three hues, a direction and light spots. */
export function artStyle(id) {
  const hex = (id || "0x").replace(/^0x/, "").padEnd(64, "0");
  const byte = (i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  const h1 = Math.round((byte(0) / 255) * 360);
  const h2 = (h1 + 40 + Math.round((byte(1) / 255) * 140)) % 360;
  const h3 = (h2 + 60 + Math.round((byte(2) / 255) * 100)) % 360;
  const angle = Math.round((byte(3) / 255) * 360);
  const x1 = 10 + (byte(4) % 80), y1 = 10 + (byte(5) % 80), x2 = 10 + (byte(6) % 80), y2 = 10 + (byte(7) % 80);
  return [
    `radial-gradient(circle at ${x1}% ${y1}%, hsla(${h3} 95% 70% / .85) 0, transparent 38%)`,
    `radial-gradient(circle at ${x2}% ${y2}%, hsla(${h1} 90% 60% / .6) 0, transparent 45%)`,
    `repeating-radial-gradient(circle at ${x2}% ${y1}%, hsla(0 0% 100% / .06) 0 2px, transparent 2px 14px)`,
    `linear-gradient(${angle}deg, hsl(${h1} 75% 42%), hsl(${h2} 80% 30%) 60%, hsl(${h3} 70% 18%))`,
  ].join(",");
}

/** A small avatar gradient for an address. */
export function avatarStyle(address) {
  const hex = (address || "0x0").slice(2).toLowerCase().padEnd(8, "0");
  const a = parseInt(hex.slice(0, 3), 16) % 360, b = parseInt(hex.slice(3, 6), 16) % 360;
  return `linear-gradient(135deg, hsl(${a} 80% 60%), hsl(${b} 75% 45%))`;
}

/** Animate a number-like bigint display (the ticking meters). */
export class Ticker {
  constructor(el, format) {
    this.el = el;
    this.format = format;
    this.value = 0n;
    this.shown = 0n;
    this.raf = 0;
  }

  set(value, { animate = true } = {}) {
    value = BigInt(value);
    if (!animate || value === this.shown) {
      this.value = this.shown = value;
      this.el.textContent = this.format(value);
      return;
    }
    const from = this.shown;
    this.value = value;
    const start = performance.now();
    const dur = 650;
    cancelAnimationFrame(this.raf);
    const step = (t) => {
      const k = Math.min(1, (t - start) / dur);
      const e = 1 - (1 - k) ** 3;
      const scaled = BigInt(Math.round(e * 1e6));
      this.shown = from + ((value - from) * scaled) / 1_000_000n;
      this.el.textContent = this.format(this.shown);
      if (k < 1) this.raf = requestAnimationFrame(step);
      else this.shown = value;
    };
    this.raf = requestAnimationFrame(step);
  }
}

/**
 * How an artist is shown: the name from the profile the artist signed, once this page has verified the signature
 * (lib/profiles.js), else their address, shortened; the full address is on their page (#/artist/<address>).
 */
export const artistName = (address) => artistNames.nameOf(address) ?? shortAddr(address);

/** A track's title for display: never a bare hash (a track registered without one shows as untitled + short id). */
export const trackTitle = (track) => String(track?.title ?? "").trim() || `Untitled ${shortAddr(track?.trackId ?? "")}`;
