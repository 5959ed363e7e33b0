// A test wallet injected into the page (page.add_init_script) before the app loads. It announces itself with
// EIP-6963 and implements EIP-1193 over one of anvil's unlocked dev accounts: account and chain requests are
// answered here, wallet_switchEthereumChain switches the chain it reports, and everything else (reads,
// eth_sendTransaction, eth_signTypedData_v4) is forwarded to the chain's JSON-RPC (anvil, which signs for its
// dev accounts). window.__csWallet.calls records every method asked and .requests every {method, params};
// setting window.__csWallet.rejectNext makes the next eth_sendTransaction fail as a user rejection (4001).
//
// With cfg.knowsChain === false the wallet starts without the relay's chain, like a real wallet meeting a new
// network: switching to it fails with 4902 (EIP-3326) until wallet_addEthereumChain (EIP-3085) adds it, which
// validates the parameters and checks that the given RPC URL serves that chain id (as MetaMask does); the
// chain's requests then go to that URL, so a wrong URL from the page leaves the player unable to work.
(() => {
  const cfg = window.__csWalletConfig;
  if (!cfg || window.__csWallet) return;
  let chainId = (cfg.startChainId ?? cfg.chainId).toLowerCase();
  const rpcs = new Map([[chainId, cfg.rpcUrl]]); // chain id -> the RPC URL the wallet uses for it
  if (cfg.knowsChain !== false) rpcs.set(cfg.chainId.toLowerCase(), cfg.rpcUrl);
  const handlers = {};
  const calls = [];
  const requests = [];
  let nextId = 1;

  function emit(event, value) {
    for (const fn of handlers[event] ?? []) {
      try { fn(value); } catch (err) { console.error(err); }
    }
  }

  async function rpc(url, method, params) {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params: params ?? [] }),
    });
    const body = await res.json();
    if (body.error) {
      const err = new Error(body.error.message);
      err.code = body.error.code;
      err.data = body.error.data;
      throw err;
    }
    return body.result;
  }

  function providerError(code, message) {
    const err = new Error(message);
    err.code = code;
    return err;
  }

  function forward(method, params) {
    const url = rpcs.get(chainId);
    if (!url) throw providerError(4901, `the wallet has no RPC for chain ${chainId}`);
    return rpc(url, method, params);
  }

  /** EIP-3085: validate like a wallet, check the RPC serves the chain, remember it (no switch: the app asks). */
  async function addChain(p) {
    const id = typeof p?.chainId === "string" ? p.chainId.toLowerCase() : "";
    if (!/^0x[1-9a-f][0-9a-f]*$/.test(id)) throw providerError(-32602, `invalid chainId ${p?.chainId}`);
    if (!Array.isArray(p.rpcUrls) || !p.rpcUrls.length || typeof p.chainName !== "string" || !p.chainName) {
      throw providerError(-32602, "rpcUrls and chainName are required");
    }
    const c = p.nativeCurrency;
    if (!c || typeof c.symbol !== "string" || c.decimals !== 18) throw providerError(-32602, "invalid nativeCurrency");
    let served;
    try {
      served = String(await rpc(p.rpcUrls[0], "eth_chainId", [])).toLowerCase();
    } catch (err) {
      throw providerError(-32603, `could not reach ${p.rpcUrls[0]}: ${err.message}`);
    }
    if (served !== id) throw providerError(-32602, `${p.rpcUrls[0]} serves chain ${served}, not ${id}`);
    rpcs.set(id, p.rpcUrls[0]);
    return null;
  }

  const provider = {
    isChainStreamTestWallet: true,
    async request({ method, params }) {
      calls.push(method);
      requests.push({ method, params: JSON.parse(JSON.stringify(params ?? null)) });
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [cfg.account];
        case "eth_chainId":
          return chainId;
        case "net_version":
          return String(parseInt(chainId, 16));
        case "wallet_switchEthereumChain": {
          const wanted = String(params?.[0]?.chainId).toLowerCase();
          if (!rpcs.has(wanted)) throw providerError(4902, `Unrecognized chain ID ${wanted}. Try adding the chain using wallet_addEthereumChain first.`);
          if (wanted !== chainId) {
            chainId = wanted;
            emit("chainChanged", chainId);
          }
          return null;
        }
        case "wallet_addEthereumChain":
          return addChain(params?.[0]);
        case "eth_sendTransaction":
          if (window.__csWallet.rejectNext) {
            window.__csWallet.rejectNext = false; // the user presses Reject once
            throw providerError(4001, "User rejected the request.");
          }
          if (chainId !== cfg.chainId.toLowerCase()) throw providerError(4901, "the wallet is on another chain");
          return forward(method, params);
        case "eth_signTypedData_v4":
        case "eth_sign":
        case "personal_sign":
          if (chainId !== cfg.chainId.toLowerCase()) throw providerError(4901, "the wallet is on another chain");
          return forward(method, params);
        default:
          return forward(method, params);
      }
    },
    on(event, fn) {
      (handlers[event] ??= []).push(fn);
      return provider;
    },
    removeListener(event, fn) {
      handlers[event] = (handlers[event] ?? []).filter((f) => f !== fn);
      return provider;
    },
  };

  const info = Object.freeze({
    uuid: "5d1b7e8c-1f3a-4c55-9a77-chainstream-test",
    name: cfg.name ?? "Test Wallet",
    icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E%3Crect width='32' height='32' rx='8' fill='%23f6851b'/%3E%3C/svg%3E",
    rdns: "dev.chainstream.testwallet",
  });
  const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
  window.__csWallet = { provider, calls, requests, rejectNext: false, setChain: (id) => { chainId = id; emit("chainChanged", id); } };
})();
