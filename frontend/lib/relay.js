// The relay's HTTP API (src/chainstream/relay/app.py): JSON in and out, errors as RelayError with the relay's
// stable code, message, the numbers behind it (`details`, docs/API.md: named decimal strings such as
// daily_cap_exceeded's spentToday / amount / dailyCap) and, for voucher_mismatch / stale_voucher / seq_gap, its
// channel state.
export class RelayError extends Error {
  constructor(status, body) {
    const e = body?.error ?? {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http_" + status;
    this.state = body?.state ?? e.state ?? null;
    this.details = e.details && typeof e.details === "object" && !Array.isArray(e.details) ? e.details : null;
  }

  /** A named amount from `details` as a bigint, or null when the relay did not state it (or not as an integer). */
  amount(name) {
    const v = this.details?.[name];
    return typeof v === "string" && /^\d{1,78}$/.test(v) ? BigInt(v) : typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : null;
  }
}

/** The relay's API. Events: "reachable" when a request succeeds after the relay did not answer (a banner about
 * it can go). */
export class RelayClient extends EventTarget {
  constructor(base = "") {
    super();
    this.base = base;
    this.unreachable = false;
    this.tokens = null; // a ReadTokens (lib/readtokens.js): signs the read tokens of private reads
  }

  async request(method, path, body, token) {
    let res;
    const headers = body === undefined ? {} : { "Content-Type": "application/json" };
    if (token) headers.Authorization = `ChainStream-Read ${token}`;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      this.unreachable = true;
      throw new RelayError(0, { error: { code: "relay_unreachable", message: `the relay did not answer (${err.message})` } });
    }
    if (this.unreachable) {
      this.unreachable = false;
      this.dispatchEvent(new Event("reachable"));
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: { code: "bad_response", message: text.slice(0, 200) } };
    }
    if (!res.ok) throw new RelayError(res.status, data);
    return data;
  }

  get = (path) => this.request("GET", path);
  // artist profiles: public; verified by the caller (lib/profiles.js), never trusted as they come
  profile = (addr) => this.get(`/api/v1/artists/${addr}/profile`);
  setProfile = (addr, body) => this.request("PUT", `/api/v1/artists/${addr}/profile`, body);

  /**
   * A private read with the owner's read token (scope {channel} or {account}); a session-key token the relay no
   * longer takes (the key was replaced or expired) is retried once with the wallet's.
   */
  async read(path, scope, { wallet = false } = {}) {
    const token = await this.tokens.token(scope, { wallet });
    try {
      return await this.request("GET", path, undefined, token.text);
    } catch (err) {
      if (!(err instanceof RelayError) || err.code !== "read_token_invalid" || !token.bySession) throw err;
      this.tokens.refused(token.signer); // expired by chain time, or replaced: read with the wallet from now on
      return this.request("GET", path, undefined, (await this.tokens.token(scope, { wallet: true })).text);
    }
  }

  info = () => this.get("/api/v1/info");
  config = () => this.get("/player-config.json").catch(() => ({ rpcUrls: [] }));
  abi = (name) => this.get(`/abi/${name}.json`).then((j) => j.abi);
  catalog = (token) => this.get(`/api/v1/catalog${token ? `?token=${token}` : ""}`);
  channel = (id) => this.read(`/api/v1/channels/${id}`, { channel: id });
  history = (id, limit = 50, before = null) =>
    this.read(`/api/v1/channels/${id}/history?limit=${limit}${before == null ? "" : `&before=${before}`}`, { channel: id });
  pay = (id, body) => this.request("POST", `/api/v1/channels/${id}/payments`, body);
  setCaps = (id, body) => this.request("PUT", `/api/v1/channels/${id}/caps`, body);
  close = (id, body) => this.request("POST", `/api/v1/channels/${id}/close`, body);
  listenerChannels = (addr) => this.read(`/api/v1/listeners/${addr}/channels`, { account: addr });
  // earnings: the artist's own key only (a session key never reads them)
  earnings = (addr) => this.read(`/api/v1/artists/${addr}/earnings`, { account: addr }, { wallet: true });
  // gas-free onboarding and payouts (docs/API.md): the relay submits what the wallet signed and pays the gas
  onboardQuote = () => this.get("/api/v1/onboard/quote");
  onboardOpen = (body) => this.request("POST", "/api/v1/onboard/open", body);
  onboardTopUp = (body) => this.request("POST", "/api/v1/onboard/topup", body);
  onboardClose = (body) => this.request("POST", "/api/v1/onboard/close", body);
  schedulePayouts = (body) => this.request("POST", "/api/v1/payouts/schedule", body);
  // payouts: the payee's own key only, like earnings
  payouts = (addr) => this.read(`/api/v1/artists/${addr}/payouts`, { account: addr }, { wallet: true });
  /** A download link for the earnings CSV (a link cannot send headers: the token rides in the query). */
  async earningsCsvUrl(addr) {
    const token = await this.tokens.token({ account: addr }, { wallet: true });
    return `${this.base}/api/v1/artists/${addr}/earnings?format=csv&readToken=${encodeURIComponent(token.text)}`;
  }

  /**
   * Server-Sent Events for a channel (payments) or a payee; resolves to the EventSource. EventSource cannot send
   * headers, so the read token is in the URL (short-lived; Referrer-Policy no-referrer keeps it from leaking).
   */
  async events({ channel, payee } = {}, onEvent) {
    const q = new URLSearchParams();
    if (channel) q.set("channel", channel);
    if (payee) q.set("payee", payee);
    const scope = channel ? { channel } : { account: payee };
    if (channel || payee) q.set("readToken", (await this.tokens.token(scope, { wallet: !channel })).text);
    const source = new EventSource(`${this.base}/api/v1/events?${q}`);
    for (const type of ["payment", "catalog"]) {
      source.addEventListener(type, (e) => {
        try {
          onEvent(type, JSON.parse(e.data));
        } catch {
          /* ignore malformed events */
        }
      });
    }
    return source;
  }
}
