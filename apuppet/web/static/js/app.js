/**
 * The page: login form, remote screen, device buttons, keyboard and clipboard, status bar.
 * Everything that speaks to the server lives in remote.js; this module only turns its events into what the
 * support person sees, and their input into commands.
 */

import * as commands from "./commands.js";
import { fit } from "./geometry.js";
import { GestureInput } from "./gestures.js";
import { Remote } from "./remote.js";
import { formatBitrate, VideoStats } from "./stats.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const ui = {
  loginView: $("login-view"),
  remoteView: $("remote-view"),
  form: $("login-form"),
  session: $("session-id"),
  password: $("password"),
  secret: $("api-secret"),
  advanced: $("advanced"),
  message: $("login-message"),
  connectButton: $("connect"),
  anyway: $("connect-anyway"),
  stage: $("stage"),
  video: $("video"),
  marks: $("marks"),
  overlay: $("overlay"),
  overlayTitle: $("overlay-title"),
  overlayText: $("overlay-text"),
  deviceName: $("device-name"),
  state: $("st-state"),
  rtt: $("st-rtt"),
  bitrate: $("st-bitrate"),
  fps: $("st-fps"),
  resolution: $("st-resolution"),
  transport: $("st-transport"),
  /** What drives the device: useless, and so disabled, whenever there is no live connection. */
  deviceControls: [...document.querySelectorAll("[data-command], #text-form input, #text-form button")],
};

const remote = new Remote({
  // The API sits next to the page's folder (`<prefix>/janus` for `<prefix>/web-admin/`), so a reverse proxy
  // may put both under a path prefix.
  base: new URL("../", location.href).href,
  apisecret: params.get("apisecret") ?? localStorage.getItem("apuppet.apisecret") ?? "",
  prefer: params.get("transport") ?? "",
});
/**
 * Optional `settings.json` next to the page, like aPuppet's settings.js: `{"apisecret": "…"}` when the server
 * publishes its API secret to its own web-admin. Missing is fine.
 */
const serverSettings = fetch("settings.json", { cache: "no-store" })
  .then((r) => (r.ok ? r.json() : {}))
  .catch(() => ({}));
const stats = new VideoStats();
let rotation = 0; // the view's own extra turn (Rotate button), on top of what the device announces
let layout = null;

// -- login ----------------------------------------------------------------------------------------------------
ui.session.value = params.get("session") ?? params.get("sessionId") ?? "";
ui.password.value = params.get("pin") ?? "";
ui.secret.value = remote.apisecret;
// The password must not linger in the address bar, history or a screenshot of the page.
if (params.has("pin") || params.has("apisecret")) {
  params.delete("pin");
  params.delete("apisecret");
  history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
}
(ui.session.value ? (ui.password.value ? ui.connectButton : ui.password) : ui.session).focus();

function showMessage(text, kind = "error") {
  ui.message.textContent = text;
  ui.message.className = `message ${kind}`;
}

async function login({ force = false } = {}) {
  const sessionId = ui.session.value.trim();
  const pin = ui.password.value.trim();
  if (!sessionId || !pin) {
    showMessage(sessionId ? "Enter the password shown on the device." : "Enter the Session ID shown on the device.");
    (sessionId ? ui.password : ui.session).focus();
    return;
  }
  const typed = ui.secret.value.trim();
  remote.apisecret = typed || (await serverSettings).apisecret || "";
  if (typed) localStorage.setItem("apuppet.apisecret", typed);
  ui.connectButton.disabled = true;
  ui.anyway.hidden = true;
  showMessage("Connecting…", "info");
  try {
    await remote.connect(sessionId, pin, { force });
    showMessage("");
    showRemote();
  } catch (err) {
    showMessage(err.message);
    document.body.dataset.error = err.kind;
    if (err.kind === "busy") ui.anyway.hidden = false;
    if (err.kind === "secret") ui.advanced.open = true;
    const field = { "wrong-password": ui.password, "unknown-session": ui.session, secret: ui.secret }[err.kind];
    field?.focus();
    field?.select();
  } finally {
    ui.connectButton.disabled = false;
  }
}

ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  login();
});
ui.anyway.addEventListener("click", () => login({ force: true }));

function showRemote() {
  delete document.body.dataset.error;
  ui.loginView.hidden = true;
  ui.remoteView.hidden = false;
  ui.overlay.hidden = true;
  document.title = `${remote.device?.name ?? "Device"} – aPuppet`;
  ui.stage.focus({ preventScroll: true });
  relayout();
}

function showLogin() {
  ui.remoteView.hidden = true;
  ui.loginView.hidden = false;
  ui.video.srcObject = null;
  document.title = "aPuppet remote control";
  ui.password.focus();
}

// -- remote events ------------------------------------------------------------------------------------------
const STATE_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  "device-left": "Device left",
  closed: "Session closed",
  idle: "Disconnected",
};

/** "lost the link" / "The server cannot be reached." → "Lost the link." / "The server cannot be reached." */
function sentence(text) {
  const t = String(text ?? "").trim();
  if (!t) return "";
  return `${t[0].toUpperCase()}${t.slice(1)}${/[.!?]$/.test(t) ? "" : "."}`;
}

