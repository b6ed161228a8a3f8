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
send what each `RelayViewer` gives out.
"""

from __future__ import annotations

import random
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from .h264 import NAL_FU_A, NAL_IDR, NAL_SPS, NAL_STAP_A, NON_VCL, AccessUnit, H264Assembler
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


def pack_meta(seq: int, ts: int, marker: bool) -> int:
    """A packet's sequence number, timestamp and marker in one 64-bit word (`KeptGop`, the NACK history)."""
    return seq | ts << 16 | marker << 48


class KeptGop:
    """The packets since the start of the latest keyframe: their payloads (the objects the ingest parsed, shared
    with the viewers' histories) and their numbering packed in an array. Kept as parsed `RtpPacket`s, each packet
    cost ~190 bytes more (the object and three ints): 2.8 MB with 100 mountpoints at 1 Mbit/s."""

    __slots__ = ("payloads", "meta", "bytes")

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.meta = array("Q")
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.payloads)

    def append(self, packet: RtpPacket) -> None:
        self.payloads.append(packet.payload)
        self.meta.append(pack_meta(packet.sequence_number, packet.timestamp, packet.marker))
        self.bytes += len(packet.payload)

    def clear(self) -> None:
        self.payloads.clear()
        del self.meta[:]
        self.bytes = 0

    def keep_last(self, count: int) -> None:
        del self.payloads[:-count]
        del self.meta[:-count]
        self.bytes = sum(map(len, self.payloads))

    def keep_from(self, timestamp: int) -> None:
        """Drop the packets older than `timestamp` (a new keyframe's)."""
        kept = [
            (payload, meta)
            for payload, meta in zip(self.payloads, self.meta, strict=True)
            if ts_diff(meta >> 16 & 0xFFFFFFFF, timestamp) >= 0
        ]
        self.payloads = [payload for payload, _ in kept]
        self.meta = array("Q", [meta for _, meta in kept])
        self.bytes = sum(map(len, self.payloads))

    def packets(self, ssrc: int, payload_type: int) -> list[RtpPacket]:
        return [
            RtpPacket(payload_type, meta & 0xFFFF, meta >> 16 & 0xFFFFFFFF, ssrc, payload, bool(meta >> 48 & 1))
            for payload, meta in zip(self.payloads, self.meta, strict=True)
        ]


