"""`recorder.Recorder` and `sps_dimensions` without files: real libx264 access units in, samples out."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from apuppet.media.encoder import H264Encoder
from apuppet.media.h264 import NAL_SPS, AccessUnit, H264Assembler, H264Packetizer, nal_type, split_annexb
from apuppet.media.recorder import MAX_CLOCK_DRIFT, Recorder, sps_dimensions
from apuppet.media.rtp import RtpPacket

from .make_fixtures import FIXTURES, HEIGHT, WIDTH, read_records
from .source import code_frame

FPS = 30
STEP = 90_000 // FPS


def encode(count: int, size: tuple[int, int] = (320, 240), keyframe_interval: float = 1.0) -> list[AccessUnit]:
    enc = H264Encoder(*size, fps=FPS, bitrate=500_000, keyframe_interval=keyframe_interval)
    units: list[AccessUnit] = []
    for i in range(count):
        units += enc.encode(code_frame(i, *size))
    return units


def sps_of(data: bytes) -> bytes:
    return next(n for n in split_annexb(data) if nal_type(n) == NAL_SPS)


@pytest.mark.parametrize("size", [(320, 240), (322, 242), (360, 640), (1280, 720), (98, 34)])
def test_sps_dimensions_of_libx264_baseline_streams(size: tuple[int, int]) -> None:
    # 242, 34, 98 and 720 are not multiples of 16: the SPS crops, and the crop must be read right.
    units = encode(1, size)
    assert units[0].keyframe
    assert sps_dimensions(sps_of(units[0].data)) == size


def test_sps_dimensions_of_a_high_profile_stream_with_scaling_matrices_and_interlace() -> None:
    """High profile carries chroma format, bit depths and scaling lists before the size (§7.3.2.1.1); PAFF
    interlacing counts map units of two macroblock rows. Made by FFmpeg's libx264, not by the agent's encoder."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = 712, 404, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.options = {"preset": "ultrafast", "profile": "high", "x264-params": "cqm=jvt:interlaced=1:keyint=5"}
    codec.open()
    packets = codec.encode(av.VideoFrame.from_ndarray(code_frame(0, 712, 404))) + codec.encode(None)
    sps = sps_of(b"".join(bytes(p) for p in packets))
    assert sps[1] == 100  # profile_idc: High
    assert sps_dimensions(sps) == (712, 404)


def test_sps_dimensions_of_ffmpegs_own_stream() -> None:
    annexb = next(read_records(FIXTURES / "h264_libav_annexb.bin"))
    assert sps_dimensions(sps_of(annexb)) == (WIDTH, HEIGHT)