function overlay(title, text, { busy = false } = {}) {
  ui.overlayTitle.textContent = title;
  ui.overlayText.textContent = text;
  ui.overlay.classList.toggle("busy", busy);
  ui.overlay.hidden = false;
  if (!busy) $("overlay-retry").focus();
}

function clearFigures() {
  ui.rtt.textContent = ui.bitrate.textContent = ui.fps.textContent = "–";
  ui.fps.parentElement.title = "Frames per second";
}

remote.addEventListener("state", ({ detail }) => {
  const { state } = detail;
  document.body.dataset.state = state;
  for (const control of ui.deviceControls) control.disabled = state !== "connected";
  if (state !== "connected") clearFigures(); // no stale figures under a dialog
  ui.state.textContent = STATE_TEXT[state] ?? state;
  ui.state.className = `state ${state}`;
  ui.transport.textContent = remote.transport === "websocket" ? "WebSocket" : remote.transport ? "HTTP long poll" : "";
  if (ui.remoteView.hidden) return;
  switch (state) {
    case "connected":
      ui.overlay.hidden = true;
      stats.reset();
      if (detail.reconnected) toast("Reconnected.");
      break;
    case "reconnecting":
      overlay(
        detail.serverLost ? "The server stopped or restarted" : "Reconnecting…",
        `${sentence(detail.reason)} Trying again (attempt ${detail.attempt})…`,
        { busy: true },
      );
      break;
    case "device-left":
      overlay("The device left the session", detail.message ?? "");
      break;
    case "closed":
      document.body.dataset.endReason = detail.reason ?? "";
      overlay(
        detail.reason ? "Session ended" : "Session closed",
        detail.message ?? "The session was closed on the device.",
      );
      break;
    case "idle":
      if (detail.error) overlay("Disconnected", detail.message ?? detail.error.message);
      break;
    default:
  }
});

remote.addEventListener("device", ({ detail }) => {
  ui.deviceName.textContent = detail.name;
});

// While reconnecting or after the end, the last picture stays (dimmed) instead of a black box.
remote.addEventListener("ending", () => {
  const { videoWidth: w, videoHeight: h } = ui.video;
  if (!w) return;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").drawImage(ui.video, 0, 0);
  ui.video.poster = canvas.toDataURL("image/png");
  ui.video.srcObject = null;
  ui.video.classList.add("frozen");
});

remote.addEventListener("track", ({ detail }) => {
  ui.video.classList.remove("frozen");
  ui.video.removeAttribute("poster");
  ui.video.srcObject = detail.stream;
  ui.video.play().catch(() => {});
});

remote.addEventListener("resolution", () => relayout());

remote.addEventListener("rtt", ({ detail }) => {
  ui.rtt.textContent = `${detail.rtt} ms`;
});

remote.addEventListener("health", ({ detail }) => {
  ui.state.classList.toggle("slow", detail.slow);
  ui.state.textContent = detail.slow
    ? `Connected – no answer from the device for ${Math.round(detail.silence / 1000)} s`
    : STATE_TEXT.connected;
});

remote.addEventListener("copy", ({ detail }) => copyToHost(detail.text));

let lastSlowLink = 0;
remote.addEventListener("slowlink", ({ detail }) => {
  // Janus reports packet loss on the video path; say it once in a while, not on every report.
  if (Date.now() - lastSlowLink < 10000) return;
  lastSlowLink = Date.now();
  toast(`Network problems: video packets are being lost${detail.lost ? ` (${detail.lost})` : ""}.`, "warn");
});

$("overlay-retry").addEventListener("click", async () => {
  overlay("Connecting…", "", { busy: true });
  try {
    await remote.connect(remote.sessionId, remote.pin, { force: true });
    showRemote();
  } catch (err) {
    overlay("Could not connect", err.message);
  }
});
$("overlay-back").addEventListener("click", async () => {
  await remote.disconnect();
  showLogin();
});

$("disconnect").addEventListener("click", async () => {
  await remote.disconnect();
  showLogin();
  showMessage("Disconnected.", "info");
});

window.addEventListener("pagehide", () => remote.pageExit());

// -- the picture --------------------------------------------------------------------------------------------
/** The frame size agents count pixels in: the decoded video's, else what the device announced. */
function frameSize() {
  if (ui.video.videoWidth) return { width: ui.video.videoWidth, height: ui.video.videoHeight };
  if (remote.resolution) return remote.resolution;
  return null;
}

function relayout() {
  const size = frameSize();
  const box = ui.stage.getBoundingClientRect();
  if (!size || !box.width) {
    layout = null;
    return;
  }
  const turn = ((remote.resolution?.rotation ?? 0) + rotation) % 360;
  layout = fit(box.width, box.height, size.width, size.height, turn);
  const s = layout.scale;
  const v = ui.video.style;
  v.width = `${size.width * s}px`;
  v.height = `${size.height * s}px`;
  v.left = `${(box.width - size.width * s) / 2}px`;
  v.top = `${(box.height - size.height * s) / 2}px`;
  v.transform = turn ? `rotate(${turn}deg)` : "";
  ui.resolution.textContent = `${size.width}×${size.height}`;
}