def starts_keyframe(payload: bytes) -> bool:
    """True when an RTP payload begins a keyframe: an IDR slice (whole, or the first FU-A fragment), or the
    parameter sets sent before one (a lone SPS, or a STAP-A holding an SPS or an IDR slice)."""
    t = payload[0] & 0x1F
    if t in (NAL_IDR, NAL_SPS):
        return True
    if t == NAL_FU_A:
        return len(payload) > 1 and payload[1] & 0x80 != 0 and payload[1] & 0x1F == NAL_IDR
    if t == NAL_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            if payload[pos + 2] & 0x1F in (NAL_IDR, NAL_SPS):
                return True
            pos += 2 + ((payload[pos] << 8) | payload[pos + 1])
    return False


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

    def __init__(
        self,
        ssrc: int,
        payload_type: int,
        sink: Callable[[bytes], None] | None = None,
        *,
        parts: Callable[[bytes, bytes], None] | None = None,
    ) -> None:
        """`sink` gets each packet whole; `parts` gets (header, payload) instead, for an adapter that queues
        packets: it joins them right before sending, so the joined packet lives for one send, not for the wait
        in a queue between payloads the GOP keeps (the allocator's heap then keeps no holes behind)."""
        self.ssrc = ssrc
        self.payload_type = payload_type & 0x7F
        if parts is None:
            if sink is None:
                raise ValueError("a RelayViewer needs a sink or parts")
            whole = sink

            def parts(header: bytes, payload: bytes) -> None:
                whole(header + payload)

        self.parts = parts
        self.seq_offset = 0
        self.ts_offset = 0
        self.last_seq: int = random.getrandbits(15)
        self.last_ts: int | None = None
        self.live = False
        self.packets = 0
        self.retransmitted = 0
        #: What was sent, by sequence number modulo HISTORY_SIZE: the payload (the object the GOP and the
        #: mountpoint's other viewers hold too, not a copy) and, packed in one machine word, the sequence number,
        #: timestamp and marker (a tuple of three ints per packet cost 130 bytes more than the 8 here).
        self._sent_payloads: list[bytes | None] = [None] * HISTORY_SIZE
        self._sent_headers = array("Q", bytes(8 * HISTORY_SIZE))

    def forward(self, packet: RtpPacket) -> None:
        seq = (packet.sequence_number + self.seq_offset) & 0xFFFF
        ts = (packet.timestamp + self.ts_offset) & 0xFFFFFFFF
        self._emit(seq, ts, packet.marker, packet.payload)

    def replay(self, gop: KeptGop) -> None:
        """Send a kept GOP now and continue live after it: frames get consecutive timestamps one tick apart,
        the last one keeping its distance to the live frames that follow."""
        meta = gop.meta
        order: dict[int, int] = {}
        for m in meta:
            order.setdefault(m >> 16 & 0xFFFFFFFF, len(order))
        frames = len(order)
        newest = meta[-1] >> 16 & 0xFFFFFFFF if meta else 0
        for ts in order:
            if ts_diff(ts, newest) > 0:
                newest = ts
        last = self.last_ts if self.last_ts is not None else random.getrandbits(32)
        end = (last + frames) & 0xFFFFFFFF
        start_seq = (self.last_seq + 1) & 0xFFFF
        for i, (payload, m) in enumerate(zip(gop.payloads, meta, strict=True)):
            ts = (end - (frames - 1 - order[m >> 16 & 0xFFFFFFFF])) & 0xFFFFFFFF
            self._emit((start_seq + i) & 0xFFFF, ts, bool(m >> 48 & 1), payload)
        if meta:
            highest = meta[0] & 0xFFFF
            for m in meta:
                if seq_diff(m & 0xFFFF, highest) > 0:
                    highest = m & 0xFFFF
            self.seq_offset = (start_seq + len(meta) - highest - 1) & 0xFFFF
            self.ts_offset = (end - newest) & 0xFFFFFFFF
        self.live = True

    def _emit(self, seq: int, ts: int, marker: bool, payload: bytes) -> None:
        slot = seq % HISTORY_SIZE
        self._sent_payloads[slot] = payload
        self._sent_headers[slot] = pack_meta(seq, ts, marker)
        self.last_seq = seq
        if self.last_ts is None or ts_diff(ts, self.last_ts) > 0:
            self.last_ts = ts
        self.packets += 1
        self.parts(pack_header(self.payload_type, marker, seq, ts, self.ssrc), payload)

    def keep_only(self, payloads: set[int]) -> None:
        """Let go of the payloads sent that are not among `payloads` (ids of a new GOP's: what came before the
        keyframe this viewer is being sent). A browser stops asking for packets older than a keyframe it can
        decode (libwebrtc clears its NACK list up to the last continuous frame), so these would only keep the
        previous GOP alive: ~40 % of a mountpoint's kept payloads at one keyframe a second."""
        sent = self._sent_payloads
        for slot, payload in enumerate(sent):
            if payload is not None and id(payload) not in payloads:
                sent[slot] = None

    def retransmission(self, seq: int) -> bytes | None:
        """The packet sent with `seq`, if still in the history (plain retransmission, RFC 4585 NACK)."""
        slot = seq % HISTORY_SIZE
        payload = self._sent_payloads[slot]
        kept = self._sent_headers[slot]
        if payload is None or kept & 0xFFFF != seq:
            return None
        self.retransmitted += 1
        ts, marker = kept >> 16 & 0xFFFFFFFF, bool(kept >> 48)
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
        self._gop = KeptGop()
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
        self._gop.clear()
        for viewer in self.viewers:
            if viewer.live:
                viewer.live = False
                self.waiting.append(viewer)

    def _keep(self, packet: RtpPacket) -> None:
        gop = self._gop
        # A new keyframe begins: the previous GOP goes now rather than once the keyframe is complete, or a
        # mountpoint would keep it and most of a keyframe at once (the peak, with 100 devices, is their sum). New
        # viewers wait for this keyframe meanwhile (a few milliseconds); the viewers' histories keep only what the
        # GOP keeps (`RelayViewer.keep_only`).
        new_keyframe = (
            len(gop) > 0
            and starts_keyframe(packet.payload)
            and ts_diff(packet.timestamp, gop.meta[0] >> 16 & 0xFFFFFFFF) > 0
        )
        if new_keyframe:
            gop.keep_from(packet.timestamp)
            self.gop_valid = False
        gop.append(packet)
        if new_keyframe:
            self._histories_keep_gop()
        if len(gop) > MAX_GOP_PACKETS or gop.bytes > MAX_GOP_BYTES:
            self.gop_valid = False
            # Keep the tail: it may hold the start of the next keyframe.
            gop.keep_last(256)

    def _new_gop(self, timestamp: int) -> None:
        gop = self._gop
        gop.keep_from(timestamp)
        self.gop_valid = True
        self._histories_keep_gop()
        waiting, self.waiting = self.waiting, []
        for viewer in waiting:
            if viewer in self.viewers:
                self.stats.replays += 1
                viewer.replay(gop)
                self.stats.packets_out += len(gop)

    def _histories_keep_gop(self) -> None:
        kept = set(map(id, self._gop.payloads))
        for viewer in self.viewers:
            if viewer.live:
                viewer.keep_only(kept)

    @property
    def has_keyframe(self) -> bool:
        return self.gop_valid

    def kept_gop(self) -> list[RtpPacket]:
        """The packets since the latest complete keyframe (a recording that starts mid-stream starts with them)."""
        last = self._last_in
        if not self.gop_valid or last is None:
            return []
        return self._gop.packets(last.ssrc, last.payload_type)

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