@pytest.mark.parametrize("garbage", [b"", b"\x67", b"\x65\x88\x84", b"\x67\x42\xc0\x1e\x00\x00\x00\x00"])
def test_sps_dimensions_refuse_what_is_not_an_sps(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        sps_dimensions(garbage)


def test_a_recording_starts_at_a_keyframe_and_counts_time_from_it() -> None:
    units = encode(70)  # keyframes at 0, 30, 60
    rec = Recorder()
    samples = [rec.push(u, i / FPS) for i, u in enumerate(units[10:], start=10)]
    assert samples[:20] == [None] * 20  # frames 10-29 come before the first keyframe
    kept = [s for s in samples if s is not None]
    assert len(kept) == 40 and kept[0].keyframe and kept[0].data == units[30].data
    assert [s.pts for s in kept] == [i * STEP for i in range(40)]
    assert [s.keyframe for s in kept] == [i % 30 == 0 for i in range(40)]
    assert rec.dimensions == (320, 240)
    assert rec.stats.skipped == 20 and rec.stats.samples == 40 and rec.stats.keyframes == 2
    assert rec.duration == pytest.approx(39 / FPS)


def test_the_timeline_follows_rtp_timestamps_across_their_wrap() -> None:
    units = encode(10)
    rec = Recorder()
    start = 0xFFFF_FFFF - 3 * STEP
    pts = [
        rec.push(AccessUnit((start + i * STEP) & 0xFFFF_FFFF, u.data, u.keyframe), i / FPS) for i, u in enumerate(units)
    ]
    assert [s.pts for s in pts if s is not None] == [i * STEP for i in range(10)]
    assert rec.stats.discontinuities == 0


def test_a_restart_waits_for_the_next_keyframe_and_keeps_the_time_that_passed() -> None:
    units = encode(65)
    rec = Recorder()
    out = [rec.push(u, i / FPS) for i, u in enumerate(units[:12])]
    assert all(s is not None for s in out)
    rec.restart()  # the writer dropped a picture
    out = [(i, rec.push(u, i / FPS)) for i, u in enumerate(units[12:], start=12)]
    resumed = [(i, s) for i, s in out if s is not None]
    assert resumed[0][0] == 30 and resumed[0][1].keyframe
    assert all(s.pts == i * STEP for i, s in resumed)  # the gap stays a gap: frame 30 is still at 1 s


def test_a_restarted_sender_or_a_timestamp_that_disagrees_with_the_clock_uses_the_clock() -> None:
    units = encode(31)
    rec = Recorder()
    first = rec.push(units[0], 100.0)
    assert first is not None and first.pts == 0
    # The agent's new sender: timestamps from another origin (here, behind), 0.5 s after the last picture.
    again = rec.push(AccessUnit(0xFFFF_0000, units[30].data, True), 100.5)
    assert again is not None and again.pts == 45_000
    # Timestamps that run ahead of the clock by more than MAX_CLOCK_DRIFT are not followed either.
    ahead = AccessUnit((0xFFFF_0000 + int((MAX_CLOCK_DRIFT + 5) * 90_000)) & 0xFFFF_FFFF, units[1].data, False)
    jumped = rec.push(ahead, 100.6)
    assert jumped is not None and jumped.pts == 45_000 + 9000
    # A timestamp equal to the last one still moves forward: MP4 needs increasing times.
    same = rec.push(AccessUnit(ahead.timestamp, units[2].data, False), 100.6)
    assert same is not None and same.pts > jumped.pts
    assert rec.stats.discontinuities == 3


def test_replay_of_the_relays_kept_gop_gives_its_pictures_in_order() -> None:
    units = encode(45)
    pk = H264Packetizer(ssrc=9, sequence_number=65530)
    packets = [RtpPacket.parse(p) for u in units[30:] for p in pk.packetize(u.data, u.timestamp)]
    rec = Recorder()
    samples = rec.replay(packets, 5.0)
    assert [split_annexb(s.data) for s in samples] == [split_annexb(u.data) for u in units[30:]]
    assert [s.pts for s in samples] == [i * STEP for i in range(15)]
    # What the relay's own assembler hands over next continues the timeline.
    nxt = rec.push(AccessUnit(units[44].timestamp + STEP, units[1].data, False), 5.03)
    assert nxt is not None and nxt.pts == 15 * STEP


def test_units_that_the_assembler_gives_after_a_loss_restart_at_a_keyframe() -> None:
    """The relay's assembler drops what follows a loss until a keyframe; the recorder gets clean units only."""
    units = encode(70)
    pk = H264Packetizer(ssrc=9)
    assembler = H264Assembler()
    rec = Recorder()
    kept = []
    for i, unit in enumerate(units):
        packets = pk.packetize(unit.data, unit.timestamp)
        if i == 40:
            packets = packets[1:]  # a lost packet in frame 40
        for packet in packets:
            for out in assembler.push(RtpPacket.parse(packet)):
                sample = rec.push(out, out.timestamp / 90_000)
                if sample is not None:
                    kept.append(out.timestamp // STEP)
    assert kept == [*range(0, 40), *range(60, 70)]
    assert np.all(np.diff(kept) > 0)
