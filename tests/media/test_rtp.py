import pytest
from aiortc import rtp as aiortc_rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

from apuppet.media.rtp import RtpPacket, is_rtcp, pack_header, pack_pli, seq_diff, ts_diff

from .make_fixtures import FIXTURES, read_records


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


# -- captured fixtures (tests/media/make_fixtures.py), read by aiortc's parser too ----------------------------


def load(name):
    return list(read_records(FIXTURES / name))


def assert_same_as_aiortc(ours: RtpPacket, theirs: aiortc_rtp.RtpPacket) -> None:
    assert (ours.payload_type, ours.sequence_number, ours.timestamp, ours.ssrc) == (
        theirs.payload_type,
        theirs.sequence_number,
        theirs.timestamp,
        theirs.ssrc,
    )
    assert ours.marker == bool(theirs.marker)
    assert list(ours.csrc) == theirs.csrc
    assert ours.payload == theirs.payload


def test_libav_datagrams_parse_as_aiortc_reads_them_and_serialize_back_byte_for_byte():
    datagrams = load("h264_libav_rtp.bin")
    assert len(datagrams) > 50
    for data in datagrams:
        ours = RtpPacket.parse(data)
        assert_same_as_aiortc(ours, aiortc_rtp.RtpPacket.parse(data))
        assert ours.serialize() == data
        assert not is_rtcp(data)


def test_webrtc_header_extensions_csrcs_and_padding():
    extensions = aiortc_rtp.HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
                RTCRtpHeaderExtensionParameters(id=9, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            ]
        )
    )
    packets = load("rtp_aiortc.bin")
    assert any(d[0] & 0x10 for d in packets) and any(d[0] & 0x20 for d in packets) and any(d[0] & 0x0F for d in packets)
    for data in packets:
        ours = RtpPacket.parse(data)
        theirs = aiortc_rtp.RtpPacket.parse(data, extensions)
        assert_same_as_aiortc(ours, theirs)
        if data[0] & 0x10:
            # RFC 8285 one-byte form; the extension's bytes are kept as they were, for a relay to pass on.
            assert ours.extension is not None and ours.extension[0] == 0xBEDE
            assert theirs.extensions.mid is not None
        if data[0] & 0x20:
            # Padding is dropped: the packet comes back shorter by exactly the padding, and still aiortc's.
            again = ours.serialize()
            assert len(again) == len(data) - data[-1]
            assert_same_as_aiortc(RtpPacket.parse(again), aiortc_rtp.RtpPacket.parse(again, extensions))
        else:
            assert ours.serialize() == data


def test_rtcp_from_a_webrtc_peer_is_recognised_and_refused_as_rtp():
    packets = load("rtcp_aiortc.bin")
    assert {aiortc_rtp.RtcpPacket.parse(d)[0].__class__.__name__ for d in packets} >= {
        "RtcpSrPacket",
        "RtcpRrPacket",
        "RtcpPsfbPacket",
        "RtcpRtpfbPacket",
    }
    for data in packets:
        assert is_rtcp(data) and aiortc_rtp.is_rtcp(data)
        with pytest.raises(ValueError):
            RtpPacket.parse(data)


@pytest.mark.parametrize("sender,media", [(1, 2), (0xFFFFFFFF, 0x12345678)])
def test_a_picture_loss_indication_is_the_packet_aiortc_makes_and_parses(sender: int, media: int) -> None:
    """The ingest asks devices for keyframes without aiortc (it is loaded with the first peer connection only)."""
    pli = pack_pli(sender, media)
    reference = aiortc_rtp.RtcpPsfbPacket(fmt=aiortc_rtp.RTCP_PSFB_PLI, ssrc=sender, media_ssrc=media)
    assert pli == bytes(reference)
    assert is_rtcp(pli)
    (parsed,) = aiortc_rtp.RtcpPacket.parse(pli)
    assert isinstance(parsed, aiortc_rtp.RtcpPsfbPacket)
    assert (parsed.fmt, parsed.ssrc, parsed.media_ssrc) == (aiortc_rtp.RTCP_PSFB_PLI, sender, media)
