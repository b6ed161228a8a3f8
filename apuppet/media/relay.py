"""The video relay of one mountpoint, sans-I/O: the device's RTP in, one rewritten RTP stream per viewer out.

Packets are forwarded as they arrive (no waiting for the rest of a frame), with SSRC, sequence number,
timestamp and payload type rewritten per viewer, as Janus does. Beside the forwarding path:

* an `H264Assembler` follows the stream (keyframes, SPS/PPS, loss, garbage) without delaying it;
* the packets since the start of the latest complete keyframe (the "GOP") are kept, so that a new viewer, or
  one that reports picture loss, gets that keyframe and what followed at once, timestamps squeezed so that
  the newest picture shows immediately;
* the marker bit of a packet that holds only parameter sets (the agent's SPS/PPS STAP-A) is cleared, so that
  browsers see the keyframe as one frame (spec §4.3);
* one source address is accepted (`latch.SourceLatch`: the creator's address first, never a stranger's
  early packets; no injection from other hosts afterwards).

The I/O adapters (`apuppet.media.ingest`, `apuppet.media.viewer`) give datagrams to `StreamRelay.feed` and
send what each `RelayViewer.sink` receives.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .h264 import NAL_FU_A, NAL_STAP_A, NON_VCL, AccessUnit, H264Assembler
from .latch import DEFAULT_GRACE, Address, SourceLatch, latchable
from .rtp import RtpPacket, is_rtcp, pack_header, seq_diff, ts_diff

#: Packets kept per viewer to answer NACKs: about 1 s of a 1.5 Mbit/s stream (5 s at the agent's default
#: 256 kbit/s). A NACK answered later than that brings a frame the viewer has already given up on (it asks for a
#: keyframe instead). An entry keeps its payload alive (shared with the GOP and the other viewers, not copied).
HISTORY_SIZE = 128
#: A sequence jump this large (or a new SSRC) is a restarted source, not loss.
RESTART_JUMP = 3000
#: Bound on the kept GOP; a longer one is dropped and new viewers wait for the next keyframe.
MAX_GOP_PACKETS = 4096
MAX_GOP_BYTES = 4 << 20


def parameter_sets_only(payload: bytes) -> bool:
    """True when an RTP payload carries no picture data (SPS/PPS/SEI/AUD only)."""
    t = payload[0] & 0x1F
    if t == NAL_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if payload[pos + 2] & 0x1F not in NON_VCL:
                return False
            pos += 2 + size
        return True
    if t == NAL_FU_A:
        return len(payload) > 1 and payload[1] & 0x1F in NON_VCL
    return t in NON_VCL


@dataclass(slots=True)
class RelayStats:
    packets_in: int = 0
    bytes_in: int = 0
    #: Datagrams from other addresses than the latched source (or, before the latch, than the creator's).
    foreign: int = 0
    #: Datagrams that are not RTP (garbage, or RTCP), or, before the latch, not RTP carrying H.264.
    malformed: int = 0
    packets_out: int = 0
    replays: int = 0


class RelayViewer:
    """One viewer's output stream: its SSRC, numbering and timeline, and the history that answers NACKs."""

    def __init__(self, ssrc: int, payload_type: int, sink: Callable[[bytes], None]) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type & 0x7F
        self.sink = sink
        self.seq_offset = 0
        self.ts_offset = 0
        self.last_seq: int = random.getrandbits(15)
        self.last_ts: int | None = None
        self.live = False
        self.packets = 0
        self.retransmitted = 0
        #: (sequence number, timestamp, marker, payload) of what was sent. The payload is the object the GOP and
        #: the mountpoint's other viewers hold too, so the history costs a tuple per packet, not a packet copy.
        self._history: list[tuple[int, int, bool, bytes] | None] = [None] * HISTORY_SIZE

    def forward(self, packet: RtpPacket) -> None:
        seq = (packet.sequence_number + self.seq_offset) & 0xFFFF
        ts = (packet.timestamp + self.ts_offset) & 0xFFFFFFFF
        self._emit(seq, ts, packet.marker, packet.payload)

    def replay(self, gop: list[RtpPacket]) -> None:
        """Send a kept GOP now and continue live after it: frames get consecutive timestamps one tick apart,
        the last one keeping its distance to the live frames that follow."""
        order: dict[int, int] = {}
        for p in gop:
            order.setdefault(p.timestamp, len(order))
        frames = len(order)
        newest = gop[-1].timestamp if gop else 0
        for ts in order:
            if ts_diff(ts, newest) > 0:
                newest = ts
        last = self.last_ts if self.last_ts is not None else random.getrandbits(32)
        end = (last + frames) & 0xFFFFFFFF
        start_seq = (self.last_seq + 1) & 0xFFFF
        for i, p in enumerate(gop):
            ts = (end - (frames - 1 - order[p.timestamp])) & 0xFFFFFFFF
            self._emit((start_seq + i) & 0xFFFF, ts, p.marker, p.payload)
        if gop:
            highest = gop[0].sequence_number
            for p in gop:
                if seq_diff(p.sequence_number, highest) > 0:
                    highest = p.sequence_number
            self.seq_offset = (start_seq + len(gop) - highest - 1) & 0xFFFF
            self.ts_offset = (end - newest) & 0xFFFFFFFF
        self.live = True

    def _emit(self, seq: int, ts: int, marker: bool, payload: bytes) -> None:
        data = pack_header(self.payload_type, marker, seq, ts, self.ssrc) + payload
        self._history[seq % HISTORY_SIZE] = (seq, ts, marker, payload)
        self.last_seq = seq
        if self.last_ts is None or ts_diff(ts, self.last_ts) > 0:
            self.last_ts = ts
        self.packets += 1
        self.sink(data)

    def retransmission(self, seq: int) -> bytes | None:
        """The packet sent with `seq`, if still in the history (plain retransmission, RFC 4585 NACK)."""
        kept = self._history[seq % HISTORY_SIZE]
        if kept is None or kept[0] != seq:
            return None
        self.retransmitted += 1
        _, ts, marker, payload = kept
        return pack_header(self.payload_type, marker, seq, ts, self.ssrc) + payload


