"""RTP packets (RFC 3550), sans-I/O: parse and serialize headers, and the 16/32-bit serial-number arithmetic.

Lighter than `aiortc.rtp.RtpPacket` (which also decodes WebRTC header extensions): the ingest path parses every
packet of every mountpoint, so the parse does one `struct` unpack and keeps the payload as a slice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_LENGTH = 12
#: H.264 over RTP uses a 90 kHz clock (RFC 6184 §5.1).
VIDEO_CLOCK_RATE = 90_000

_HEADER = struct.Struct("!BBHII")


def is_rtcp(data: bytes) -> bool:
    """True for an RTCP packet multiplexed on an RTP port (RFC 5761 §4: packet types 192-223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrc: tuple[int, ...] = ()
    #: Header extension as (profile, data), data without its 4-byte header; None when absent.
    extension: tuple[int, bytes] | None = None

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one datagram; `ValueError` for anything that is not a well-formed RTP packet."""
        if len(data) < RTP_HEADER_LENGTH:
            raise ValueError(f"RTP packet too short ({len(data)} bytes)")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise ValueError(f"RTP version {b0 >> 6} is not 2")
        if 192 <= b1 <= 223:
            raise ValueError("RTCP packet on the RTP port")
        pos = RTP_HEADER_LENGTH
        csrc: tuple[int, ...] = ()
        cc = b0 & 0x0F
        if cc:
            if len(data) < pos + 4 * cc:
                raise ValueError("RTP packet has a truncated CSRC list")
            csrc = struct.unpack_from(f"!{cc}I", data, pos)
            pos += 4 * cc
        extension = None
        if b0 & 0x10:
            if len(data) < pos + 4:
                raise ValueError("RTP packet has a truncated extension header")
            profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if len(data) < pos + 4 * words:
                raise ValueError("RTP packet has a truncated extension")
            extension = (profile, bytes(data[pos : pos + 4 * words]))
            pos += 4 * words
        end = len(data)
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or pos + padding > end:
                raise ValueError("RTP packet has invalid padding")
            end -= padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(b1 & 0x80),
            csrc=csrc,
            extension=extension,
        )

    def serialize(self) -> bytes:
        b0 = RTP_VERSION << 6 | len(self.csrc)
        if self.extension is not None:
            b0 |= 0x10
        parts = [
            _HEADER.pack(
                b0,
                (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
                self.sequence_number & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            profile, ext = self.extension
            if len(ext) % 4:
                raise ValueError("RTP header extension length must be a multiple of 4")
            parts.append(struct.pack("!HH", profile, len(ext) // 4))
            parts.append(ext)
        parts.append(self.payload)
        return b"".join(parts)

    def __bytes__(self) -> bytes:
        return self.serialize()


def pack_header(payload_type: int, marker: bool, sequence_number: int, timestamp: int, ssrc: int) -> bytes:
    """A bare 12-byte RTP header, for packetizers that prepend it to ready payloads."""
    return _HEADER.pack(
        RTP_VERSION << 6,
        (0x80 if marker else 0) | (payload_type & 0x7F),
        sequence_number & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc & 0xFFFFFFFF,
    )


#: RTCP payload-specific feedback (RFC 4585 §6.1), and its picture loss indication format (§6.3.1).
RTCP_PSFB = 206
PSFB_PLI = 1
_RTCP_FEEDBACK = struct.Struct("!BBHII")


def pack_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """An RTCP picture loss indication: the 12 bytes that ask the source of `media_ssrc` for a keyframe."""
    # Length in 32-bit words minus one: the two SSRCs after the first word, no feedback control information.
    return _RTCP_FEEDBACK.pack(
        RTP_VERSION << 6 | PSFB_PLI, RTCP_PSFB, 2, sender_ssrc & 0xFFFFFFFF, media_ssrc & 0xFFFFFFFF
    )


def seq_diff(a: int, b: int) -> int:
    """`a - b` for 16-bit sequence numbers, in [-32768, 32767] (RFC 3550 serial arithmetic)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_diff(a: int, b: int) -> int:
    """`a - b` for 32-bit RTP timestamps, signed."""
    return ((a - b + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000
