"""What a viewer's NACK history costs: bounded in bytes, and still answering for the packets a NACK can ask for
in time (memory with 100 devices each watched once, issue 16 §5; bench/memory.py)."""

from __future__ import annotations

from apuppet.media.relay import RelayViewer
from apuppet.media.rtp import RtpPacket

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
