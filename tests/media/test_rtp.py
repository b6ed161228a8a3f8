import pytest

from apuppet.media.rtp import RtpPacket, is_rtcp, pack_header, seq_diff, ts_diff


def test_roundtrip_plain():
    p = RtpPacket(
        payload_type=96, sequence_number=65535, timestamp=0xFFFFFFFF, ssrc=0x12345678, payload=b"abc", marker=True
    )
    data = p.serialize()
    assert len(data) == 15
    assert data[:12] == pack_header(96, True, 65535, 0xFFFFFFFF, 0x12345678)
    assert RtpPacket.parse(data) == p


def test_roundtrip_csrc_and_extension():
    p = RtpPacket(100, 7, 90000, 1, b"\x65payload", csrc=(5, 6), extension=(0xBEDE, b"\x10\xff\x00\x00"))
    q = RtpPacket.parse(p.serialize())
    assert q == p


def test_padding_removed():
    data = bytearray(pack_header(96, False, 1, 2, 3) + b"xy" + b"\x00\x00\x03")
    data[0] |= 0x20
    assert RtpPacket.parse(bytes(data)).payload == b"xy"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80" * 11,
        b"\x40" + b"\x00" * 15,  # version 1
        pack_header(96, False, 1, 2, 3)[:1] + b"\xc8" + b"\x00" * 20,  # RTCP SR type on the RTP port
        bytes([0x82]) + b"\x60" + b"\x00" * 14,  # two CSRCs announced, one present
        bytes([0x90]) + b"\x60" + b"\x00" * 10 + b"\xbe\xde\x00\x05",  # extension longer than the packet
        bytes([0xA0]) + b"\x60" + b"\x00" * 10 + b"\x00",  # zero padding count
    ],
)
def test_garbage_raises_value_error(data):
    with pytest.raises(ValueError):
        RtpPacket.parse(data)


def test_is_rtcp():
    assert is_rtcp(b"\x80\xc8\x00\x06")
    assert not is_rtcp(pack_header(96, True, 1, 1, 1))


def test_serial_arithmetic():
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(10, 10) == 0
    assert ts_diff(5, 0xFFFFFFF0) == 21
    assert ts_diff(0xFFFFFFF0, 5) == -21
