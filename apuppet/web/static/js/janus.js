/**
 * A small client of the Janus API (the subset apuppet's server speaks): sessions, plugin handles, messages,
 * trickle, hangup, detach. WebSocket first, because one socket carries replies and events with no polling delay;
 * HTTP long poll when WebSockets are blocked (some proxies). Transport loss is reported once through `onlost`,
 * and the caller decides whether to reconnect; this module never retries on its own.
 */

export class JanusError extends Error {
  constructor(code, reason) {
    super(reason || `Janus error ${code}`);
    this.name = "JanusError";
    this.code = code;
  }
}

/** The server could not be reached at all (as opposed to answering with an error). */
export class UnreachableError extends Error {
  constructor(message) {
    super(message);
    this.name = "UnreachableError";
  }
}

export function randomToken(bytes = 9) {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

const KEEPALIVE_MS = 25000;
const REQUEST_TIMEOUT_MS = 15000;
/** Replies that end a request; `event`s may share the transaction of the `message` that caused them. */
const REPLIES = new Set(["success", "error", "ack", "server_info", "pong"]);

function timeout(ms, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new UnreachableError(`${what}: no answer in ${ms / 1000} s`)), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

class WebSocketTransport {
  kind = "websocket";

  constructor(url) {
    this.url = url;
    this.pending = new Map();
    this.onevent = () => {};
    this.onclose = () => {};
    this.closed = false;
  }

  open(ms) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url, "janus-protocol");
      } catch (err) {
        reject(new UnreachableError(String(err)));
        return;
      }
      const timer = setTimeout(() => {
        ws.close();
        reject(new UnreachableError("WebSocket timeout"));
      }, ms);
      ws.onopen = () => {
        clearTimeout(timer);
        this.ws = ws;
        ws.onclose = () => this._closed();
        ws.onerror = () => {};
        resolve(this);
      };
      ws.onerror = ws.onclose = () => {
        clearTimeout(timer);
        reject(new UnreachableError("WebSocket refused"));
      };
      ws.onmessage = (e) => this._receive(e.data);
    });
  }

  _receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    for (const one of Array.isArray(msg) ? msg : [msg]) {
      const waiter = this.pending.get(one.transaction);
      if (waiter && (REPLIES.has(one.janus) || one.janus === "event")) {
        this.pending.delete(one.transaction);
        waiter(one);
      }
      if (!REPLIES.has(one.janus)) this.onevent(one);
    }
  }

  _closed() {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of this.pending.values()) waiter({ janus: "error", error: { code: 0, reason: "closed" } });
    this.pending.clear();
    this.onclose();
  }

  request(msg /* , sessionId, handleId: carried in the body over WebSocket */) {
    if (this.closed || !this.ws) return Promise.reject(new UnreachableError("connection closed"));
    const t = timeout(REQUEST_TIMEOUT_MS, msg.janus);
    const reply = new Promise((resolve) => this.pending.set(msg.transaction, resolve));
    this.ws.send(JSON.stringify(msg));
    return Promise.race([reply, t.promise]).finally(t.cancel);
  }

  startEvents() {}

  close() {
    this.closed = true;
    try {
      this.ws?.close();
    } catch {
      // already gone
    }
  }
}

class LongPollTransport {
  kind = "http";

  constructor(url) {
    this.url = url.replace(/\/$/, "");
    this.onevent = () => {};
    this.onclose = () => {};
    this.closed = false;
    this.abort = new AbortController();
  }

  async open() {
    return this;
  }

  _path(sessionId, handleId) {
    return this.url + (sessionId ? `/${sessionId}` : "") + (handleId ? `/${handleId}` : "");
  }

