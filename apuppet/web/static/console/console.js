/**
 * The operator console: log in with the admin secret, watch devices and viewers live (Server-Sent Events), end a
 * viewer's or a device's session, search the audit log, play and download recordings.
 *
 * The login lives in an HttpOnly cookie the page never sees; the CSRF token the server hands out with it goes
 * back in `X-Console-Token` with every POST. Everything shown comes from clients (device names, usernames), so
 * it is put in the page as text, never as HTML.
 */

const API = "/console/api";
const $ = (id) => document.getElementById(id);
const views = { disabled: $("disabled-view"), login: $("login-view"), console: $("console-view") };

let csrf = "";
let live = null;
let latest = null;
/** Session tag → time until which its "end" button waits for a confirming second press. */
const confirming = new Map();
const CONFIRM_MS = 6000;
const audit = { offset: 0, limit: 25, total: 0 };

function show(view) {
  for (const [name, el] of Object.entries(views)) el.hidden = name !== view;
  document.body.dataset.view = view;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function notice(text, kind = "error") {
  const n = $("notice");
  n.textContent = text;
  n.className = `message ${kind}`;
}

const pad = (n) => String(n).padStart(2, "0");
function when(seconds) {
  if (!seconds) return "–";
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function span(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
}
function size(bytes) {
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(0)} kB`;
  if (bytes < 1e9) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

async function api(path, { method = "GET", body } = {}) {
  const headers = {};
  if (method !== "GET") headers["X-Console-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${API}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = {};
  try {
    data = await response.json();
  } catch {
    // a body that is not JSON (a proxy's error page): the status says enough
  }
  if (response.status === 401) {
    loggedOut("Your login ended. Log in again.");
    throw new Error(data.error ?? "log in first");
  }
  if (!response.ok) throw new Error(data.error ?? `HTTP ${response.status}`);
  return data;
}

// -- login ------------------------------------------------------------------------------------------------
async function start() {
  const response = await fetch(`${API}/login`, { credentials: "same-origin", cache: "no-store" });
  const data = await response.json().catch(() => ({}));
  if (response.status === 403 && data.disabled) {
    $("disabled-text").textContent = data.error;
    show("disabled");
    return;
  }
  if (response.ok) {
    enter(data);
    return;
  }
  loggedOut("");
}

function loggedOut(message) {
  if (live) live.close();
  live = null;
  csrf = "";
  show("login");
  const m = $("login-message");
  m.textContent = message;
  m.className = "message error";
  $("secret").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const secret = $("secret").value;
  const message = $("login-message");
  $("login").disabled = true;
  try {
    const response = await fetch(`${API}/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ secret }),
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      message.textContent =
        response.status === 429 ? `Too many wrong secrets: ${data.error}.` : `Refused: ${data.error ?? response.status}.`;
      message.className = "message error";
      $("secret").select();
      return;
    }
    $("secret").value = "";
    message.textContent = "";
    enter(data);
  } catch (err) {
    message.textContent = `The server cannot be reached (${err.message}).`;
    message.className = "message error";
  } finally {
    $("login").disabled = false;
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await api("/logout", { method: "POST" });
  } catch {
    // logged out anyway below
  }
  loggedOut("Logged out.");
  $("login-message").className = "message ok";
});

function enter(data) {
  csrf = data.csrf;
  const limits = data.limits ?? {};
  const parts = [];
  if (limits.max_session_minutes) parts.push(`sessions end after ${limits.max_session_minutes} min`);
  if (limits.viewer_idle_minutes) parts.push(`idle viewers leave after ${limits.viewer_idle_minutes} min`);
  $("limits").textContent = parts.length ? `Limits: ${parts.join(", ")}.` : "No session time limits.";
  show("console");
  notice("", "ok");
  connectLive();
  loadAudit();
  loadRecordings();
}

// -- live view --------------------------------------------------------------------------------------------
function connectLive() {
  if (live) live.close();
  const state = $("live-state");
  live = new EventSource(`${API}/live`);
  live.addEventListener("open", () => {
    state.textContent = "live";
    state.className = "live on";
  });
  live.addEventListener("state", (event) => {
    latest = JSON.parse(event.data);
    render(latest);
  });
  live.addEventListener("logout", () => loggedOut("Your login ended. Log in again."));
  live.addEventListener("error", async () => {
    state.textContent = "reconnecting…";
    state.className = "live off";
    if (live?.readyState === EventSource.CLOSED) {
      // Refused (401 after a logout or expiry) or the server is gone: ask which.
      try {
        await api("/login");
        setTimeout(connectLive, 2000);
      } catch {
        // api() showed the login form on 401; a server that is down is retried by the next page load
      }
    }
  });
}

