"""H.264 over RTP (RFC 6184, packetization mode 1), sans-I/O.

* `H264Packetizer`: an Annex-B access unit → RTP packets, the way the aPuppet Android agent sends them
  (spec §4.3): SPS+PPS aggregated in one STAP-A before every IDR, other NAL units as single-NAL packets or
  FU-A fragments, packets of at most 1272 bytes including the RTP header; unlike the agent, the marker bit is
  set only on the last packet of the access unit.
* `H264Assembler`: RTP packets → Annex-B access units. Access units are formed by timestamp, not by marker:
  the agent also sets the marker on its SPS/PPS STAP-A, and a frame ending there holds no picture. Loss,
  reordering and garbage are counted and never raise; after a loss, frames are dropped until the next
  keyframe so that a decoder downstream never sees a broken reference chain.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .rtp import RTP_HEADER_LENGTH, RtpPacket, pack_header, seq_diff, ts_diff

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_STAP_A = 24
NAL_FU_A = 28
#: NAL unit types that carry no picture data; an access unit made only of these is not a frame.
NON_VCL = frozenset({NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD, 10, 11, 12})

START_CODE = b"\x00\x00\x00\x01"
#: The Android agent's limit (spec §4.3), which fits any path MTU with room for SRTP and TURN overhead.
MAX_PACKET_SIZE = 1272


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B byte stream, without start codes (3- or 4-byte) or trailing zero bytes."""
    nals: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        i = data.find(b"\x00\x00\x01", start)
        end = len(data) if i < 0 else i
        while end > start and data[end - 1] == 0:
            end -= 1
        if end > start:
            nals.append(data[start:end])
    return nals


def join_annexb(nals: list[bytes]) -> bytes:
    return b"".join(START_CODE + n for n in nals)


@dataclass(slots=True)
class AccessUnit:
    """One coded picture (and the parameter sets before it) in Annex-B form, with its 90 kHz RTP timestamp."""

    timestamp: int
    data: bytes
    keyframe: bool
    #: RTP packets it arrived in (0 when it did not come from RTP).
    packets: int = 0

    @property
    def nals(self) -> list[bytes]:
        return split_annexb(self.data)


class H264Packetizer:
    """Annex-B access units → RTP packets of one stream (sequence numbers continue across calls)."""

    def __init__(
        self,
        ssrc: int,
        payload_type: int = 96,
        sequence_number: int = 0,
        max_packet_size: int = MAX_PACKET_SIZE,
    ) -> None:
        if max_packet_size < RTP_HEADER_LENGTH + 16:
            raise ValueError("max_packet_size is too small")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sequence_number = sequence_number & 0xFFFF
        self.max_payload = max_packet_size - RTP_HEADER_LENGTH
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def payloads(self, access_unit: bytes) -> list[bytes]:
        """RTP payloads for one access unit: STAP-A(SPS, PPS) before an IDR, then single NAL or FU-A."""
        nals = split_annexb(access_unit)
        params: list[bytes] = []
        others: list[bytes] = []
        for nal in nals:
            t = nal_type(nal)
            if t == NAL_SPS:
                self.sps = nal
            elif t == NAL_PPS:
                self.pps = nal
            elif t != NAL_AUD:
                others.append(nal)
        if any(nal_type(n) == NAL_IDR for n in others) and self.sps and self.pps:
            params = [self.sps, self.pps]
        elif any(nal_type(n) in (NAL_SPS, NAL_PPS) for n in nals):
            # Parameter sets with no IDR (a header-only unit): still send them, aggregated.
            params = [n for n in nals if nal_type(n) in (NAL_SPS, NAL_PPS)]
        out: list[bytes] = []
        if params:
            out.extend(self._stap_a(params))
        for nal in others:
            if len(nal) <= self.max_payload:
                out.append(nal)
            else:
                out.extend(self._fu_a(nal))
        return out

    def packetize(self, access_unit: bytes, timestamp: int) -> list[bytes]:
        """Whole RTP packets (header + payload); the marker is set on the last one only."""
        payloads = self.payloads(access_unit)
        packets = []
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            header = pack_header(self.payload_type, i == last, self.sequence_number, timestamp, self.ssrc)
            packets.append(header + payload)
            self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        return packets

    def _stap_a(self, nals: list[bytes]) -> list[bytes]:
        size = 1 + sum(2 + len(n) for n in nals)
        if size > self.max_payload:
            return [p for n in nals for p in ([n] if len(n) <= self.max_payload else self._fu_a(n))]
        header = NAL_STAP_A | max(n[0] & 0x60 for n in nals) | max(n[0] & 0x80 for n in nals)
        return [bytes([header]) + b"".join(struct.pack("!H", len(n)) + n for n in nals)]

    def _fu_a(self, nal: bytes) -> list[bytes]:
        indicator = (nal[0] & 0xE0) | NAL_FU_A
        kind = nal[0] & 0x1F
        chunk = self.max_payload - 2
        body = memoryview(nal)[1:]
        out = []
        for offset in range(0, len(body), chunk):
            fu_header = kind
            if offset == 0:
                fu_header |= 0x80
            if offset + chunk >= len(body):
                fu_header |= 0x40
            out.append(bytes((indicator, fu_header)) + body[offset : offset + chunk])
        return out


