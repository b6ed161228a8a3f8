import av
import numpy as np
import pytest

from apuppet.media.encoder import H264Encoder
from apuppet.media.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_type


def frame(i: int, w: int = 320, h: int = 240) -> np.ndarray:
    img = np.full((h, w, 3), 40, np.uint8)
    x = (i * 8) % (w - 32)
    img[h // 4 : h // 2, x : x + 32] = (255, 200, 0)
    return img


def decode_all(units) -> list[av.VideoFrame]:
    dec = av.CodecContext.create("h264", "r")
    frames = []
    for u in units:
        frames += dec.decode(av.Packet(u.data))
    return frames


def test_gop_timestamps_and_parameter_sets_before_each_idr():
    enc = H264Encoder(320, 240, fps=30, bitrate=500_000, keyframe_interval=1.0)
    units = [u for i in range(61) for u in enc.encode(frame(i))]
    assert len(units) == 61, "zerolatency: one access unit out per frame in"
    assert [u.timestamp for u in units[:3]] == [0, 3000, 6000]
    keyframes = [i for i, u in enumerate(units) if u.keyframe]
    assert keyframes == [0, 30, 60]
    for i in keyframes:
        types = [nal_type(n) for n in units[i].nals]
        assert types.index(NAL_SPS) < types.index(NAL_PPS) < types.index(NAL_IDR), types
    for u in units:
        if not u.keyframe:
            assert NAL_IDR not in [nal_type(n) for n in u.nals]
    # Not skip frames (the 1/90000 time-base trap): the P-frames carry the moving bar.
    pictures = decode_all(units[:30])
    assert len(pictures) == 30
    rgb = pictures[29].to_ndarray(format="rgb24")
    x = 29 * 8
    assert rgb[90, x + 16, 0] > 200 and rgb[90, x - 16, 0] < 80


def test_force_keyframe_and_decodable_picture():
    enc = H264Encoder(320, 240, fps=10, bitrate=300_000, keyframe_interval=10)
    units = [u for i in range(5) for u in enc.encode(frame(i))]
    assert [u.keyframe for u in units] == [True, False, False, False, False]
    enc.force_keyframe()
    forced = enc.encode(frame(5))
    assert forced[0].keyframe
    assert [nal_type(n) for n in forced[0].nals][:2] == [NAL_SPS, NAL_PPS]
    # The forced keyframe alone is decodable (a viewer can start there).
    pictures = decode_all(forced)
    assert len(pictures) == 1
    rgb = pictures[0].to_ndarray(format="rgb24")
    x = 5 * 8
    assert rgb[90, x + 16, 0] > 200 and rgb[90, x + 16, 2] < 60
    assert rgb[200, 10].max() < 80


def test_explicit_timestamps_and_odd_size():
    enc = H264Encoder(321, 241, fps=15)
    assert (enc.width, enc.height) == (320, 240)
    out = enc.encode(frame(0, 321, 241), timestamp=123456)
    assert out[0].timestamp == 123456


def test_rejects_bad_parameters():
    with pytest.raises(ValueError):
        H264Encoder(320, 240, fps=0)