function render(state) {
  const list = $("device-list");
  const focused = document.activeElement?.dataset?.key;
  const now = state.time;
  const devices = state.devices ?? [];
  $("device-count").textContent = devices.length ? `(${devices.length})` : "";
  $("no-devices").hidden = devices.length > 0;
  const missing = state.unreachable ?? [];
  if (missing.length) notice(`Not answering, left out of the view: node ${missing.join(", ")}.`);
  list.replaceChildren(...devices.map((d) => deviceCard(d, now)));
  renderActivity(state.activity ?? []);
  if (focused) document.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
}

function deviceCard(device, now) {
  const facts = [`Session ID ${device.id}`, `since ${when(device.since)} (${span(now - device.since)})`];
  if (device.node) facts.push(`on node ${device.node}`);
  if (device.address) facts.push(`from ${device.address}`);
  if (device.video) {
    facts.push(device.video.age_ms === null || device.video.age_ms === undefined
      ? "no video yet"
      : `video ${device.video.age_ms < 3000 ? "live" : `silent for ${span(device.video.age_ms / 1000)}`}`);
  } else {
    facts.push("no video");
  }
  if (device.room) facts.push(`room: ${device.room.participants} in it`);
  const close = device.session
    ? endButton(device.session, "Close device session", device.ending, device.node)
    : null;
  const card = el(
    "article",
    { className: "device", dataset: { device: device.id } },
    el("header", {}, el("h3", { textContent: device.name }), close),
    el("p", { className: "facts", textContent: facts.join(" · ") }),
  );
  if (!device.viewers.length) {
    card.append(el("p", { className: "muted viewers-none", textContent: "No viewer." }));
    return card;
  }
  const rows = device.viewers.map((v) =>
    el(
      "tr",
      { dataset: { viewer: v.session ?? "" } },
      el("td", { textContent: v.name || v.username || "?" }),
      el("td", { textContent: v.address || "?" }),
      el("td", { textContent: `${when(v.since)} (${span(now - v.since)})` }),
      el("td", { textContent: v.transport === "websocket" ? "WebSocket" : v.transport ? "HTTP long poll" : "–" }),
      el("td", { textContent: v.video ?? (v.in_room ? "controls only" : "–") }),
      el("td", { textContent: v.last_input ? `${span(now - v.last_input)} ago` : "none yet" }),
      el("td", {}, v.session ? endButton(v.session, "End session", v.ending, device.node) : null),
    ),
  );
  card.append(
    el(
      "table",
      { className: "viewers" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["Viewer", "Address", "Since", "Transport", "Video", "Last input", ""].map((h) =>
            el("th", { scope: "col", textContent: h }),
          ),
        ),
      ),
      el("tbody", {}, ...rows),
    ),
  );
  return card;
}

function endButton(session, label, ending, node) {
  const key = `end:${session}`;
  if (ending) return el("span", { className: "muted", textContent: `ending (${ending})` });
  const armed = (confirming.get(session) ?? 0) > Date.now();
  const button = el("button", {
    type: "button",
    className: armed ? "confirm" : "danger",
    textContent: armed ? "Press again to confirm" : label,
    dataset: { key, session, action: "end" },
  });
  button.setAttribute("aria-label", armed ? `Confirm: ${label.toLowerCase()}` : label);
  button.addEventListener("click", () => endSession(session, button, node));
  return button;
}

async function endSession(session, button, node) {
  if ((confirming.get(session) ?? 0) <= Date.now()) {
    // Two presses, not a dialog: a dialog takes the keyboard away and a stray Enter must not end a session.
    confirming.set(session, Date.now() + CONFIRM_MS);
    setTimeout(() => latest && render(latest), CONFIRM_MS + 50);
    if (latest) render(latest);
    return;
  }
  confirming.delete(session);
  button.disabled = true;
  try {
    // The tag is the session's on its node (a cluster's nodes each tag their own): the end goes there.
    const where = node ? `?node=${encodeURIComponent(node)}` : "";
    const result = await api(`/sessions/${encodeURIComponent(session)}/end${where}`, { method: "POST" });
    notice(result.device ? "The device's session was closed." : "The viewer's session was ended.", "ok");
  } catch (err) {
    notice(`Could not end the session: ${err.message}.`);
    button.disabled = false;
  }
}

