import random
import struct

import av
import numpy as np
import pytest
from aiortc import rtp as aiortc_rtp
from aiortc.codecs.h264 import H264PayloadDescriptor

from apuppet.media.encoder import H264Encoder
from apuppet.media.h264 import (
    MAX_PACKET_SIZE,
    NAL_FU_A,
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    NAL_STAP_A,
    H264Assembler,
    H264Packetizer,
    join_annexb,
    nal_type,
    split_annexb,
)
from apuppet.media.rtp import RtpPacket, pack_header

from .make_fixtures import FIXTURES, read_records


@pytest.fixture(scope="module")
def stream():
    """Two seconds of real libx264 output of a noisy moving picture (big IDRs: FU-A is exercised)."""
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    enc = H264Encoder(320, 240, fps=30, bitrate=2_000_000, keyframe_interval=1.0)
    units = []
    for i in range(60):
        img = np.roll(noise, i * 3, axis=1)
        units += enc.encode(img)
    return units


def packetize(units, ssrc=0x1234, seq=65500):
    pk = H264Packetizer(ssrc, payload_type=96, sequence_number=seq)
    return [(u, pk.packetize(u.data, u.timestamp)) for u in units]


def test_split_annexb_handles_3_and_4_byte_start_codes():
    data = b"\x00\x00\x00\x01\x67abc\x00\x00\x01\x68de\x00\x00\x00\x01\x65xyz\x00"
    assert split_annexb(data) == [b"\x67abc", b"\x68de", b"\x65xyz"]
    assert split_annexb(join_annexb([b"\x41a", b"\x41b"])) == [b"\x41a", b"\x41b"]


def test_packetizer_shapes(stream):
    for unit, packets in packetize(stream):
        parsed = [RtpPacket.parse(p) for p in packets]
        assert all(len(p) <= MAX_PACKET_SIZE for p in packets)
        assert [p.marker for p in parsed] == [False] * (len(parsed) - 1) + [True]
        assert {p.timestamp for p in parsed} == {unit.timestamp}
        assert {p.payload_type for p in parsed} == {96}
        if unit.keyframe:
            first = parsed[0].payload
            assert first[0] & 0x1F == NAL_STAP_A
            (n1,) = struct.unpack_from("!H", first, 1)
            assert first[3] & 0x1F == NAL_SPS
            assert first[3 + n1 + 2] & 0x1F == NAL_PPS
            assert any(p.payload[0] & 0x1F == NAL_FU_A for p in parsed), "a noisy IDR needs FU-A"
    seqs = [RtpPacket.parse(p).sequence_number for _, ps in packetize(stream) for p in ps]
    assert seqs[:40] == [(65500 + i) & 0xFFFF for i in range(40)]


def test_packetizer_injects_known_parameter_sets_before_a_bare_idr():
    pk = H264Packetizer(1)
    sps, pps, idr = b"\x67\x42\x00\x1f", b"\x68\xce", b"\x65" + b"\x88" * 3000
    pk.packetize(join_annexb([sps, pps, idr]), 0)
    packets = [RtpPacket.parse(p) for p in pk.packetize(join_annexb([idr]), 3000)]
    assert packets[0].payload == bytes([NAL_STAP_A | 0x60]) + struct.pack("!H", 4) + sps + struct.pack("!H", 2) + pps
    fu = packets[1:]
    assert fu[0].payload[1] == 0x80 | NAL_IDR and fu[-1].payload[1] == 0x40 | NAL_IDR
    assert b"".join(p.payload[2:] for p in fu) == idr[1:]


def assemble(packets, assembler=None):
    asm = assembler or H264Assembler()
    out = []
    for p in packets:
        out += asm.push_bytes(p)
    return asm, out


def decode(units):
    dec = av.CodecContext.create("h264", "r")
    frames = []
    for u in units:
        frames += dec.decode(av.Packet(u.data))
    return frames


def test_roundtrip_in_order(stream):
    packets = [p for _, ps in packetize(stream) for p in ps]
    asm, out = assemble(packets)
    assert [u.timestamp for u in out] == [u.timestamp for u in stream]
    assert [u.keyframe for u in out] == [u.keyframe for u in stream]
    assert [u.nals for u in out] == [u.nals for u in stream]
    assert asm.stats.lost == asm.stats.malformed == asm.stats.frames_dropped == 0
    assert asm.stats.frames == 60 and asm.stats.keyframes == 2
    assert nal_type(asm.sps) == NAL_SPS and nal_type(asm.pps) == NAL_PPS
    assert len(decode(out)) == 60


