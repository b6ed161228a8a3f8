"""StreamRelay / RelayViewer without sockets: real libx264 packets in, rewritten packets out."""

import numpy as np
import pytest

from apuppet.media.encoder import H264Encoder
from apuppet.media.h264 import NAL_STAP_A, H264Packetizer
from apuppet.media.relay import HISTORY_SIZE, RelayViewer, StreamRelay, parameter_sets_only
from apuppet.media.rtp import RtpPacket, pack_header, seq_diff, ts_diff

SOURCE = ("192.0.2.10", 40000)


@pytest.fixture(scope="module")
def frames() -> list[list[bytes]]:
    """Three GOPs of 10 frames, agent-style: marker also on the SPS/PPS STAP-A (spec §4.3)."""
    enc = H264Encoder(160, 120, fps=10, keyframe_interval=1.0)
    pk = H264Packetizer(ssrc=77, payload_type=96, sequence_number=65530)
    out = []
    for i in range(30):
        img = np.full((120, 160, 3), i * 8 % 255, np.uint8)
        img[10:30, i * 4 : i * 4 + 20] = 255
        for unit in enc.encode(img):
            packets = pk.packetize(unit.data, unit.timestamp)
            if packets[0][12] & 0x1F == NAL_STAP_A:
                p = RtpPacket.parse(packets[0])
                p.marker = True
                packets[0] = p.serialize()
            out.append(packets)
    return out


def viewer(ssrc: int = 0xABCDEF, pt: int = 101) -> tuple[RelayViewer, list[RtpPacket]]:
    got: list[RtpPacket] = []
    return RelayViewer(ssrc, pt, lambda data: got.append(RtpPacket.parse(data))), got


def feed(relay: StreamRelay, packets: list[bytes], addr=SOURCE) -> None:
    for p in packets:
        relay.feed(p, addr)


def test_live_viewer_gets_rewritten_packets_with_the_stap_a_marker_cleared(frames):
    relay = StreamRelay()
    v, got = viewer()
    relay.add_viewer(v)
    assert relay.waiting == [v]  # nothing kept yet: it starts at the first keyframe
    feed(relay, [p for f in frames[:12] for p in f])
    sent = [RtpPacket.parse(p) for f in frames[:12] for p in f]
    assert len(got) == len(sent)
    assert {p.ssrc for p in got} == {0xABCDEF} and {p.payload_type for p in got} == {101}
    assert [p.payload for p in got] == [p.payload for p in sent]
    for a, b in zip(got, got[1:], strict=False):
        assert seq_diff(b.sequence_number, a.sequence_number) == 1
        assert ts_diff(b.timestamp, a.timestamp) in (0, 9000)
    stap = [p for p in got if p.payload[0] & 0x1F == NAL_STAP_A]
    assert stap and not any(p.marker for p in stap)
    # Every frame still ends with a marker.
    assert sum(p.marker for p in got) == 12


def test_new_viewer_gets_the_kept_gop_squeezed_then_live(frames):
    relay = StreamRelay()
    feed(relay, [p for f in frames[:15] for p in f])  # keyframes at 0 and 10: GOP = frames 10..14
    v, got = viewer()
    relay.add_viewer(v)
    gop = [RtpPacket.parse(p) for f in frames[10:15] for p in f]
    assert [p.payload for p in got] == [p.payload for p in gop]
    stamps = sorted({p.timestamp for p in got})
    assert len(stamps) == 5 and stamps[-1] - stamps[0] == 4  # one tick apart: shown at once
    feed(relay, frames[15])
    live = got[len(gop) :]
    assert live and ts_diff(live[0].timestamp, stamps[-1]) == 9000  # the live timeline continues
    assert seq_diff(live[0].sequence_number, got[len(gop) - 1].sequence_number) == 1


