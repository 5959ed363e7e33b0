// Wallet discovery and connection: EIP-6963 (multi-wallet discovery) with a window.ethereum fallback, chain
// checks and wallet_switchEthereumChain / wallet_addEthereumChain.
import { BrowserProvider, Interface, toQuantity } from "ethers";

import { REVERT_SENTENCES } from "./messages.js";

/** Wallets announced through EIP-6963 (plus window.ethereum if nothing announced itself). */
export async function discoverWallets({ waitMs = 250 } = {}) {
  const found = new Map();
  const onAnnounce = (event) => {
    const { info, provider } = event.detail ?? {};
    if (info?.uuid && provider) found.set(info.uuid, { info, provider });
  };
  window.addEventListener("eip6963:announceProvider", onAnnounce);
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  await new Promise((r) => setTimeout(r, waitMs));
  window.removeEventListener("eip6963:announceProvider", onAnnounce);
  const wallets = [...found.values()];
  if (!wallets.length && window.ethereum) {
    wallets.push({
      info: { uuid: "window.ethereum", name: window.ethereum.isMetaMask ? "MetaMask" : "Browser wallet", icon: "", rdns: "window.ethereum" },
      provider: window.ethereum,
    });
  }
  return wallets;
}

/** An EIP-1193 provider wrapped for the app: account, chain id, an ethers BrowserProvider and its signer. */
export class WalletConnection extends EventTarget {
  constructor({ info, provider }) {
    super();
    this.info = info;
    this.provider = provider;
    this.account = null;
    this.chainId = null;
    this._onAccounts = (accounts) => {
      this.account = accounts?.[0] ?? null;
      this._reset();
      this.dispatchEvent(new Event("change"));
    };
    this._onChain = (chainId) => {
      this.chainId = Number(BigInt(chainId));
      this._reset();
      this.dispatchEvent(new Event("change"));
    };
  }

  _reset() {
    // poll for receipts every 1.5 s (ethers' default is 4 s): confirmations show up promptly
    this.browserProvider = new BrowserProvider(this.provider, "any", { pollingInterval: 1500 });
    this._signer = null;
  }

  async connect() {
    const accounts = await this.provider.request({ method: "eth_requestAccounts" });
    this.account = accounts?.[0] ?? null;
    if (!this.account) throw new Error("the wallet returned no account");
    this.chainId = Number(BigInt(await this.provider.request({ method: "eth_chainId" })));
    this._reset();
    this.provider.on?.("accountsChanged", this._onAccounts);
    this.provider.on?.("chainChanged", this._onChain);
    return this;
  }

  disconnect() {
    this.provider.removeListener?.("accountsChanged", this._onAccounts);
    this.provider.removeListener?.("chainChanged", this._onChain);
  }

  async signer() {
    if (!this._signer) this._signer = await this.browserProvider.getSigner(this.account);
    return this._signer;
  }

  /** Ask the wallet to switch to `chainId`, adding the chain first if it does not know it (error 4902). */
  async switchChain(chainId, { chainName, rpcUrls = [] } = {}) {
    const hex = toQuantity(chainId);
    try {
      await this.provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: hex }] });
    } catch (err) {
      const code = err?.code ?? err?.data?.originalError?.code;
      if (code !== 4902 && !/unrecognized chain|unknown chain|4902/i.test(String(err?.message))) throw err;
      if (!rpcUrls.length) throw new Error(`the wallet does not know chain ${chainId} and this relay publishes no RPC URL for it`);
      await this.provider.request({
        method: "wallet_addEthereumChain",
        params: [{ chainId: hex, chainName: chainName || `Chain ${chainId}`, rpcUrls,
          nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 } }],
      });
      await this.provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: hex }] });
    }
    this.chainId = Number(BigInt(await this.provider.request({ method: "eth_chainId" })));
    this._reset();
    this.dispatchEvent(new Event("change"));
  }
}

/** ABIs whose custom errors a failed call may carry (a token's error inside a channel call): set by the page. */
const errorInterfaces = [];
export function knowErrorsOf(...abis) {
  for (const abi of abis) if (abi) errorInterfaces.push(new Interface(abi));
}