def test_reordering_within_window_is_repaired(stream):
    packets = [p for _, ps in packetize(stream) for p in ps]
    rng = random.Random(3)
    shuffled = packets[:]
    for i in range(4, len(shuffled) - 4, 4):  # the first packet sets the start of the sequence
        chunk = shuffled[i : i + 4]
        rng.shuffle(chunk)
        shuffled[i : i + 4] = chunk
    asm, out = assemble(shuffled)
    out += asm.flush()
    assert [u.nals for u in out] == [u.nals for u in stream]
    assert asm.stats.reordered > 0 and asm.stats.lost == 0


def test_loss_drops_frames_until_next_keyframe(stream):
    units_packets = packetize(stream)
    packets = [p for _, ps in units_packets for p in ps]
    # Lose the first packet of frame 5.
    lost_index = sum(len(ps) for _, ps in units_packets[:5])
    asm, out = assemble(packets[:lost_index] + packets[lost_index + 1 :])
    out += asm.flush()
    assert asm.stats.lost == 1
    got = [u.timestamp for u in out]
    assert got == [u.timestamp for u in stream[:5]] + [u.timestamp for u in stream[30:]]
    assert asm.stats.frames_dropped == 25
    assert len(decode(out)) == 35  # everything released decodes


def test_agent_style_marker_on_parameter_sets_and_pt_96():
    """Spec §4.3: the Android agent marks its SPS/PPS STAP-A; the IDR with the same timestamp must not be cut off."""
    enc = H264Encoder(160, 120, fps=10)
    unit = enc.encode(np.zeros((120, 160, 3), np.uint8))[0]
    nals = split_annexb(unit.data)
    sps = next(n for n in nals if nal_type(n) == NAL_SPS)
    pps = next(n for n in nals if nal_type(n) == NAL_PPS)
    pictures = [n for n in nals if nal_type(n) == NAL_IDR]
    stap = bytes([NAL_STAP_A | 0x60]) + struct.pack("!H", len(sps)) + sps + struct.pack("!H", len(pps)) + pps
    packets = [pack_header(96, True, 32, 1000, 7) + stap]
    for i, nal in enumerate(pictures):
        packets.append(pack_header(96, True, 33 + i, 1000, 7) + nal)  # marker per NAL, as the agent does
    asm, out = assemble(packets[:1])
    assert out == []
    asm, out = assemble(packets[1:], asm)
    assert len(out) >= 1 and out[0].keyframe
    assert [nal_type(n) for n in out[0].nals][:3] == [NAL_SPS, NAL_PPS, NAL_IDR]
    assert len(decode(out[:1])) == 1


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # empty
        b"\x1e\x00\x01",  # NAL type 30
        b"\x18\x00\x10\x67",  # STAP-A truncated
        b"\x18",  # empty STAP-A
        b"\x7c\x05abc",  # FU-A continuation without a start
        b"\x7c",  # FU-A too short
        b"\xe5abc",  # forbidden bit
    ],
)
def test_malformed_payload_counted_never_raised(stream, payload):
    packets = [p for _, ps in packetize(stream[:3], seq=10) for p in ps]
    bad = pack_header(96, False, 10 + len(packets), stream[3].timestamp, 0x1234) + payload
    asm, out = assemble(packets + [bad])
    asm, out2 = assemble([p for _, ps in packetize(stream[3:31], seq=11 + len(packets)) for p in ps], asm)
    assert asm.stats.malformed == 1
    assert len(out) == 3
    # Frames after the damaged one wait for the next keyframe (stream[30]).
    assert [u.timestamp for u in out2] == [stream[30].timestamp]


def test_garbage_datagrams_and_restart(stream):
    asm = H264Assembler()
    for junk in (b"", b"hello", b"\x80" * 5, bytes(range(256))):
        assert asm.push_bytes(junk) == []
    assert asm.stats.malformed >= 3
    first = [p for _, ps in packetize(stream[:2], ssrc=1, seq=100) for p in ps]
    # The source restarts: a new SSRC and a new sequence, starting at a keyframe.
    second = [p for _, ps in packetize(stream[30:32], ssrc=2, seq=40000) for p in ps]
    asm, out = assemble(first + second, asm)
    out += asm.flush()
    assert [u.timestamp for u in out] == [u.timestamp for u in stream[:2] + stream[30:32]]
    assert asm.stats.resyncs == 1


