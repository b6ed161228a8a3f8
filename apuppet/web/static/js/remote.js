/**
 * One remote-control connection to a device: the Janus session, the TextRoom data channel (commands) and the
 * Streaming viewer (video), with the states a support person has to understand.
 *
 * States: "idle" → "connecting" → "connected" ⇄ "reconnecting"; and the ends "device-left", "closed" (the
 * session is gone) or "idle" again after `disconnect()`. A network hiccup (WebSocket or poll lost, ICE failed,
 * no pong for too long) rebuilds everything with the same Session ID and password without reloading the page.
 * A server that stops or restarts is told apart from a device that ends its session (both first close the room
 * and the video), and the page waits for the device to bring the same session back to the restarted server.
 */

import * as commands from "./commands.js";
import { connect, JanusError, randomToken, UnreachableError } from "./janus.js";

/**
 * The server hands out the ICE servers with the session (TURN credentials minted for this client); with none
 * configured the list is empty, so a LAN or loopback never waits for a public STUN server.
 */
function rtcConfig(janus) {
  return { iceServers: janus.iceServers ?? [] };
}
const PING_MS = 2000;
const PONG_WARN_MS = 4000;
const PONG_DEAD_MS = 30000;
const ICE_GRACE_MS = 4000;
const WAIT_MS = 15000;
const WATCH_RETRIES = 6;
/** How long "the room or the video was closed" waits to see whether the server connection goes too. */
export const END_GRACE_MS = 1500;

/** A failure to connect, with a `kind` the page words for people and tests can check. */
export class ConnectError extends Error {
  constructor(kind, message, cause) {
    super(message);
    this.name = "ConnectError";
    this.kind = kind;
    this.cause = cause;
  }
}

/** The server answers, but no WebRTC connection with it comes up (retried: see `connect`). */
const NO_MEDIA_MESSAGE =
  "The server answers, but no media connection to it could be made: UDP is blocked on this network or at the " +
  "server (its rtp_port_range), or the server needs a TURN server. Ask its administrator (apuppet doctor).";

/** Whether retrying with the same credentials can ever help. */
const FINAL = new Set(["unknown-session", "wrong-password", "secret", "busy", "no-device"]);

