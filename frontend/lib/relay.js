// The relay's HTTP API (src/chainstream/relay/app.py): JSON in and out, errors as RelayError with the relay's
// stable code, message and (for voucher_mismatch / stale_voucher / seq_gap) its channel state.
export class RelayError extends Error {
  constructor(status, body) {
    const e = body?.error ?? {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http_" + status;
    this.state = body?.state ?? null;
  }
}

export class RelayClient {
  constructor(base = "") {
    this.base = base;
  }

  async request(method, path, body) {
    let res;
    try {
      res = await fetch(this.base + path, {
        method,
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new RelayError(0, { error: { code: "relay_unreachable", message: `the relay did not answer (${err.message})` } });
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
  info = () => this.get("/api/v1/info");
  config = () => this.get("/player-config.json").catch(() => ({ rpcUrls: [] }));
  abi = (name) => this.get(`/abi/${name}.json`).then((j) => j.abi);
  catalog = (token) => this.get(`/api/v1/catalog${token ? `?token=${token}` : ""}`);
  channel = (id) => this.get(`/api/v1/channels/${id}`);
  history = (id, limit = 50, before = null) =>
    this.get(`/api/v1/channels/${id}/history?limit=${limit}${before == null ? "" : `&before=${before}`}`);
  pay = (id, body) => this.request("POST", `/api/v1/channels/${id}/payments`, body);
  setCaps = (id, body) => this.request("PUT", `/api/v1/channels/${id}/caps`, body);
  close = (id, body) => this.request("POST", `/api/v1/channels/${id}/close`, body);
  listenerChannels = (addr) => this.get(`/api/v1/listeners/${addr}/channels`);
  earnings = (addr) => this.get(`/api/v1/artists/${addr}/earnings`);
  earningsCsvUrl = (addr) => `${this.base}/api/v1/artists/${addr}/earnings?format=csv`;

  /** Server-Sent Events for a channel (payments) or a payee; returns the EventSource. */
  events({ channel, payee } = {}, onEvent) {
    const q = new URLSearchParams();
    if (channel) q.set("channel", channel);
    if (payee) q.set("payee", payee);
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
