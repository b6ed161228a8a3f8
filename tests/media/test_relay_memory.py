"""What a viewer's NACK history costs: bounded in bytes, and still answering for the packets a NACK can ask for
in time (memory with 100 devices each watched once, issue 16 §5; bench/memory.py)."""

from __future__ import annotations

import gc
import sys
import tracemalloc

import numpy as np
import pytest

from apuppet.media.encoder import H264Encoder
from apuppet.media.h264 import H264Packetizer
from apuppet.media.relay import HISTORY_SIZE, RelayViewer, StreamRelay, starts_keyframe
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
    100 devices watched once); it now holds the GOP's payloads and their numbering packed in one array (a tuple of
    three ints per packet was ~19 KB per viewer)."""
    assert sum(len(p) for p in stream) / 3 > 120_000, "about 1 Mbit/s"
    one, eleven = relay_memory(stream, 1), relay_memory(stream, 11)
    per_viewer = (eleven - one) / 10
    assert per_viewer < 6_000, per_viewer
    # And what a NACK brings back is still the packet as that viewer got it.
    sent: list[bytes] = []
    relay = StreamRelay(creator=SOURCE[0])
    viewer = RelayViewer(ssrc=9, payload_type=100, sink=sent.append)
    relay.add_viewer(viewer)
    for packet in stream:
        relay.feed(packet, SOURCE, now=0.0)
    for data in sent[-HISTORY_SIZE:]:
        assert viewer.retransmission(int.from_bytes(data[2:4], "big")) == data


def test_a_new_keyframe_lets_the_histories_release_the_previous_gop(stream: list[bytes]) -> None:
    """The viewers' histories hold no payload the GOP does not hold too once a new keyframe is sent (they held
    the previous GOP's tail alive: ~40 % of a mountpoint's kept payloads), and still answer every NACK since the
    start of that keyframe."""
    relay = StreamRelay(creator=SOURCE[0])
    sent: dict[int, list[bytes]] = {i: [] for i in range(3)}
    viewers = [RelayViewer(ssrc=i + 1, payload_type=100, sink=sent[i].append) for i in range(3)]
    for viewer in viewers:
        relay.add_viewer(viewer)
    # Up to a few packets after the second keyframe: the GOP is then shorter than a history.
    after = 0
    for packet in stream:
        relay.feed(packet, SOURCE, now=0.0)
        if relay.assembler.stats.keyframes >= 2:
            after += 1
            if after == 10:
                break
    assert relay.has_keyframe
    gop = {id(p.payload) for p in relay.kept_gop()}
    assert len(gop) < HISTORY_SIZE - 10
    for i, viewer in enumerate(viewers):
        held = [p for p in viewer._sent_payloads if p is not None]
        assert held and all(id(p) in gop for p in held), "a payload from before the latest keyframe is kept"
        # Every packet sent since the keyframe started is still answered, as it was sent.
        since_keyframe = sent[i][-len(gop) :]
        for data in since_keyframe:
            assert viewer.retransmission(int.from_bytes(data[2:4], "big")) == data


def test_the_kept_gop_costs_its_payloads_and_a_few_bytes_a_packet(stream: list[bytes]) -> None:
    """Kept as parsed packets, each packet of the GOP cost ~170 bytes beside its payload (the object and its three
    ints: 2.8 MB with 100 mountpoints at 1 Mbit/s); it now costs a list slot and 8 bytes of an array."""
    gc.collect()
    tracemalloc.start()
    try:
        relay = StreamRelay(creator=SOURCE[0])
        for packet in stream:
            relay.feed(packet, SOURCE, now=0.0)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    gop = relay.kept_gop()
    assert len(gop) > 100
    payloads = sum(sys.getsizeof(p.payload) for p in gop)
    per_packet = (held - payloads) / len(gop)
    assert per_packet < 60, per_packet
    # What a recording that starts mid-stream gets is still the packets as they came.
    assert [p.serialize() for p in gop] == stream[-len(gop) :]


def test_the_previous_gop_goes_when_a_new_keyframe_begins(stream: list[bytes]) -> None:
    """Kept until the new keyframe was complete, a mountpoint held the previous GOP and most of the new keyframe at
    once (with 100 devices in step, the sum of those peaks is the server's). A viewer that comes meanwhile gets
    the new keyframe as soon as it is complete."""
    relay = StreamRelay(creator=SOURCE[0])
    live = RelayViewer(ssrc=1, payload_type=100, sink=lambda data: None)
    relay.add_viewer(live)
    packets = [RtpPacket.parse(data) for data in stream]
    starts = [i for i, p in enumerate(packets) if i and starts_keyframe(p.payload)]
    second = next(i for i in starts if packets[i].timestamp != packets[0].timestamp)
    for data in stream[: second + 1]:
        relay.feed(data, SOURCE, now=0.0)
    assert relay.assembler.stats.keyframes == 1
    # Only the new keyframe's first packet is kept: by the GOP and by the live viewer's history.
    assert [p.sequence_number for p in relay.kept_gop()] == [] and len(relay._gop) == 1
    assert [p for p in live._sent_payloads if p is not None] == [relay._gop.payloads[0]]
    assert live.retransmission((packets[second].sequence_number + live.seq_offset) & 0xFFFF) is not None
    # A viewer arriving now waits for the keyframe, then gets it whole, from its first packet.
    sent: list[bytes] = []
    late = RelayViewer(ssrc=2, payload_type=100, sink=sent.append)
    relay.add_viewer(late)
    assert not late.live and not sent
    rest = iter(stream[second + 1 :])
    while relay.assembler.stats.keyframes < 2:
        relay.feed(next(rest), SOURCE, now=0.0)
    assert late.live and relay.has_keyframe
    assert RtpPacket.parse(sent[0]).payload == packets[second].payload
    keyframe = [p.payload for p in packets if p.timestamp == packets[second].timestamp]
    assert [RtpPacket.parse(data).payload for data in sent[: len(keyframe)]] == keyframe
