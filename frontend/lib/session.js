// Browser session keys: one random key per channel, kept in localStorage, authorised on-chain in open() (or
// setSessionKey) so that plays are paid without a wallet pop-up. It can only sign vouchers for its channel,
// up to the deposit and the session cap (set to the opening deposit by default), until its expiry (one day by
// default). Whoever copies this browser's profile holds these keys: they are deleted when the channel closes,
// when the wallet is disconnected, and once expired (docs/SECURITY.md).
import { Wallet } from "ethers";

const PREFIX = "chainstream.session";

const keyName = (chainId, contract, channelId) => `${PREFIX}.${chainId}.${contract.toLowerCase()}.${channelId.toLowerCase()}`;

export function createSessionKey() {
  return Wallet.createRandom();
}

/** Store a session key under its channel id (before the open transaction is sent, so it is never lost). */
export function saveSessionKey(chainId, contract, channelId, wallet, expiry) {
  localStorage.setItem(keyName(chainId, contract, channelId), JSON.stringify({ key: wallet.privateKey, address: wallet.address, expiry }));
}

/** The stored session key of a channel as an ethers Wallet (or null). */
export function loadSessionKey(chainId, contract, channelId) {
  try {
    const raw = localStorage.getItem(keyName(chainId, contract, channelId));
    if (!raw) return null;
    const { key, expiry } = JSON.parse(raw);
    const wallet = new Wallet(key);
    return { wallet, address: wallet.address, expiry: Number(expiry) };
  } catch {
    return null;
  }
}

export function forgetSessionKey(chainId, contract, channelId) {
  localStorage.removeItem(keyName(chainId, contract, channelId));
}

const sessionEntries = () => Object.keys(localStorage).filter((k) => k.startsWith(`${PREFIX}.`));

/** Delete every session key this browser keeps (on disconnect: nothing is left to spend from here). */
export function forgetAllSessionKeys() {
  for (const name of sessionEntries()) localStorage.removeItem(name);
}

/** Delete the session keys whose expiry (unix seconds) has passed by `now`. */
export function forgetExpiredSessionKeys(now) {
  for (const name of sessionEntries()) {
    try {
      const { expiry } = JSON.parse(localStorage.getItem(name));
      if (!(Number(expiry) > now)) localStorage.removeItem(name);
    } catch {
      localStorage.removeItem(name);
    }
  }
}

/** Channels this browser opened for an account (so a channel shows before the relay's watcher has seen it). */
export function rememberChannel(chainId, account, channelId) {
  const name = `chainstream.channels.${chainId}.${account.toLowerCase()}`;
  const list = JSON.parse(localStorage.getItem(name) || "[]");
  if (!list.includes(channelId)) list.unshift(channelId);
  localStorage.setItem(name, JSON.stringify(list.slice(0, 20)));
}

export function knownChannels(chainId, account) {
  try {
    return JSON.parse(localStorage.getItem(`chainstream.channels.${chainId}.${account.toLowerCase()}`) || "[]");
  } catch {
    return [];
  }
}

export function setActiveChannel(chainId, account, channelId) {
  localStorage.setItem(`chainstream.active.${chainId}.${account.toLowerCase()}`, channelId ?? "");
}

export const activeChannel = (chainId, account) => localStorage.getItem(`chainstream.active.${chainId}.${account.toLowerCase()}`) || null;
