// A test wallet injected into the page (page.add_init_script) before the app loads. It announces itself with
// EIP-6963 and implements EIP-1193 over one of anvil's unlocked dev accounts: account and chain requests are
// answered here, wallet_switchEthereumChain / wallet_addEthereumChain switch the chain it reports, and
// everything else (reads, eth_sendTransaction, eth_signTypedData_v4) is forwarded to anvil's JSON-RPC, which
// signs for its dev accounts. window.__csWallet.calls records every method asked, for assertions.
(() => {
  const cfg = window.__csWalletConfig;
  if (!cfg || window.__csWallet) return;
  let chainId = (cfg.startChainId ?? cfg.chainId).toLowerCase();
  const known = new Set([cfg.chainId.toLowerCase(), chainId]);
  const handlers = {};
  const calls = [];
  let nextId = 1;

  function emit(event, value) {
    for (const fn of handlers[event] ?? []) {
      try { fn(value); } catch (err) { console.error(err); }
    }
  }

  async function forward(method, params) {
    const res = await fetch(cfg.rpcUrl, {
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

  const provider = {
    isChainStreamTestWallet: true,
    async request({ method, params }) {
      calls.push(method);
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
          if (!known.has(wanted)) throw providerError(4902, `Unrecognized chain ID ${wanted}. Try adding the chain using wallet_addEthereumChain first.`);
          if (wanted !== chainId) {
            chainId = wanted;
            emit("chainChanged", chainId);
          }
          return null;
        }
        case "wallet_addEthereumChain":
          known.add(String(params?.[0]?.chainId).toLowerCase());
          return null;
        case "eth_sendTransaction":
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
  window.__csWallet = { provider, calls, setChain: (id) => { chainId = id; emit("chainChanged", id); } };
})();