@dataclass(slots=True)
class AssemblerStats:
    packets: int = 0
    #: RTP packets missing from the sequence (counted when given up on).
    lost: int = 0
    #: Packets that arrived out of order but were still used.
    reordered: int = 0
    #: Packets too late to use, or duplicates.
    late: int = 0
    #: Payloads that are not valid RFC 6184 (the packet's frame is dropped).
    malformed: int = 0
    frames: int = 0
    keyframes: int = 0
    #: Frames dropped: incomplete, or after a loss and before the next keyframe.
    frames_dropped: int = 0
    #: Source restarts (new SSRC or a sequence jump).
    resyncs: int = 0


@dataclass(slots=True)
class _Pending:
    """The access unit being assembled."""

    timestamp: int
    nals: list[bytes] = field(default_factory=list)
    fu: bytearray | None = None
    broken: bool = False
    packets: int = 0


class H264Assembler:
    """RTP packets (any order) → complete Annex-B access units, sans-I/O.

    Packets are released in sequence order; a missing packet is declared lost once `reorder_window` later
    packets wait, or packets of three timestamps. An access unit ends at the first packet of a newer
    timestamp, or at a marker once it holds a picture (a marker on a parameter-set-only packet is ignored,
    see the module docstring).
    """

    def __init__(self, reorder_window: int = 32, max_jump: int = 3000) -> None:
        self.reorder_window = reorder_window
        self.max_jump = max_jump
        self.stats = AssemblerStats()
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.ssrc: int | None = None
        self._expected: int | None = None
        self._buffer: dict[int, RtpPacket] = {}
        self._current: _Pending | None = None
        self._last_emitted_ts: int | None = None
        #: True until a keyframe arrives: at the start and after any loss.
        self.waiting_for_keyframe = True

    # -- input ---------------------------------------------------------------------------------------------
    def push_bytes(self, data: bytes) -> list[AccessUnit]:
        """A raw datagram: garbage is counted as malformed, never raised."""
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.stats.malformed += 1
            return []
        return self.push(packet)

    def push(self, packet: RtpPacket) -> list[AccessUnit]:
        self.stats.packets += 1
        out: list[AccessUnit] = []
        seq = packet.sequence_number
        if self._expected is None or packet.ssrc != self.ssrc:
            if self._expected is not None:
                self._resync()
            self.ssrc = packet.ssrc
            self._expected = seq
        diff = seq_diff(seq, self._expected)
        if diff < 0:
            if diff < -self.max_jump:
                self._resync()
                self._expected = seq
            else:
                self.stats.late += 1
                return out
        elif diff > self.max_jump:
            self._resync()
            self._expected = seq
        elif seq in self._buffer:
            self.stats.late += 1
            return out
        elif diff > 0:
            self.stats.reordered += 1
        self._buffer[seq] = packet
        self._drain(out)
        return out

    def flush(self) -> list[AccessUnit]:
        """End of input: release what can be released (the last unit only if it is complete)."""
        out: list[AccessUnit] = []
        if self._expected is not None:
            self._drain(out, window=0)
        if self._current is not None and self._current.fu is None:
            self._finish(out)
        self._current = None
        return out

    # -- internals -----------------------------------------------------------------------------------------
    def _drain(self, out: list[AccessUnit], window: int | None = None) -> None:
        buffer = self._buffer
        window = self.reorder_window if window is None else window
        while buffer:
            assert self._expected is not None
            packet = buffer.pop(self._expected, None)
            if packet is None:
                # Give up on the gap when the window is full, or when packets of three timestamps wait
                # (reordering across frames is rare: waiting longer would only delay the loss report).
                if len(buffer) <= window and len({p.timestamp for p in buffer.values()}) < 3:
                    return
                self._skip_gap()
                continue
            self._expected = (self._expected + 1) & 0xFFFF
            self._consume(packet, out)

    def _skip_gap(self) -> None:
        """Give up on the missing packet(s) before the oldest buffered one."""
        assert self._expected is not None
        nearest = min(self._buffer, key=lambda s: seq_diff(s, self._expected or 0))
        self.stats.lost += seq_diff(nearest, self._expected)
        self._expected = nearest
        self._loss()

    def _loss(self) -> None:
        if self._current is not None:
            self._current.broken = True
        self.waiting_for_keyframe = True

    def _resync(self) -> None:
        self.stats.resyncs += 1
        self._buffer.clear()
        if self._current is not None:
            self.stats.frames_dropped += 1
        self._current = None
        self._last_emitted_ts = None
        self.waiting_for_keyframe = True

    def _consume(self, packet: RtpPacket, out: list[AccessUnit]) -> None:
        current = self._current
        if current is not None and current.timestamp != packet.timestamp:
            # A new timestamp ends the previous unit; a half-received FU-A means it lost its tail.
            if current.fu is not None:
                current.broken = True
            self._finish(out)
            current = None
        if current is None:
            if self._last_emitted_ts is not None and ts_diff(packet.timestamp, self._last_emitted_ts) <= 0:
                # The rest of a unit already released (a sender that sets the marker per NAL unit).
                self.stats.late += 1
                return
            current = self._current = _Pending(packet.timestamp)
        current.packets += 1
        if not current.broken:
            try:
                self._depacketize(packet.payload, current)
            except (ValueError, IndexError, struct.error):
                self.stats.malformed += 1
                current.broken = True
                self.waiting_for_keyframe = True
        if packet.marker and current.fu is None and any(nal_type(n) not in NON_VCL for n in current.nals):
            self._finish(out)

    def _depacketize(self, payload: bytes, unit: _Pending) -> None:
        if not payload:
            raise ValueError("empty payload")
        t = payload[0] & 0x1F
        if payload[0] & 0x80:
            raise ValueError("forbidden_zero_bit set")
        if 1 <= t <= 23:
            if unit.fu is not None:
                raise ValueError("single NAL unit inside an FU-A")
            unit.nals.append(payload)
        elif t == NAL_STAP_A:
            if unit.fu is not None:
                raise ValueError("STAP-A inside an FU-A")
            pos = 1
            count = 0
            while pos < len(payload):
                (size,) = struct.unpack_from("!H", payload, pos)
                pos += 2
                if size == 0 or pos + size > len(payload):
                    raise ValueError("STAP-A is truncated")
                unit.nals.append(payload[pos : pos + size])
                pos += size
                count += 1
            if count == 0:
                raise ValueError("empty STAP-A")
        elif t == NAL_FU_A:
            if len(payload) < 3:
                raise ValueError("FU-A too short")
            fu_header = payload[1]
            start, end = fu_header & 0x80, fu_header & 0x40
            if start:
                if unit.fu is not None:
                    raise ValueError("FU-A start inside an FU-A")
                unit.fu = bytearray(((payload[0] & 0xE0) | (fu_header & 0x1F),))
            elif unit.fu is None:
                raise ValueError("FU-A continuation without a start")
            unit.fu += payload[2:]
            if end:
                unit.nals.append(bytes(unit.fu))
                unit.fu = None
        else:
            raise ValueError(f"NAL unit type {t} is not supported")

    def _finish(self, out: list[AccessUnit]) -> None:
        unit = self._current
        self._current = None
        if unit is None:
            return
        self._last_emitted_ts = unit.timestamp
        if unit.broken or unit.fu is not None:
            self.stats.frames_dropped += 1
            self.waiting_for_keyframe = True
            return
        nals = []
        keyframe = False
        has_picture = False
        for nal in unit.nals:
            t = nal_type(nal)
            if t == NAL_SPS:
                self.sps = nal
            elif t == NAL_PPS:
                self.pps = nal
            elif t == NAL_IDR:
                keyframe = True
            if t not in NON_VCL:
                has_picture = True
            if t != NAL_AUD:
                nals.append(nal)
        if not has_picture:
            # Parameter sets alone: remembered, and put before the next IDR.
            return
        if keyframe:
            if self.sps is None or self.pps is None:
                self.stats.frames_dropped += 1
                return
            types = {nal_type(n) for n in nals}
            prefix = []
            if NAL_SPS not in types:
                prefix.append(self.sps)
            if NAL_PPS not in types:
                prefix.append(self.pps)
            nals = prefix + nals
            self.waiting_for_keyframe = False
        elif self.waiting_for_keyframe:
            self.stats.frames_dropped += 1
            return
        self.stats.frames += 1
        if keyframe:
            self.stats.keyframes += 1
        out.append(AccessUnit(unit.timestamp, join_annexb(nals), keyframe, unit.packets))