  async request(msg, sessionId, handleId) {
    if (this.closed) throw new UnreachableError("connection closed");
    const t = timeout(REQUEST_TIMEOUT_MS, msg.janus);
    try {
      const response = await Promise.race([
        fetch(this._path(sessionId, handleId), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(msg),
          signal: this.abort.signal,
        }),
        t.promise,
      ]);
      if (!response.ok && response.status >= 500) throw new UnreachableError(`HTTP ${response.status}`);
      return await response.json();
    } catch (err) {
      if (err instanceof UnreachableError) throw err;
      throw new UnreachableError(String(err.message || err));
    } finally {
      t.cancel();
    }
  }

  /** The poll loop: one GET at a time, every event handed over; two failures in a row mean the link is gone. */
  async startEvents(sessionId, apisecret) {
    let failures = 0;
    while (!this.closed) {
      const query = new URLSearchParams({ maxev: "10", rid: String(Date.now()) });
      if (apisecret) query.set("apisecret", apisecret);
      try {
        const response = await fetch(`${this._path(sessionId)}?${query}`, { signal: this.abort.signal });
        if (response.status === 404) throw new JanusError(458, "session not found");
        const body = await response.json();
        failures = 0;
        const events = Array.isArray(body) ? body : [body];
        for (const event of events) {
          if (event.janus === "error" && event.error?.code === 458) throw new JanusError(458, "session not found");
          if (event.janus !== "keepalive") this.onevent(event);
        }
      } catch (err) {
        if (this.closed) return;
        failures += 1;
        if (err instanceof JanusError || failures >= 2) {
          this.closed = true;
          this.onclose();
          return;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  close() {
    this.closed = true;
    this.abort.abort();
  }
}

export class Handle {
  constructor(session, id, plugin) {
    this.session = session;
    this.id = id;
    this.plugin = plugin;
    this.listeners = new Set();
    this.onevent = () => {};
    this.onhangup = () => {};
    this.onslowlink = () => {};
  }

  _dispatch(event) {
    if (event.janus === "hangup") this.onhangup(event);
    if (event.janus === "slowlink") this.onslowlink(event);
    for (const listener of [...this.listeners]) listener(event);
    if (event.janus === "event") this.onevent(event.plugindata?.data ?? {}, event.jsep, event);
  }

  /** The next event for which `predicate(data, jsep, event)` holds; register BEFORE sending what causes it. */
  waitFor(predicate, ms = REQUEST_TIMEOUT_MS) {
    let listener;
    let timer;
    const promise = new Promise((resolve, reject) => {
      listener = (event) => {
        if (event.janus === "lost") reject(new UnreachableError("connection lost"));
        if (event.janus !== "event") return;
        const data = event.plugindata?.data ?? {};
        if (predicate(data, event.jsep, event)) resolve({ data, jsep: event.jsep });
      };
      this.listeners.add(listener);
      timer = setTimeout(() => reject(new UnreachableError(`${this.plugin}: no answer in ${ms / 1000} s`)), ms);
    });
    const done = () => {
      clearTimeout(timer);
      this.listeners.delete(listener);
    };
    promise.then(done, done);
    return promise;
  }

  /** Plugin message: returns the synchronous `plugindata.data`, or null when the server only acknowledged it. */
  async message(body, jsep) {
    const msg = { janus: "message", body };
    if (jsep) msg.jsep = jsep;
    const reply = await this.session._request(msg, this.id);
    return reply.janus === "success" ? (reply.plugindata?.data ?? {}) : null;
  }

  trickle(candidate) {
    const msg = { janus: "trickle", candidate: candidate ?? { completed: true } };
    return this.session._request(msg, this.id).catch(() => {});
  }

  hangup() {
    return this.session._request({ janus: "hangup" }, this.id).catch(() => {});
  }

  async detach() {
    this.session.handles.delete(this.id);
    await this.session._request({ janus: "detach" }, this.id).catch(() => {});
  }
}

export class Session {
  constructor(transport, apisecret) {
    this.transport = transport;
    this.apisecret = apisecret;
    this.handles = new Map();
    this.id = null;
    /** RTCConfiguration.iceServers the server handed this session (STUN, TURN with fresh credentials). */
    this.iceServers = [];
    this.onlost = () => {};
    this.lost = false;
    transport.onevent = (event) => this._event(event);
    transport.onclose = () => this._lost();
  }

  get kind() {
    return this.transport.kind;
  }

  async _request(msg, handleId) {
    const full = { ...msg, transaction: randomToken(6) };
    if (this.apisecret) full.apisecret = this.apisecret;
    if (this.id) full.session_id = this.id;
    if (handleId) full.handle_id = handleId;
    const reply = await this.transport.request(full, this.id, handleId);
    if (reply.janus === "error") {
      if (reply.error?.code === 0) throw new UnreachableError("connection closed");
      if (reply.error?.code === 458 && this.id) this._lost();
      throw new JanusError(reply.error?.code, reply.error?.reason);
    }
    return reply;
  }

  async create() {
    const reply = await this._request({ janus: "create" });
    this.id = reply.data.id;
    // Kept in memory only: TURN credentials never go into the URL, storage or the console.
    if (Array.isArray(reply.data.ice_servers)) this.iceServers = reply.data.ice_servers;
    this.transport.startEvents(this.id, this.apisecret);
    if (this.transport.kind === "websocket") {
      this.keepalive = setInterval(() => this._request({ janus: "keepalive" }).catch(() => {}), KEEPALIVE_MS);
    }
    return this;
  }

  async attach(plugin) {
    const reply = await this._request({ janus: "attach", plugin, opaque_id: `apuppet-web-${randomToken(6)}` });
    const handle = new Handle(this, reply.data.id, plugin);
    this.handles.set(handle.id, handle);
    return handle;
  }

  _event(event) {
    const handle = this.handles.get(event.sender);
    if (handle) handle._dispatch(event);
    else if (event.janus === "timeout") this._lost();
  }

  _lost() {
    if (this.lost) return;
    this.lost = true;
    clearInterval(this.keepalive);
    this.transport.close();
    // Whoever waits for an event will not get it: fail now rather than at a timeout.
    for (const handle of this.handles.values()) {
      for (const listener of [...handle.listeners]) listener({ janus: "lost" });
    }
    this.onlost();
  }

  /** Destroy the session; on page exit `beacon` uses sendBeacon so it survives the page going away. */
  destroy({ beacon = false } = {}) {
    clearInterval(this.keepalive);
    this.lost = true;
    if (this.id && beacon && this.transport.kind === "http" && navigator.sendBeacon) {
      const msg = { janus: "destroy", transaction: randomToken(6) };
      if (this.apisecret) msg.apisecret = this.apisecret;
      navigator.sendBeacon(`${this.transport.url}/${this.id}`, JSON.stringify(msg));
      this.transport.close();
      return Promise.resolve();
    }
    const done = this.id ? this._request({ janus: "destroy" }).catch(() => {}) : Promise.resolve();
    return done.finally(() => this.transport.close());
  }
}

/**
 * Open a session at `base` (the site root, e.g. "https://host/"): WebSocket `/janus` first, then HTTP.
 * `prefer` may force one transport ("websocket" or "http"), which the tests use.
 */
export async function connect(base, { apisecret = "", prefer = "", wsTimeoutMs = 4000 } = {}) {
  const api = new URL("janus", base);
  const wsUrl = new URL(api);
  wsUrl.protocol = api.protocol === "https:" ? "wss:" : "ws:";
  const attempts = [];
  if (prefer !== "http") attempts.push(() => new WebSocketTransport(wsUrl.href).open(wsTimeoutMs));
  if (prefer !== "websocket") attempts.push(() => new LongPollTransport(api.href).open());
  let last;
  for (const attempt of attempts) {
    let transport;
    try {
      transport = await attempt();
      return await new Session(transport, apisecret).create();
    } catch (err) {
      transport?.close();
      if (err instanceof JanusError) throw err;
      last = err;
    }
  }
  throw last instanceof UnreachableError ? last : new UnreachableError(String(last));
}
