"""The agent's video path over a real UDP socket: demo phone → libx264 → RTP → reassembled and decoded."""

import asyncio
import time

import av

from apuppet.agent.phone import Phone
from apuppet.agent.rtpsender import RtpSender
from apuppet.agent.sources.base import Geometry
from apuppet.agent.sources.demo import DemoSource
from apuppet.agent.video import VideoSettings, VideoStreamer
from apuppet.media.h264 import MAX_PACKET_SIZE, NAL_IDR, NAL_PPS, NAL_SPS, H264Assembler
from apuppet.media.rtp import RtpPacket


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagram_received(self, data: bytes, addr) -> None:
        self.packets.append(data)


async def receiver():
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
    return transport, protocol, transport.get_extra_info("sockname")[1]


def decode(packets: list[bytes]):
    assembler = H264Assembler()
    units = []
    for data in packets:
        units.extend(assembler.push_bytes(data))
    units.extend(assembler.flush())
    codec = av.CodecContext.create("h264", "r")
    frames = []
    for unit in units:
        frames.extend(codec.decode(av.Packet(unit.data)))
    return units, [f.to_ndarray(format="rgb24") for f in frames]


async def stream_for(streamer: VideoStreamer, seconds: float) -> None:
    streamer.start()
    await asyncio.sleep(seconds)
    await streamer.stop()


async def test_stream_decodes_and_follows_the_rules():
    transport, rx, port = await receiver()
    sender = await RtpSender.open("127.0.0.1", port)
    phone = Phone()
    source = DemoSource(phone)
    geometry = Geometry.fit(source.width, source.height)
    streamer = VideoStreamer(source, geometry, sender, VideoSettings(fps=30, keyframe_interval=0.5, refresh=0.2))
    try:
        streamer.start()
        await asyncio.sleep(0.4)
        phone.tap(70, 150)  # open the counter app
        await asyncio.sleep(0.8)
        await streamer.stop()
    finally:
        sender.close()
        transport.close()
    packets = [RtpPacket.parse(p) for p in rx.packets]
    assert packets and all(len(p) <= MAX_PACKET_SIZE for p in rx.packets)
    assert {p.payload_type for p in packets} == {96}
    assert len({p.ssrc for p in packets}) == 1
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    units, frames = decode(rx.packets)
    assert units[0].keyframe
    # Keyframes follow the clock (0.5 s) even though frames are irregular, each with SPS and PPS first.
    keyframes = [u for u in units if u.keyframe]
    assert len(keyframes) >= 2
    for unit in keyframes:
        kinds = [n[0] & 0x1F for n in unit.nals]
        assert kinds.index(NAL_SPS) < kinds.index(NAL_PPS) < kinds.index(NAL_IDR)
    assert frames[0].shape == (640, 360, 3)
    # The first frames show the home screen, the last ones the counter app (a light background).
    assert frames[0][400, 180].mean() < 120
    assert frames[-1][400, 20].mean() > 200
    # Timestamps are 90 kHz wall-clock time: about 1.2 s between the first and the last frame.
    span = (units[-1].timestamp - units[0].timestamp) / 90_000
    assert 0.6 < span < 3.0


async def test_still_screen_is_refreshed_slowly_not_at_full_rate():
    transport, rx, port = await receiver()
    sender = await RtpSender.open("127.0.0.1", port)

    class Still(DemoSource):
        def grab(self, force: bool = False):
            return self.phone.render(0.0) if force else None

    source = Still(Phone())
    streamer = VideoStreamer(
        source, Geometry.fit(360, 640), sender, VideoSettings(fps=30, keyframe_interval=10, refresh=0.25)
    )
    try:
        started = time.monotonic()
        await stream_for(streamer, 1.1)
        elapsed = time.monotonic() - started
    finally:
        sender.close()
        transport.close()
    # One frame per refresh period instead of 30 per second; never none.
    assert 2 <= streamer.frames <= elapsed / 0.25 + 2
    assert streamer.keyframes == 1


async def test_keyframe_on_request_and_geometry_scaling():
    transport, rx, port = await receiver()
    sender = await RtpSender.open("127.0.0.1", port)
    source = DemoSource(Phone())
    geometry = Geometry.fit(360, 640, max_side=320)
    assert (geometry.width, geometry.height) == (180, 320)
    streamer = VideoStreamer(source, geometry, sender, VideoSettings(fps=20, keyframe_interval=30, refresh=0.1))
    try:
        streamer.start()
        await asyncio.sleep(0.5)
        streamer.request_keyframe()
        await asyncio.sleep(0.5)
        await streamer.stop()
    finally:
        sender.close()
        transport.close()
    units, frames = decode(rx.packets)
    assert sum(u.keyframe for u in units) == 2
    assert frames[0].shape == (320, 180, 3)


def test_geometry_follows_apuppet_rules():
    g = Geometry.fit(1080, 2340)
    assert (g.width, g.height) == (368, 800)
    assert abs(g.scale - 369 / 1080) < 1e-9
    assert g.to_source(184, 400) == (538, 1170)
    assert g.to_source(-5, 99999) == (0, 2339)
    small = Geometry.fit(361, 641)
    assert (small.width, small.height, small.scale) == (360, 640, 1.0)
    assert small.to_source(10, 20) == (10, 20)


async def test_sender_counts_and_survives_an_unreachable_port():
    transport, rx, port = await receiver()
    transport.close()  # nobody listens any more: ICMP errors must not raise
    sender = await RtpSender.open("127.0.0.1", port)
    for _ in range(5):
        sender.send([b"\x80" + bytes(20)])
        await asyncio.sleep(0.01)
    assert sender.packets == 5
    sender.close()
    sender.close()
    assert sender.bytes == 5 * 21