class StreamRelay:
    """One mountpoint's ingest and fan-out. `creator` and `grace` choose the source (`latch.SourceLatch`)."""

    def __init__(self, creator: str | None = None, grace: float = DEFAULT_GRACE) -> None:
        self.assembler = H264Assembler()
        self.stats = RelayStats()
        self.latch = SourceLatch(creator, grace)
        self.viewers: list[RelayViewer] = []
        #: Viewers that get the next keyframe (nothing usable kept yet, or the kept one was lost).
        self.waiting: list[RelayViewer] = []
        self._gop: list[RtpPacket] = []
        self._gop_bytes = 0
        self.gop_valid = False
        self._last_in: RtpPacket | None = None
        #: Called (with the source SSRC) when viewers need a keyframe the relay does not have.
        self.on_keyframe_needed: Callable[[int], None] | None = None
        #: Called with each complete access unit (bench/relay.py's aiortc `av.Packet` route uses it).
        self.unit_listeners: list[Callable[[AccessUnit], None]] = []

    @property
    def source(self) -> Address | None:
        """The latched source address (None until one is chosen)."""
        return self.latch.source

    # -- viewers -------------------------------------------------------------------------------------------
    def add_viewer(self, viewer: RelayViewer) -> None:
        """Start a viewer: at once from the kept keyframe, or at the next one."""
        self.viewers.append(viewer)
        self.resync(viewer)

    def remove_viewer(self, viewer: RelayViewer) -> None:
        if viewer in self.viewers:
            self.viewers.remove(viewer)
        if viewer in self.waiting:
            self.waiting.remove(viewer)
        viewer.live = False

    def resync(self, viewer: RelayViewer) -> None:
        """A viewer needs a decodable picture (it joined, or its PLI/FIR reported loss)."""
        if self.gop_valid and self._gop:
            self.stats.replays += 1
            viewer.replay(self._gop)
            self.stats.packets_out += len(self._gop)
        else:
            viewer.live = False
            if viewer not in self.waiting:
                self.waiting.append(viewer)
            if self.on_keyframe_needed is not None and self.assembler.ssrc is not None:
                self.on_keyframe_needed(self.assembler.ssrc)

    # -- ingest --------------------------------------------------------------------------------------------
    def feed(self, data: bytes, addr: Address, now: float | None = None) -> bool:
        """One datagram from the ingest socket; True when it was accepted as the source's RTP (`now`, a
        monotonic time, only matters before the latch)."""
        stats = self.stats
        latch = self.latch
        from_source = addr == latch.source
        if not from_source and latch.source is not None and not latch.may_take_over(addr):
            stats.foreign += 1
            return False
        if is_rtcp(data):
            stats.malformed += 1
            return False
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            stats.malformed += 1
            return False
        if not packet.payload:
            stats.malformed += 1
            return False
        if not from_source:
            if not latchable(packet):
                stats.malformed += 1
                return False
            if not latch.offer(addr, time.monotonic() if now is None else now):
                stats.foreign += 1
                return False
        stats.packets_in += 1
        stats.bytes_in += len(data)
        if packet.marker and parameter_sets_only(packet.payload):
            packet.marker = False
        last = self._last_in
        if last is not None and (
            packet.ssrc != last.ssrc or abs(seq_diff(packet.sequence_number, last.sequence_number)) > RESTART_JUMP
        ):
            self._restarted()
        self._last_in = packet

        for viewer in self.viewers:
            if viewer.live:
                viewer.forward(packet)
                stats.packets_out += 1

        self._keep(packet)
        for unit in self.assembler.push(packet):
            if unit.keyframe:
                self._new_gop(unit.timestamp)
            for listener in self.unit_listeners:
                listener(unit)
        if self.assembler.waiting_for_keyframe and self.gop_valid:
            self.gop_valid = False
        return True

    def _restarted(self) -> None:
        """The source restarted (the agent's new sender: new SSRC, new numbering). Viewers continue their own
        numbering and timeline from its next keyframe instead of jumping with the source."""
        self.gop_valid = False
        self._gop = []
        self._gop_bytes = 0
        for viewer in self.viewers:
            if viewer.live:
                viewer.live = False
                self.waiting.append(viewer)

    def _keep(self, packet: RtpPacket) -> None:
        self._gop.append(packet)
        self._gop_bytes += len(packet.payload)
        if len(self._gop) > MAX_GOP_PACKETS or self._gop_bytes > MAX_GOP_BYTES:
            self.gop_valid = False
            # Keep the tail: it may hold the start of the next keyframe.
            self._gop = self._gop[-256:]
            self._gop_bytes = sum(len(p.payload) for p in self._gop)

    def _new_gop(self, timestamp: int) -> None:
        gop = [p for p in self._gop if ts_diff(p.timestamp, timestamp) >= 0]
        self._gop = gop
        self._gop_bytes = sum(len(p.payload) for p in gop)
        self.gop_valid = True
        waiting, self.waiting = self.waiting, []
        for viewer in waiting:
            if viewer in self.viewers:
                self.stats.replays += 1
                viewer.replay(gop)
                self.stats.packets_out += len(gop)

    @property
    def has_keyframe(self) -> bool:
        return self.gop_valid

    def kept_gop(self) -> list[RtpPacket]:
        """The packets since the latest complete keyframe (a recording that starts mid-stream starts with them)."""
        return list(self._gop) if self.gop_valid else []

    def nal_summary(self) -> dict[str, int]:
        a = self.assembler.stats
        return {
            "frames": a.frames,
            "keyframes": a.keyframes,
            "lost": a.lost,
            "late": a.late,
            "reordered": a.reordered,
            "frames_dropped": a.frames_dropped,
            "h264_malformed": a.malformed,
        }