export function classify(err, sessionId) {
  if (err instanceof ConnectError) return err;
  if (err instanceof UnreachableError) {
    return new ConnectError("unreachable", "The server cannot be reached. Check the network connection.", err);
  }
  if (err instanceof JanusError) {
    switch (err.code) {
      case 417:
      case 455:
        return new ConnectError(
          "unknown-session",
          `There is no session ${sessionId}. Check the Session ID shown on the device.`,
          err,
        );
      case 419:
      case 457:
        return new ConnectError("wrong-password", "Wrong password. Check the password shown on the device.", err);
      case 403:
        return new ConnectError("secret", "The server refused the API secret (see Advanced).", err);
      case 429:
        return new ConnectError("throttled", `Too many attempts: ${err.message}. Wait a moment and retry.`, err);
      default:
        return new ConnectError("server", `The server refused: ${err.message} (${err.code}).`, err);
    }
  }
  return new ConnectError("error", String(err?.message ?? err), err);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new UnreachableError(`${what}: no answer in ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

export class Remote extends EventTarget {
  constructor({ base = location.href, apisecret = "", prefer = "" } = {}) {
    super();
    this.base = base;
    this.apisecret = apisecret;
    this.prefer = prefer;
    this.state = "idle";
    this.link = null; // the live connection (see _open)
    /** Bumped by every decision of the user (connect, disconnect, leaving the page): stale work stops. */
    this.epoch = 0;
    this.rtt = null;
    this.lastPong = 0;
    this.pings = new Set();
    this.ownNames = new Set();
    this.device = null;
    this.resolution = null;
    this.reconnects = 0;
    /** The server went away (stopped, restarted, unreachable) since the last good connection. */
    this.serverLost = false;
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  get transport() {
    return this.link?.janus.kind ?? "";
  }

  /** Log in. Resolves once commands can be sent and the video is negotiated; rejects with a ConnectError. */
  async connect(sessionId, pin, { force = false } = {}) {
    if (this.link) await this.disconnect();
    this.epoch++; // also ends a reconnect loop waiting between attempts
    this.sessionId = String(sessionId).trim();
    this.pin = String(pin).trim();
    this.reconnects = 0;
    this.serverLost = false;
    this._setState("connecting");
    const epoch = this.epoch;
    try {
      try {
        await this._open({ force });
      } catch (err) {
        // Once more when only the WebRTC connection did not come up: a lost check or a browser that stalled
        // gets through the second time, and a blocked network fails the same way again.
        if (!(err instanceof ConnectError && err.kind === "no-media") || epoch !== this.epoch) throw err;
        await this._open({ force });
      }
    } catch (err) {
      const failure = classify(err, this.sessionId);
      this._setState("idle", { error: failure });
      throw failure;
    }
    this._setState("connected");
  }

  async _open({ force }) {
    const epoch = this.epoch;
    const janus = await connect(this.base, { apisecret: this.apisecret, prefer: this.prefer });
    if (epoch !== this.epoch) {
      janus.destroy();
      throw new ConnectError("cancelled", "cancelled");
    }
    const link = { janus, pending: new Map(), channels: new Set(), timers: [] };
    this.link = link;
    janus.onlost = () => this._hiccup(link, "lost the connection to the server", { server: true });
    try {
      link.textroom = await janus.attach("janus.plugin.textroom");
      link.textroom.onhangup = () => this._hiccup(link, "control channel hung up");
      await this._openDataChannel(link);
      await this._join(link, force);
      link.streaming = await janus.attach("janus.plugin.streaming");
      link.streaming.onevent = (data) => this._streamingEvent(link, data);
      link.streaming.onhangup = () => this._hiccup(link, "video hung up");
      link.streaming.onslowlink = (e) => this._emit("slowlink", { lost: e.lost, uplink: e.uplink });
      await this._watch(link);
      if (epoch !== this.epoch || this.link !== link) throw new ConnectError("cancelled", "cancelled");
    } catch (err) {
      this._teardown(link);
      if (this.link === link) this.link = null;
      throw err;
    }
    this.lastPong = Date.now(); // not 0: a first pong later than 2 s must not look like a dead link (aPuppet bug)
    link.timers.push(setInterval(() => this._tick(link), PING_MS));
    this._tick(link);
  }

  _watchPeer(link, pc, what) {
    let grace;
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      clearTimeout(grace);
      if (s === "failed") this._hiccup(link, `${what} failed`);
      else if (s === "disconnected") grace = setTimeout(() => this._hiccup(link, `${what} interrupted`), ICE_GRACE_MS);
    };
  }

  async _openDataChannel(link) {
    const pc = new RTCPeerConnection(rtcConfig(link.janus));
    link.pcData = pc;
    pc.onicecandidate = (e) => link.textroom.trickle(e.candidate ? e.candidate.toJSON() : null);
    // Requests go out on our channel; the server answers on one it opens itself (the agent quirk, spec §3.1),
    // so every channel is listened to.
    const channel = pc.createDataChannel("JanusDataChannel", { ordered: true });
    link.channel = channel;
    const listen = (ch) => {
      link.channels.add(ch);
      ch.onmessage = (e) => this._roomMessage(link, e.data);
    };
    listen(channel);
    pc.ondatachannel = (e) => listen(e.channel);
    const opened = new Promise((resolve) => {
      channel.onopen = resolve;
    });
    channel.onclose = () => this._hiccup(link, "control channel closed");
    this._watchPeer(link, pc, "control connection");

    const offer = link.textroom.waitFor((data, jsep) => jsep?.type === "offer" || data.error_code);
    await link.textroom.message({ request: "setup", room: this.sessionId }); // a cluster places it by the room
    const { data, jsep } = await offer;
    if (!jsep) throw new JanusError(data.error_code, data.error);
    await pc.setRemoteDescription(jsep);
    await pc.setLocalDescription(await pc.createAnswer());
    await link.textroom.message({ request: "ack" }, { type: "answer", sdp: pc.localDescription.sdp });
    try {
      await withTimeout(opened, WAIT_MS, "data channel");
    } catch (err) {
      if (!(err instanceof UnreachableError)) throw err;
      // The server answered every request: it is the WebRTC path to it (UDP) that did not come up.
      throw new ConnectError("no-media", NO_MEDIA_MESSAGE, err);
    }
  }

  _roomRequest(link, request) {
    const transaction = randomToken(6);
    const reply = new Promise((resolve, reject) => link.pending.set(transaction, { resolve, reject }));
    link.channel.send(JSON.stringify({ ...request, transaction }));
    return withTimeout(reply, WAIT_MS, request.textroom).finally(() => link.pending.delete(transaction));
  }

  async _join(link, force) {
    const room = this.sessionId;
    let reply;
    for (let attempt = 0; ; attempt++) {
      link.username = `admin:${randomToken(4)}`;
      try {
        reply = await this._roomRequest(link, {
          textroom: "join",
          room,
          pin: this.pin,
          username: link.username,
          display: "Support",
        });
        break;
      } catch (err) {
        // 420: someone already uses this random name; draw another.
        if (!(err instanceof JanusError && err.code === 420 && attempt < 3)) throw err;
      }
    }
    this.ownNames.add(link.username);
    link.joined = true;
    const people = reply.participants ?? [];
    const isDevice = (p) => String(p.username).toLowerCase().startsWith("device:");
    const device = people.find(isDevice) ?? (people.length === 1 ? people[0] : null);
    const admins = people.filter((p) => String(p.username).startsWith("admin:") && !this.ownNames.has(p.username));
    if (!force && admins.length > 0) {
      await this._roomRequest(link, { textroom: "leave", room }).catch(() => {});
      throw new ConnectError(
        "busy",
        "The device is busy: another support person is connected to it. Connect anyway to share the session.",
      );
    }
    if (!device) {
      await this._roomRequest(link, { textroom: "leave", room }).catch(() => {});
      throw new ConnectError("no-device", `Session ${room} exists, but its device is not connected to it.`);
    }
    this.device = { username: device.username, name: device.display || device.username.replace(/^device:/i, "") };
    this._emit("device", this.device);
  }

  async _watch(link) {
    const pc = new RTCPeerConnection(rtcConfig(link.janus));
    link.pcVideo = pc;
    pc.onicecandidate = (e) => link.streaming.trickle(e.candidate ? e.candidate.toJSON() : null);
    pc.ontrack = (e) => this._emit("track", { stream: e.streams[0] ?? new MediaStream([e.track]) });
    this._watchPeer(link, pc, "video connection");
    let offer;
    for (let attempt = 0; ; attempt++) {
      const event = link.streaming.waitFor((data, jsep) => jsep?.type === "offer" || data.error_code);
      const sync = await link.streaming.message({ request: "watch", id: this.sessionId, pin: this.pin });
      const { data, jsep } = sync?.error_code ? { data: sync } : await event;
      if (jsep) {
        offer = jsep;
        break;
      }
      // The agent creates its room before its mountpoint: a moment after the join the video may not exist yet.
      if (data.error_code === 455 && attempt < WATCH_RETRIES) {
        await sleep(1000);
        continue;
      }
      throw new JanusError(data.error_code, data.error);
    }
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(await pc.createAnswer());
    await link.streaming.message({ request: "start" }, { type: "answer", sdp: pc.localDescription.sdp });
  }

  _streamingEvent(link, data) {
    if (link !== this.link) return;
    const status = data.result?.status;
    // With a reason, the server ended it on purpose (an operator, a time limit) and says so: no guessing.
    if (status === "stopped" && data.reason) this._end(link, "closed", data.message, data.reason);
    else if (status === "stopped") this._ended(link, "closed", "The session was closed on the device.");
    if (status) this._emit("stream", { status });
  }

  _roomMessage(link, text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    const waiter = msg.transaction && link.pending.get(msg.transaction);
    if (waiter && (msg.textroom === "success" || msg.textroom === "error")) {
      if (msg.textroom === "success") waiter.resolve(msg);
      else waiter.reject(new JanusError(msg.error_code, msg.error));
      return;
    }
    if (link !== this.link || !link.joined) return;
    const deviceName = this.device?.username;
    switch (msg.textroom) {
      case "message":
        // Only the device speaks for the device: another viewer's text is not a clipboard or resolution.
        if (msg.from === deviceName) this._deviceSays(link, msg.text);
        break;
      case "leave":
        if (msg.username === deviceName) this._ended(
            link,
            "device-left",
            "The device disconnected: it may have lost its network, or its app was stopped.",
          );
        break;
      case "destroyed":
        if (msg.reason) this._end(link, "closed", msg.message, msg.reason);
        else this._ended(link, "closed", "The session was closed on the device.");
        break;
      case "kicked":
        if (msg.username === link.username) {
          this._end(link, "closed", msg.message ?? "You were removed from the session.", msg.reason);
        }
        break;
      default:
    }
  }

  _deviceSays(link, text) {
    const cmd = commands.parse(text);
    switch (cmd.verb) {
      case "pong":
        if (this.pings.delete(cmd.timestamp)) {
          this.rtt = Date.now() - cmd.timestamp;
          this.lastPong = Date.now();
          this._emit("rtt", { rtt: this.rtt });
        }
        break;
      case "resolution":
        this.resolution = cmd;
        this._emit("resolution", cmd);
        break;
      case "copy":
        this._emit("copy", { text: cmd.text });
        break;
      default:
    }
  }

  _tick(link) {
    if (link !== this.link || this.state !== "connected") return;
    const silence = Date.now() - this.lastPong;
    if (silence > PONG_DEAD_MS) {
      this._hiccup(link, "the device stopped answering");
      return;
    }
    this._emit("health", { slow: silence > PONG_WARN_MS, silence });
    const ts = Date.now();
    this.pings.add(ts);
    if (this.pings.size > 32) this.pings.delete(this.pings.values().next().value);
    this.send(commands.ping(ts));
  }

  /** Send one command text to the device; false when there is no live control channel. */
  send(text) {
    const link = this.link;
    if (!link?.joined || link.channel.readyState !== "open") return false;
    // ack:false: no success reply per gesture (Janus and old agents honour it; the agent does the same).
    const msg = { textroom: "message", room: this.sessionId, text, ack: false, transaction: randomToken(6) };
    link.channel.send(JSON.stringify(msg));
    return true;
  }

  /**
   * The room or the video ended. A device ending its session and a server shutting down look the same at first
   * (the server closes rooms and mountpoints before its sockets): wait a moment, and if the server connection is
   * lost meanwhile, `_hiccup` takes over and says what really happened. A phone whose connection drops while
   * its agent still reaches the server causes the device's `leave`, the video's `stopped` and the room's
   * `destroyed` within milliseconds, in any order: the `leave` tells what happened, whichever came first (a
   * session ended on purpose destroys the room with the device still in it, so no `leave` comes).
   */
  _ended(link, state, message) {
    if (link !== this.link) return;
    if (!link.ending || state === "device-left") link.outcome = { state, message };
    if (link.ending) return;
    link.ending = setTimeout(() => this._end(link, link.outcome.state, link.outcome.message), END_GRACE_MS);
  }

  /** `reason`: why the server ended the session ("operator", "time limit", "idle"), when it said so. */
  _end(link, state, message, reason) {
    if (link !== this.link) return;
    this._teardown(link, { polite: false });
    this.link = null;
    this._setState(state, { message, reason });
  }

  _hiccup(link, reason, { server = false } = {}) {
    if (link !== this.link || link.closing) return;
    if (this.state !== "connected") {
      // Still connecting: the attempt fails on its own and the caller decides.
      return;
    }
    if (link.ending) {
      // The session is ending: its peers going down is part of that, unless the server itself went away.
      if (!server) return;
      clearTimeout(link.ending);
      reason = "the server stopped or restarted";
    }
    if (server) this.serverLost = true;
    this._teardown(link);
    this.link = null;
    this._reconnectLoop(reason);
  }

  async _reconnectLoop(reason) {
    const epoch = this.epoch;
    let delay = 500;
    for (let attempt = 1; ; attempt++) {
      this.reconnects = attempt;
      this._setState("reconnecting", { reason, attempt, serverLost: this.serverLost });
      await sleep(delay);
      if (this.epoch !== epoch || this.state !== "reconnecting") return;
      try {
        await this._open({ force: true });
        this.serverLost = false;
        this._setState("connected", { reconnected: true });
        return;
      } catch (err) {
        if (this.epoch !== epoch || this.state !== "reconnecting") return;
        const failure = classify(err, this.sessionId);
        if (failure.kind === "unreachable") {
          this.serverLost = true;
          reason = "the server cannot be reached: it stopped or is restarting, or the network is down";
          delay = Math.min(delay * 2, 5000);
          continue;
        }
        if (this.serverLost && (failure.kind === "unknown-session" || failure.kind === "no-device")) {
          // A restarted server knows no session until the device reconnects to it, with the same ID.
          reason = `the server is back; waiting for the device to reconnect session ${this.sessionId}`;
          delay = Math.min(delay * 2, 5000);
          continue;
        }
        if (FINAL.has(failure.kind)) {
          this._setState(failure.kind === "unknown-session" ? "closed" : "idle", {
            message: failure.kind === "unknown-session" ? "The session no longer exists." : failure.message,
            error: failure,
          });
          return;
        }
        reason = failure.message;
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  _teardown(link, { polite = true } = {}) {
    if (!link || link.closing) return;
    link.closing = true;
    clearTimeout(link.ending);
    if (link === this.link) this._emit("ending"); // last chance to keep the picture before the track ends
    for (const t of link.timers) clearInterval(t);
    for (const { reject } of link.pending.values()) reject(new ConnectError("cancelled", "cancelled"));
    link.pending.clear();
    if (polite && link.joined && link.channel?.readyState === "open") {
      try {
        link.channel.send(JSON.stringify({ textroom: "leave", room: this.sessionId, transaction: randomToken(6) }));
      } catch {
        // channel going away anyway
      }
    }
    for (const ch of link.channels) ch.onclose = ch.onmessage = null;
    for (const pc of [link.pcData, link.pcVideo]) {
      if (!pc) continue;
      pc.onconnectionstatechange = null;
      pc.close();
    }
    link.janus.onlost = () => {};
    return link.janus.destroy();
  }

  /** Leave the session on purpose; nothing reconnects afterwards. */
  async disconnect() {
    this.epoch++;
    const link = this.link;
    this.link = null;
    if (link && !link.closing) {
      // The device stops sharing on our `leave`: wait for the server to take it before the socket goes.
      if (link.joined && link.channel?.readyState === "open") {
        await withTimeout(this._roomRequest(link, { textroom: "leave", room: this.sessionId }), 2000, "leave").catch(
          () => {},
        );
      }
      if (link.streaming) await link.streaming.message({ request: "stop" }).catch(() => {});
      // Hang up both peer connections before the session goes, as janus.js does.
      await Promise.all([link.textroom?.hangup(), link.streaming?.hangup()]);
      link.joined = false;
      await this._teardown(link);
    }
    this._setState("idle");
  }

  /** The page is going away: tell the server at once (sendBeacon over HTTP, a closing socket over WS). */
  pageExit() {
    const link = this.link;
    this.link = null;
    this.epoch++;
    if (!link) return;
    link.closing = true;
    for (const pc of [link.pcData, link.pcVideo]) pc?.close();
    link.janus.destroy({ beacon: true });
  }

  /** The video peer connection, for statistics. */
  get videoPeer() {
    return this.link?.pcVideo ?? null;
  }
}
