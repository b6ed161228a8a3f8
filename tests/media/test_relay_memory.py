"""What a viewer's NACK history costs: bounded in bytes, and still answering for the packets a NACK can ask for
in time (memory with 100 devices each watched once, issue 16 §5; bench/memory.py)."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from apuppet.media.encoder import H264Encoder
from apuppet.media.h264 import H264Packetizer
from apuppet.media.relay import HISTORY_SIZE, RelayViewer, StreamRelay
from apuppet.media.rtp import RtpPacket

SOURCE = ("192.0.2.10", 40000)
PACKET = 1200  # payload bytes of a full RFC 6184 packet (the agent sends at most 1272 with the header)


def test_a_viewers_nack_history_is_about_a_second_of_video_not_several() -> None:
    sent: list[bytes] = []
    viewer = RelayViewer(ssrc=7, payload_type=100, sink=sent.append)
    for seq in range(3000):
        viewer.forward(RtpPacket(96, seq, seq // 10 * 3000, 1, bytes([seq % 256]) * PACKET, marker=seq % 10 == 9))
    numbers = [int.from_bytes(p[2:4], "big") for p in sent]
    answered = [s for s in numbers if viewer.retransmission(s) is not None]
    kept_bytes = sum(len(viewer.retransmission(s) or b"") for s in answered)
    # 1 s of a 1.5 Mbit/s stream is ~190 KB; the former 512 packets were 620 KB per viewer.
    assert kept_bytes <= 200_000, kept_bytes
    # The most recent 100 packets (0.7 s at 1.5 Mbit/s, longer at the agent's bit rates) are still answered, as sent.
    assert answered[-100:] == numbers[-100:]
    assert all(viewer.retransmission(s) == p for s, p in zip(numbers[-100:], sent[-100:], strict=True))


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    """Three seconds of 1.2 Mbit/s-like H.264 (noise at 320x240, 30 fps, a keyframe a second), as the agent sends
    it: full-size FU-A packets."""
    enc = H264Encoder(320, 240, fps=30, bitrate=1_500_000, keyframe_interval=1.0)
    packetizer = H264Packetizer(ssrc=5, payload_type=96, sequence_number=100)
    noise = np.random.default_rng(3).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    packets: list[bytes] = []
    for i in range(90):
        for unit in enc.encode(np.roll(noise, i * 7, axis=0)):
            packets += packetizer.packetize(unit.data, unit.timestamp)
    return packets


def relay_memory(packets: list[bytes], viewers: int) -> int:
    """Bytes a relay with `viewers` live viewers still holds (tracemalloc) after `packets`."""
    gc.collect()
    tracemalloc.start()
    try:
        relay = StreamRelay(creator=SOURCE[0])
        for i in range(viewers):
            relay.add_viewer(RelayViewer(ssrc=i + 1, payload_type=100, sink=lambda data: None))
        for packet in packets:
            relay.feed(packet, SOURCE, now=0.0)
        assert all(v.live and v.packets for v in relay.viewers)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del relay
    return held


def test_viewers_of_a_mountpoint_share_the_kept_payloads_instead_of_copying_them(stream: list[bytes]) -> None:
    """With one copy per viewer, each viewer's history held ~128 full packets (~150 KB at these rates: 15 MB with
    100 devices watched once); it now holds their numbering and the GOP's payloads."""
    assert sum(len(p) for p in stream) / 3 > 120_000, "about 1 Mbit/s"
    one, eleven = relay_memory(stream, 1), relay_memory(stream, 11)
    per_viewer = (eleven - one) / 10
    assert per_viewer < 30_000, per_viewer
    # And what a NACK brings back is still the packet as that viewer got it.
    sent: list[bytes] = []
    relay = StreamRelay(creator=SOURCE[0])
    viewer = RelayViewer(ssrc=9, payload_type=100, sink=sent.append)
    relay.add_viewer(viewer)
    for packet in stream:
        relay.feed(packet, SOURCE, now=0.0)
    for data in sent[-HISTORY_SIZE:]:
        assert viewer.retransmission(int.from_bytes(data[2:4], "big")) == data