function renderActivity(items) {
  const list = $("activity-list");
  const lines = items
    .slice()
    .reverse()
    .map((item) => {
      const { time, event, ...fields } = item;
      const detail = Object.entries(fields)
        .map(([k, v]) => `${k}=${v}`)
        .join(" ");
      return el("li", { textContent: `${when(time)} ${event} ${detail}` });
    });
  list.replaceChildren(...lines);
}

// -- audit log --------------------------------------------------------------------------------------------
function seconds(input) {
  return input.value ? String(new Date(input.value).getTime() / 1000) : "";
}

async function loadAudit() {
  const params = new URLSearchParams({ offset: String(audit.offset), limit: String(audit.limit) });
  const filters = {
    device: $("audit-device").value.trim(),
    address: $("audit-address").value.trim(),
    since: seconds($("audit-since")),
    until: seconds($("audit-until")),
  };
  for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);
  const status = $("audit-status");
  let data;
  try {
    data = await api(`/audit?${params}`);
  } catch (err) {
    status.textContent = `The audit log could not be read: ${err.message}.`;
    return;
  }
  audit.total = data.total;
  if (!data.enabled) {
    status.textContent = "This server keeps no audit log (it runs without a config file, as the demo does).";
  } else {
    status.textContent = data.total ? `${data.total} session${data.total === 1 ? "" : "s"} found.` : "No session found.";
    if (data.recordings_error) status.textContent += ` Recordings not shown: ${data.recordings_error}.`;
  }
  const rows = data.records.map((r) =>
    el(
      "tr",
      {},
      el("td", { textContent: when(r.started) }),
      el("td", { textContent: r.ended ? span(r.ended - r.started) : "ongoing" }),
      el("td", { textContent: r.device ? `${r.device} (${r.room})` : r.room }),
      el("td", { textContent: r.viewer }),
      el("td", { textContent: r.address ?? "?" }),
      el("td", { textContent: r.reason ?? "" }),
      el("td", {}, r.recording ? playButton(r.recording, `Play the recording of ${r.viewer}'s session`) : "–"),
    ),
  );
  $("audit-table").tBodies[0].replaceChildren(...rows);
  const pages = Math.max(1, Math.ceil(data.total / audit.limit));
  $("audit-page").textContent = `page ${Math.floor(audit.offset / audit.limit) + 1} of ${pages}`;
  $("audit-prev").disabled = audit.offset === 0;
  $("audit-next").disabled = audit.offset + audit.limit >= data.total;
}

$("audit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  audit.offset = 0;
  loadAudit();
});
$("audit-prev").addEventListener("click", () => {
  audit.offset = Math.max(0, audit.offset - audit.limit);
  loadAudit();
});
$("audit-next").addEventListener("click", () => {
  audit.offset += audit.limit;
  loadAudit();
});

// -- recordings -------------------------------------------------------------------------------------------
const recordingUrl = (name) => `${API}/recordings/${encodeURIComponent(name)}`;

function playButton(name, label) {
  const button = el("button", { type: "button", textContent: "Play", dataset: { play: name } });
  button.setAttribute("aria-label", label);
  button.addEventListener("click", () => play(name));
  return button;
}

function play(name) {
  const player = $("player");
  player.src = recordingUrl(name);
  $("player-caption").textContent = name;
  $("player-box").hidden = false;
  player.focus();
  player.play().catch(() => {
    // autoplay refused: the controls are there
  });
}

async function loadRecordings() {
  const status = $("recordings-status");
  let data;
  try {
    data = await api("/recordings");
  } catch (err) {
    status.textContent = `Recordings could not be listed: ${err.message}.`;
    return;
  }
  status.textContent = data.recordings.length
    ? `${data.recordings.length} recording${data.recordings.length === 1 ? "" : "s"}.`
    : "No recording (record_sessions: true in config.yaml records watched devices).";
  const rows = data.recordings.map((r) =>
    el(
      "tr",
      { dataset: { recording: r.name } },
      el("td", { textContent: when(r.started) }),
      el("td", { textContent: r.device }),
      el("td", { textContent: span(r.duration) }),
      el("td", { textContent: size(r.size) }),
      el("td", { textContent: r.complete ? "complete" : "being written or cut short" }),
      el(
        "td",
        {},
        playButton(r.name, `Play ${r.name}`),
        " ",
        el("a", { href: `${recordingUrl(r.name)}?download=1`, download: r.name.replace(/\.part$/, ""), textContent: "Download" }),
      ),
    ),
  );
  $("recordings-table").tBodies[0].replaceChildren(...rows);
}

$("recordings-refresh").addEventListener("click", () => loadRecordings());

window.apuppetConsole = { render: () => latest && render(latest), loadAudit, loadRecordings };
start();
