/**
 * Bitrate, frame rate and resolution of the incoming video, from the peer connection's `getStats()`
 * (the same numbers chrome://webrtc-internals shows), sampled once a second.
 */

export class VideoStats {
  constructor() {
    this.previous = null;
  }

  /** One sample: `{bitrate (bit/s), fps, width, height, framesDecoded, packetsLost}` or null without video. */
  async sample(pc) {
    if (!pc) return null;
    let inbound = null;
    const report = await pc.getStats();
    report.forEach((r) => {
      if (r.type === "inbound-rtp" && (r.kind === "video" || r.mediaType === "video")) inbound = r;
    });
    if (!inbound) return null;
    const now = inbound.timestamp;
    const prev = this.previous;
    this.previous = { now, bytes: inbound.bytesReceived ?? 0, frames: inbound.framesDecoded ?? 0 };
    if (!prev || now <= prev.now) return null;
    const seconds = (now - prev.now) / 1000;
    return {
      bitrate: (8 * ((inbound.bytesReceived ?? 0) - prev.bytes)) / seconds,
      fps: inbound.framesPerSecond ?? ((inbound.framesDecoded ?? 0) - prev.frames) / seconds,
      width: inbound.frameWidth ?? 0,
      height: inbound.frameHeight ?? 0,
      framesDecoded: inbound.framesDecoded ?? 0,
      packetsLost: inbound.packetsLost ?? 0,
    };
  }

  reset() {
    this.previous = null;
  }
}

export function formatBitrate(bps) {
  if (!Number.isFinite(bps)) return "–";
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  return `${Math.round(bps / 1e3)} kbit/s`;
}
