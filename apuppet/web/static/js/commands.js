/**
 * The remote-control grammar of aPuppet agents (spec §5), mirrored from apuppet/agent/commands.py.
 *
 * Commands are single lines of comma-separated fields, so free text (`key`, `paste`, `copy`) is escaped:
 * every `%` becomes `%25` and every `,` becomes `%2C`. aPuppet's web-admin escaped only the first of each,
 * which garbled any text with two commas; old agents ignore `key`/`paste` anyway, so the fix costs nothing.
 * Decoding turns only `%25`/`%2C` back in one pass, which also reads the old first-only escaping.
 */

/** Keys besides single characters that agents understand (aPuppet's web-admin forwarded exactly these). */
export const NAMED_KEYS = new Set(["Backspace", "Delete", "Enter", "ArrowLeft", "ArrowRight", "Home", "End"]);
export const GLOBAL_ACTIONS = ["back", "home", "recents", "notifications"];

export function escapeText(text) {
  return String(text).replaceAll("%", "%25").replaceAll(",", "%2C");
}

export function unescapeText(text) {
  return String(text).replace(/%(25|2c)/gi, (_, code) => (code === "25" ? "%" : ","));
}

const int = (value) => Math.round(Number(value));

/** Agents parse with Java's Integer.parseInt: any fraction or NaN would make them drop the gesture. */
function coords(...values) {
  return values.map((v) => {
    const n = int(v);
    if (!Number.isFinite(n)) throw new RangeError(`not a coordinate: ${v}`);
    return n;
  });
}

export function tap(x, y, durationMs) {
  return ["tap", ...coords(x, y, Math.max(1, durationMs))].join(",");
}

export function swipe(x1, y1, x2, y2, durationMs) {
  // aPuppet clamps negative end points to 0; a stroke ending left of or above the frame still lands on it.
  const [a, b, c, d, t] = coords(x1, y1, x2, y2, Math.max(1, durationMs));
  return ["swipe", a, b, Math.max(0, c), Math.max(0, d), t].join(",");
}

export function key(name) {
  return `key,${escapeText(name)}`;
}

export function paste(text) {
  return `paste,${escapeText(text)}`;
}

export function ping(timestamp) {
  return `ping,${int(timestamp)}`;
}

/** True for the keys worth forwarding: printable characters and the named editing keys. */
export function forwardableKey(event) {
  if (event.ctrlKey || event.altKey || event.metaKey) return false;
  return [...event.key].length === 1 || NAMED_KEYS.has(event.key);
}

/**
 * Parse a device → viewer message into `{verb, ...}`; unknown verbs come back as `{verb: "unknown", text}` so a
 * newer agent's extensions never break this page.
 */
export function parse(text) {
  const raw = String(text);
  const comma = raw.indexOf(",");
  const verb = (comma < 0 ? raw : raw.slice(0, comma)).trim().toLowerCase();
  const rest = comma < 0 ? "" : raw.slice(comma + 1);
  const fields = rest === "" ? [] : rest.split(",");
  switch (verb) {
    case "pong": {
      const ts = Number(fields[0]);
      return Number.isFinite(ts) ? { verb, timestamp: ts } : { verb: "unknown", text: raw };
    }
    case "streamingvideoresolution": {
      const [w, h, r] = fields.map((f) => Number.parseInt(f, 10));
      if (!(w > 0 && h > 0)) return { verb: "unknown", text: raw };
      const rotation = Number.isFinite(r) ? (((Math.round(r / 90) * 90) % 360) + 360) % 360 : 0;
      return { verb: "resolution", width: w, height: h, rotation };
    }
    case "copy":
      return { verb, text: unescapeText(rest) };
    case "ping":
      return { verb, timestamp: fields[0] ?? "" };
    default:
      return { verb: "unknown", text: raw };
  }
}