def test_duplicates_and_late_packets(stream):
    packets = [p for _, ps in packetize(stream[:4]) for p in ps]
    asm, out = assemble(packets[:3] + packets[:3] + packets[3:])
    assert len(out) == 4 and asm.stats.late == 3


# -- captured fixtures (tests/media/make_fixtures.py): another implementation's packets ------------------------


@pytest.fixture(scope="module")
def libav():
    """(datagrams of libavformat's RFC 6184 packetizer as captured, the access units libx264 gave it)."""
    return list(read_records(FIXTURES / "h264_libav_rtp.bin")), list(read_records(FIXTURES / "h264_libav_annexb.bin"))


def decode_bytes(units):
    dec = av.CodecContext.create("h264", "r")
    return [f.to_ndarray(format="rgb24") for u in units for f in dec.decode(av.Packet(u))]


def test_libav_packets_give_back_the_encoded_access_units(libav):
    datagrams, units = libav
    asm, out = assemble(datagrams)
    out += asm.flush()
    assert [u.nals for u in out] == [split_annexb(u) for u in units]
    assert [u.keyframe for u in out] == [NAL_IDR in {nal_type(n) for n in split_annexb(u)} for u in units]
    assert asm.stats.frames == len(units) and asm.stats.keyframes == sum(u.keyframe for u in out) > 1
    assert asm.stats.lost == asm.stats.malformed == asm.stats.frames_dropped == asm.stats.late == 0
    # The sequence numbers wrap around 65535 inside the capture; every packet is one frame's, in order.
    seqs = [RtpPacket.parse(d).sequence_number for d in datagrams]
    assert 0 in seqs and seqs[0] > seqs[-1]
    assert sum(u.packets for u in out) == len(datagrams)
    ours, reference = decode_bytes([u.data for u in out]), decode_bytes(units)
    assert len(ours) == len(reference) == len(units)
    assert all(np.array_equal(a, b) for a, b in zip(ours, reference, strict=True))


def test_libav_packets_lost_in_a_p_frame_drop_until_the_next_idr(libav):
    datagrams, units = libav
    keyframes = [i for i, u in enumerate(units) if NAL_IDR in {nal_type(n) for n in split_annexb(u)}]
    frame_of = [RtpPacket.parse(d).timestamp for d in datagrams]
    stamps = sorted(set(frame_of), key=frame_of.index)
    victim = keyframes[0] + 3
    assert victim < keyframes[1]
    lost = frame_of.index(stamps[victim])
    asm, out = assemble(datagrams[:lost] + datagrams[lost + 1 :])
    out += asm.flush()
    kept = list(range(victim)) + list(range(keyframes[1], len(units)))
    assert [u.nals for u in out] == [split_annexb(units[i]) for i in kept]
    # A frame that came in one packet vanished whole: nothing of it reached the assembler to be dropped.
    whole = frame_of.count(stamps[victim]) == 1
    assert asm.stats.lost == 1 and asm.stats.frames_dropped == keyframes[1] - victim - whole


def test_libav_packets_reordered_across_the_sequence_wrap_are_repaired(libav):
    datagrams, units = libav
    packets = [RtpPacket.parse(d) for d in datagrams]
    first = [i for i, p in enumerate(packets) if p.timestamp == packets[0].timestamp]
    assert any(packets[i].sequence_number == 0 for i in first[1:]), "the fixture wraps inside the first IDR"
    # The IDR's fragments after the first packet arrive backwards, across 65535 -> 0.
    shuffled = datagrams[:1] + datagrams[1 : len(first)][::-1] + datagrams[len(first) :]
    asm, out = assemble(shuffled)
    out += asm.flush()
    assert [u.nals for u in out] == [split_annexb(u) for u in units]
    assert asm.stats.reordered > 0 and asm.stats.lost == asm.stats.frames_dropped == 0


def test_our_packets_are_read_back_by_aiortc(libav):
    """The packetizer's half, judged by aiortc's depacketizer: every access unit comes back whole."""
    _, units = libav
    pk = H264Packetizer(ssrc=7, payload_type=96, sequence_number=65530)
    for index, unit in enumerate(units):
        packets = [aiortc_rtp.RtpPacket.parse(p) for p in pk.packetize(unit, index * 3000)]
        assert all(len(p.serialize()) <= MAX_PACKET_SIZE for p in packets)
        assert [p.marker for p in packets] == [0] * (len(packets) - 1) + [1]
        annexb = b"".join(H264PayloadDescriptor.parse(p.payload)[1] for p in packets)
        assert split_annexb(annexb) == split_annexb(unit)
