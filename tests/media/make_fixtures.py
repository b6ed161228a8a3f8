"""Writes the binary fixtures of the RTP and H.264 parser tests into tests/media/fixtures/ (run it by hand:
`.venv/bin/python -m tests.media.make_fixtures`; the files are committed, the tests never regenerate them).

The packets come from other implementations than apuppet's, so that the parsers are not only checked against
apuppet's own packetizer (the two halves of one implementation agree with each other even when both are wrong):

* `h264_libav_rtp.bin`: libx264 through libavformat's RTP muxer (RFC 6184 packetization mode 1, FFmpeg's own
  code, driven by PyAV), sent to a UDP socket on 127.0.0.1 and captured there, datagram by datagram. Next to
  it `h264_libav_annexb.bin`: the access units the encoder handed to the muxer, the reference the depacketized
  stream must equal.
* `rtp_aiortc.bin`: RTP packets serialized by aiortc, as a WebRTC peer sends them (one-byte header extensions
  for mid and abs-send-time, CSRCs, padding), and `rtcp_aiortc.bin`: RTCP (SR, RR, SDES, PLI, NACK, BYE)
  serialized by aiortc, which the RTP port must recognise and refuse.

File format of every `*.bin` here: records of a 4-byte big-endian length and that many bytes (one datagram,
or one Annex-B access unit).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np
from aiortc import rtp as aiortc_rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

FIXTURES = Path(__file__).parent / "fixtures"
_LENGTH = struct.Struct("!I")

#: The stream's shape: 48 frames at 30 fps with an IDR every 16 (3 GOPs), 1200-byte packets, and a start
#: sequence number that wraps around 65535 inside the first IDR's FU-A fragments.
WIDTH, HEIGHT, FPS, GOP, FRAMES = 240, 160, 30, 16, 48
PACKET_SIZE = 1200
FIRST_SEQ = 65533
SSRC = 0x0A9E7001


def write_records(path: Path, records: Iterable[bytes]) -> None:
    path.write_bytes(b"".join(_LENGTH.pack(len(r)) + r for r in records))


def read_records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        (size,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if pos + size > len(data):
            raise ValueError(f"{path.name}: truncated record at byte {pos}")
        yield data[pos : pos + size]
        pos += size


def picture(index: int) -> np.ndarray:
    """A gradient with a square of noise moving across it: big IDRs (FU-A), small P frames (single NAL)."""
    rng = np.random.default_rng(index // GOP)
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    img[:, :, 0] = np.linspace(0, 255, WIDTH, dtype=np.uint8)[None, :]
    img[:, :, 1] = np.linspace(0, 255, HEIGHT, dtype=np.uint8)[:, None]
    x = (index * 4) % (WIDTH - 64)
    img[48:112, x : x + 64] = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return img


def libav_stream() -> tuple[list[bytes], list[bytes]]:
    """(datagrams as captured on loopback, access units as encoded)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(1.0)
    port = sink.getsockname()[1]
    datagrams: list[bytes] = []

    def capture() -> None:
        try:
            while True:
                datagrams.append(sink.recv(65536))
        except TimeoutError:
            pass

    reader = threading.Thread(target=capture)
    reader.start()
    units: list[bytes] = []
    out = av.open(
        f"rtp://127.0.0.1:{port}?pkt_size={PACKET_SIZE}",
        "w",
        format="rtp",
        options={"ssrc": str(SSRC), "seq": str(FIRST_SEQ)},
    )
    stream = out.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    # repeat-headers: SPS and PPS in band before every IDR, as the Android agent sends them.
    stream.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:repeat-headers=1",
    }
    for i in range(FRAMES):
        frame = av.VideoFrame.from_ndarray(picture(i), format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            units.append(bytes(packet))
            out.mux(packet)
    for packet in stream.encode(None):
        units.append(bytes(packet))
        out.mux(packet)
    out.close()
    reader.join()
    sink.close()
    seqs = [struct.unpack_from("!H", d, 2)[0] for d in datagrams]
    if seqs != [(FIRST_SEQ + i) & 0xFFFF for i in range(len(seqs))]:
        raise RuntimeError("datagrams were lost or reordered on loopback: run it again")
    if len(units) != FRAMES:
        raise RuntimeError(f"libx264 gave {len(units)} access units for {FRAMES} frames")
    return datagrams, units


def aiortc_rtp_packets() -> list[bytes]:
    """What a WebRTC peer's RTP looks like on the wire, serialized by aiortc."""
    extensions = aiortc_rtp.HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
                RTCRtpHeaderExtensionParameters(id=9, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            ]
        )
    )
    packets = []
    plain = aiortc_rtp.RtpPacket(payload_type=96, marker=1, sequence_number=65535, timestamp=0xFFFFFF00, ssrc=SSRC)
    plain.payload = b"\x65" + bytes(range(200))
    packets.append(plain.serialize())
    with_ext = aiortc_rtp.RtpPacket(payload_type=100, sequence_number=0, timestamp=3000, ssrc=0x5EED)
    with_ext.extensions.abs_send_time = 0x123456
    with_ext.extensions.mid = "video0"
    with_ext.csrc = [7, 0xFFFFFFFF]
    with_ext.payload = b"\x41" + b"\x9a" * 80
    packets.append(with_ext.serialize(extensions))
    padded = aiortc_rtp.RtpPacket(payload_type=96, sequence_number=1, timestamp=3000, ssrc=0x5EED)
    padded.extensions.mid = "0"
    padded.padding_size = 23
    padded.payload = b"\x41\x01\x02"
    packets.append(padded.serialize(extensions))
    return packets


def aiortc_rtcp_packets() -> list[bytes]:
    """RTCP a viewer or a confused sender may send to an RTP port, serialized by aiortc."""
    report = aiortc_rtp.RtcpReceiverInfo(
        ssrc=SSRC, fraction_lost=3, packets_lost=17, highest_sequence=70000, jitter=40, lsr=1, dlsr=2
    )
    sender = aiortc_rtp.RtcpSenderInfo(ntp_timestamp=1 << 40, rtp_timestamp=90000, packet_count=10, octet_count=9000)
    packets: list[aiortc_rtp.RtcpPacket] = [
        aiortc_rtp.RtcpSrPacket(ssrc=0x5EED, sender_info=sender, reports=[report]),
        aiortc_rtp.RtcpRrPacket(ssrc=0x5EED, reports=[report]),
        aiortc_rtp.RtcpSdesPacket(chunks=[aiortc_rtp.RtcpSourceInfo(ssrc=0x5EED, items=[(1, b"{cname}")])]),
        aiortc_rtp.RtcpPsfbPacket(fmt=aiortc_rtp.RTCP_PSFB_PLI, ssrc=0x5EED, media_ssrc=SSRC),
        aiortc_rtp.RtcpRtpfbPacket(fmt=aiortc_rtp.RTCP_RTPFB_NACK, ssrc=0x5EED, media_ssrc=SSRC, lost=[5, 6, 30]),
        aiortc_rtp.RtcpByePacket(sources=[0x5EED]),
    ]
    return [bytes(p) for p in packets]


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    datagrams, units = libav_stream()
    write_records(FIXTURES / "h264_libav_rtp.bin", datagrams)
    write_records(FIXTURES / "h264_libav_annexb.bin", units)
    write_records(FIXTURES / "rtp_aiortc.bin", aiortc_rtp_packets())
    write_records(FIXTURES / "rtcp_aiortc.bin", aiortc_rtcp_packets())
    for path in sorted(FIXTURES.iterdir()):
        print(f"{path.relative_to(FIXTURES.parent)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