new ResizeObserver(relayout).observe(ui.stage);
ui.video.addEventListener("resize", relayout);
ui.video.addEventListener("loadedmetadata", relayout);

const send = (text) => {
  if (!remote.send(text)) toast("Not connected: the command was not sent.", "warn");
};
new GestureInput(ui.stage, () => layout, send, ui.marks);

for (const button of document.querySelectorAll("[data-command]")) {
  button.addEventListener("click", () => send(button.dataset.command));
}

$("rotate").addEventListener("click", () => {
  rotation = (rotation + 90) % 360;
  relayout();
});

$("fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else if (ui.remoteView.requestFullscreen) {
    ui.remoteView.requestFullscreen().catch(() => toast("Full screen is not available here.", "warn"));
  } else toast("Full screen is not available here.", "warn");
});

$("screenshot").addEventListener("click", () => {
  const size = frameSize();
  if (!size || !ui.video.videoWidth) {
    toast("No picture yet.", "warn");
    return;
  }
  const turn = layout?.rotation ?? 0;
  const sideways = turn % 180 !== 0;
  const canvas = document.createElement("canvas");
  canvas.width = sideways ? size.height : size.width;
  canvas.height = sideways ? size.width : size.height;
  const ctx = canvas.getContext("2d");
  ctx.translate(canvas.width / 2, canvas.height / 2);
  ctx.rotate((turn * Math.PI) / 180);
  ctx.drawImage(ui.video, -size.width / 2, -size.height / 2, size.width, size.height);
  canvas.toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
    a.download = `apuppet-${remote.sessionId}-${stamp}.png`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, "image/png");
});

// -- keyboard and clipboard ---------------------------------------------------------------------------------
ui.stage.addEventListener("keydown", (e) => {
  if (e.target !== ui.stage) return; // a button of the dialog over the picture: its keys are its own
  if (e.key === "r" && e.altKey) {
    $("rotate").click();
    return;
  }
  if (!commands.forwardableKey(e)) return;
  // Keys are forwarded only while the screen has focus, so the page's own fields and shortcuts keep working.
  e.preventDefault();
  send(commands.key(e.key));
});

ui.stage.addEventListener("paste", (e) => {
  if (e.target !== ui.stage) return;
  const text = e.clipboardData?.getData("text/plain");
  if (!text) return;
  e.preventDefault();
  send(commands.paste(text));
  toast(`Pasted ${text.length} character${text.length === 1 ? "" : "s"} to the device.`);
});

$("text-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("text-input");
  if (!input.value) return;
  send(commands.paste(input.value));
  input.value = "";
});

async function copyToHost(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied the device clipboard to this computer.");
  } catch {
    // Without focus, permission or HTTPS the async Clipboard API refuses: let the person copy it themselves.
    const box = toast("Device clipboard:", "warn", 15000);
    const field = document.createElement("input");
    field.readOnly = true;
    field.value = text;
    field.setAttribute("aria-label", "Text copied on the device");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Copy";
    button.addEventListener("click", () => {
      // navigator.clipboard is missing altogether on plain-HTTP LAN addresses: fail into the catch, not throw.
      Promise.resolve()
        .then(() => navigator.clipboard.writeText(text))
        .then(() => toast("Copied."))
        .catch(() => {
          field.select();
          toast("Press Ctrl+C to copy the selected text.", "warn");
        });
    });
    box.append(field, button);
  }
}

// -- toasts and status ------------------------------------------------------------------------------------------
function toast(text, kind = "info", ms = 4000) {
  const box = document.createElement("div");
  box.className = `toast ${kind}`;
  box.setAttribute("role", kind === "warn" ? "alert" : "status");
  const span = document.createElement("span");
  span.textContent = text;
  box.append(span);
  $("toasts").append(box);
  setTimeout(() => box.remove(), ms);
  return box;
}

setInterval(async () => {
  if (ui.remoteView.hidden) return;
  const sample = await stats.sample(remote.videoPeer).catch(() => null);
  if (!sample) return;
  if (remote.state !== "connected") return;
  ui.bitrate.textContent = formatBitrate(sample.bitrate);
  // Agents send frames only while the screen changes: no new frame under a picture means a still screen, not
  // broken video ("0 fps" read as the latter).
  const still = Math.round(sample.fps) === 0 && sample.framesDecoded > 0;
  ui.fps.textContent = still ? "still picture" : `${Math.round(sample.fps)} fps`;
  ui.fps.parentElement.title = still
    ? "The device sends no new frames while its screen does not change"
    : "Frames per second";
  if (ui.video.videoWidth) ui.resolution.textContent = `${ui.video.videoWidth}×${ui.video.videoHeight}`;
}, 1000);

// For tests and for the curious in the console.
window.apuppet = { remote, ui, layout: () => layout };