/** The revert data of a failed call, wherever the provider put it. */
function revertData(err) {
  for (const d of [err?.data, err?.error?.data, err?.info?.error?.data, err?.info?.error?.data?.data, err?.error?.data?.data]) {
    if (typeof d === "string" && /^0x[0-9a-f]{8}/i.test(d)) return d;
  }
  return null;
}

/** {name, args} of the custom error behind a failed call: as ethers decoded it, else from the known ABIs. */
export function decodeRevert(err) {
  const revert = err?.revert ?? err?.error?.revert;
  if (revert?.name) return { name: revert.name, args: [...(revert.args ?? [])] };
  const data = revertData(err);
  if (!data) return null;
  for (const iface of errorInterfaces) {
    try {
      const parsed = iface.parseError(data);
      if (parsed) return { name: parsed.name, args: [...parsed.args] };
    } catch {
      /* not this contract's error */
    }
  }
  return null;
}

/**
 * Why a wallet or contract call failed, as a sentence: a rejected prompt, missing gas money, a decoded custom error
 * (in words for the common ones), never a raw JSON-RPC dump.
 */
export function describeTxError(err) {
  if (!err) return "unknown error";
  if (err.code === "ACTION_REJECTED" || err.code === 4001 || err?.info?.error?.code === 4001 || err?.error?.code === 4001) return "you rejected the request in your wallet";
  if (err.code === "INSUFFICIENT_FUNDS" || /insufficient funds/i.test(String(err.message))) return "your wallet does not have enough ETH for this transaction and its gas";
  const revert = decodeRevert(err);
  if (revert) {
    const sentence = REVERT_SENTENCES[revert.name];
    if (sentence) return sentence(revert.args);
    return `the contract refused: ${revert.name}(${revert.args.map((a) => (typeof a === "bigint" ? a.toString() : String(a))).join(", ")})`;
  }
  const text = String(err.shortMessage ?? err.message ?? err);
  if (/could not coalesce|missing revert data|execution reverted|CALL_EXCEPTION|-32603|"jsonrpc"/i.test(text)) {
    return "the transaction would fail on chain and the contract gave no reason: check the network and try again";
  }
  return text.length > 240 ? `${text.slice(0, 240)}…` : text;
}

/**
 * The wallet transactions of this page, newest first, each {id, label, hash, status: "pending" | "confirmed" |
 * "failed", reason, at}: `mined` records them, the UI listens ("change") and shows their state.
 */
export class TxLog extends EventTarget {
  constructor(max = 20) {
    super();
    this.max = max;
    this.items = [];
    this._next = 1;
  }

  add(label, hash) {
    const item = { id: this._next++, label, hash, status: "pending", reason: "", at: Date.now() / 1000 };
    this.items = [item, ...this.items].slice(0, this.max);
    this._changed(item);
    return item;
  }

  settle(item, status, reason = "") {
    Object.assign(item, { status, reason });
    this._changed(item);
  }

  _changed(item) {
    this.dispatchEvent(new CustomEvent("change", { detail: item }));
  }
}

export const txLog = new TxLog();

/**
 * The receipt of a transaction, asked for every half second until it is mined; recorded in `txLog` under `label`:
 * "signing" while the wallet is asked (when given the send's promise), "pending" with its hash, then "confirmed",
 * or "failed" with the reason (a rejected prompt, a decoded custom error, a revert). (ethers' `tx.wait()` looks
 * again only when a new block arrives: on an automining devnet the block that mined the transaction can be the
 * last one for a long while, and `wait()` then never returns — seen as an "Open channel" stuck on "Working…".)
 */
export async function mined(txOrSend, label = "Transaction", timeoutMs = 120_000, log = txLog) {
  const entry = log.add(label, txOrSend?.hash ?? null);
  try {
    let tx = txOrSend;
    if (typeof tx?.then === "function") {
      log.settle(entry, "signing");
      tx = await tx;
      entry.hash = tx.hash;
      log.settle(entry, "pending");
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const receipt = await tx.provider.getTransactionReceipt(tx.hash);
      if (receipt?.status === 0) throw new Error(`transaction ${tx.hash} reverted on chain`); // as tx.wait() did
      if (receipt) {
        log.settle(entry, "confirmed");
        return receipt;
      }
      if (Date.now() > deadline) throw new Error(`transaction ${tx.hash} was not mined within ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } catch (err) {
    log.settle(entry, "failed", describeTxError(err));
    throw err;
  }
}