def test_pli_replay_keeps_the_viewer_timeline_monotonic(frames):
    relay = StreamRelay()
    v, got = viewer()
    relay.add_viewer(v)
    feed(relay, [p for f in frames[:14] for p in f])
    before = got[-1]
    relay.resync(v)
    replayed = got[got.index(before) + 1 :]
    assert replayed and all(ts_diff(p.timestamp, before.timestamp) > 0 for p in replayed)
    assert seq_diff(replayed[0].sequence_number, before.sequence_number) == 1
    feed(relay, frames[14])
    after = got[-len(frames[14]) :]
    assert ts_diff(after[0].timestamp, replayed[-1].timestamp) == 9000
    assert seq_diff(after[0].sequence_number, replayed[-1].sequence_number) == 1


def test_first_source_latches_and_others_are_dropped(frames):
    relay = StreamRelay()
    v, got = viewer()
    relay.add_viewer(v)
    relay.feed(b"junk from a scanner", ("198.51.100.1", 5000))  # garbage does not latch
    feed(relay, frames[0])
    feed(relay, frames[1], addr=("198.51.100.1", 5000))
    feed(relay, frames[1])
    assert relay.source == SOURCE
    assert relay.stats.foreign == len(frames[1]) and relay.stats.malformed == 1
    assert len(got) == len(frames[0]) + len(frames[1])


def test_loss_makes_new_viewers_wait_for_the_next_keyframe(frames):
    relay = StreamRelay()
    packets = [p for f in frames[:13] for p in f]
    lost = sum(len(f) for f in frames[:11])  # first packet of frame 11
    feed(relay, packets[:lost] + packets[lost + 1 :])
    feed(relay, [p for f in frames[13:15] for p in f])
    assert not relay.has_keyframe
    v, got = viewer()
    relay.add_viewer(v)
    assert got == [] and relay.waiting == [v]
    feed(relay, [p for f in frames[15:21] for p in f])  # the keyframe at 20 completes
    assert got and got[0].payload[0] & 0x1F == NAL_STAP_A
    assert relay.waiting == []


def test_restarted_source_keeps_each_viewer_numbering_continuous(frames):
    relay = StreamRelay()
    v, got = viewer()
    relay.add_viewer(v)
    feed(relay, [p for f in frames[:5] for p in f])
    last = got[-1]
    # The agent's new sender: another SSRC, numbering from 1, its own timestamps, starting with a keyframe.
    restarted = []
    for i, p in enumerate(p for f in frames[10:13] for p in f):
        packet = RtpPacket.parse(p)
        packet.ssrc, packet.sequence_number, packet.timestamp = 999, 1 + i, packet.timestamp - 500_000
        restarted.append(packet.serialize())
    feed(relay, restarted)
    after = got[got.index(last) + 1 :]
    assert len(after) == len(restarted)
    assert seq_diff(after[0].sequence_number, last.sequence_number) == 1
    assert all(seq_diff(b.sequence_number, a.sequence_number) == 1 for a, b in zip(after, after[1:], strict=False))
    assert ts_diff(after[0].timestamp, last.timestamp) > 0
    assert relay.assembler.stats.resyncs == 1


def test_nack_history(frames):
    relay = StreamRelay()
    v, got = viewer()
    relay.add_viewer(v)
    feed(relay, [p for f in frames[:10] for p in f])
    wanted = got[3]
    again = RtpPacket.parse(v.retransmission(wanted.sequence_number))
    assert again == wanted
    assert v.retransmission((wanted.sequence_number + HISTORY_SIZE) & 0xFFFF) is None


def test_parameter_sets_only():
    assert parameter_sets_only(bytes([24, 0, 2, 0x67, 0x42, 0, 1, 0x68]))
    assert not parameter_sets_only(bytes([24, 0, 2, 0x67, 0x42, 0, 1, 0x65]))
    assert parameter_sets_only(b"\x06sei")
    assert not parameter_sets_only(b"\x41slice")
    assert not parameter_sets_only(bytes([28, 0x85]))  # FU-A of an IDR
    assert pack_header(96, True, 1, 1, 1)  # keep import used
