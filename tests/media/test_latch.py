"""Who feeds a mountpoint: the creator's address wins the latch race, garbage never latches, and only the latched
source's RTP counts as a sign of life. Real UDP sockets on loopback: the creator is 127.0.0.1, the stranger
127.0.0.2 (any 127/8 address is local on Linux)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from apuppet.api.gateway import Gateway
from apuppet.config import Config
from apuppet.media.ingest import RtpIngest
from apuppet.media.latch import SourceLatch, h264_payload_ok, latchable
from apuppet.media.peers import Peers
from apuppet.media.relay import StreamRelay
from apuppet.media.rtp import RtpPacket, pack_header
from apuppet.netaddr import client_key
from apuppet.plugins.streaming import StreamingPlugin
from apuppet.server.app import media_settings
from tests.inproc import InProcClient, plugin_data

from .source import RtpSource
from .test_ice import free_range
from .test_ingest import until

CREATOR = "127.0.0.1"
STRANGER = "127.0.0.2"


def rtp(seq: int, payload: bytes = b"\x41\x9a\x00\x11", pt: int = 96, ssrc: int = 0xBAD) -> bytes:
    """A well-formed RTP/H.264 packet (a non-IDR slice): what a careful attacker sends."""
    return pack_header(pt, True, seq, seq * 3000, ssrc) + payload


def udp(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


@pytest.fixture
def stranger() -> Iterator[socket.socket]:
    sock = udp(STRANGER)
    yield sock
    sock.close()


class Spray:
    """The reported attack: one valid RTP packet to every port of the range every 20 ms."""

    def __init__(self, sock: socket.socket, port_range: tuple[int, int], host: str = CREATOR) -> None:
        self.sock = sock
        self.ports = range(port_range[0], port_range[1] + 1)
        self.host = host
        self.sent = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        seq = 0
        while True:
            seq += 1
            for port in self.ports:
                try:
                    self.sock.sendto(rtp(seq), (self.host, port))
                    self.sent += 1
                except OSError:
                    pass
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


# -- sans-I/O --------------------------------------------------------------------------------------------------
def test_valid_h264_payloads_and_garbage():
    assert h264_payload_ok(b"\x65\x88")  # IDR slice
    assert h264_payload_ok(b"\x18\x00\x02\x67\x42\x00\x02\x68\xce")  # STAP-A: SPS + PPS
    assert h264_payload_ok(b"\x7c\x85\x00")  # FU-A start of an IDR
    assert not h264_payload_ok(b"")
    assert not h264_payload_ok(b"\xe5\x88")  # forbidden bit
    assert not h264_payload_ok(b"\x00abc")  # NAL type 0
    assert not h264_payload_ok(b"\x19abc")  # STAP-B: not packetization mode 1
    assert not h264_payload_ok(b"\x18\x00\x09\x67")  # STAP-A size past the end
    assert not h264_payload_ok(b"\x7c\xc5\x00")  # FU-A with start and end bits
    assert latchable(RtpPacket.parse(rtp(1)))
    assert not latchable(RtpPacket.parse(rtp(1, pt=0)))  # a static payload type is not H.264
    assert client_key("::ffff:127.0.0.1") == client_key("127.0.0.1") == "127.0.0.1"
    # One device's IPv6 connections may use different temporary addresses of its /64.
    assert client_key("2001:db8:1:2::aa") == client_key("2001:db8:1:2:abcd::1%eth0") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::aa") != client_key("2001:db8:1:2::aa")


def test_the_creator_wins_even_after_a_strangers_packets():
    latch = SourceLatch(CREATOR, grace=10)
    assert not latch.offer((STRANGER, 5000), now=0.0)
    assert not latch.offer((STRANGER, 5000), now=9.9)
    assert latch.offer(("::ffff:127.0.0.1", 40000, 0, 0), now=9.95)  # as a dual-stack socket reports it
    assert latch.source == ("::ffff:127.0.0.1", 40000, 0, 0) and not latch.fell_back
    assert not latch.offer((STRANGER, 5000), now=100.0)


def test_an_ipv6_creator_is_recognised_by_its_64():
    latch = SourceLatch("2001:db8:1:2::10", grace=10)
    assert not latch.offer(("2001:db8:1:3::10", 5000, 0, 0), now=0.0)
    assert latch.offer(("2001:db8:1:2:9f3e:1c2a:77b0:4d11", 41000, 0, 0), now=0.1)  # a temporary address


def test_fallback_after_the_grace_period_goes_to_the_busiest_source():
    latch = SourceLatch(CREATOR, grace=10)
    assert not latch.offer(("192.0.2.9", 1), now=0.0)  # the first one: a single early packet
    for i in range(20):
        assert not latch.offer(("198.51.100.7", 40000), now=1.0 + i * 0.4)
    assert latch.source is None
    assert not latch.offer(("192.0.2.9", 1), now=10.5)  # the grace is over: the busiest source wins, not this one
    assert latch.source == ("198.51.100.7", 40000) and latch.fell_back


def test_a_strangers_packets_from_long_ago_do_not_weigh_in_the_fallback():
    """A stranger's packet, then silence longer than the grace, then a device on another address: the fall-back
    compares what was sent in one unbroken stretch, so the old packet neither wins nor ties."""
    latch = SourceLatch(CREATOR, grace=10)
    assert not latch.offer((STRANGER, 5000), now=0.0)
    device = ("198.51.100.7", 40000)
    for i in range(26):
        latch.offer(device, now=30.0 + i * 0.4)
    assert latch.source == device and latch.fell_back


def test_a_spray_is_judged_once_per_host():
    latch = SourceLatch(CREATOR, grace=10)
    for port in range(5000, 5200):
        latch.offer((STRANGER, port), now=0.0)
    assert list(latch._judged) == [STRANGER]


def test_without_a_known_creator_the_first_valid_source_latches():
    relay = StreamRelay(creator=None)
    assert not relay.feed(b"\x80\x60" + bytes(10) + b"\xff\xfe", (STRANGER, 1), now=0.0)
    assert relay.source is None and relay.stats.malformed == 1
    assert relay.feed(rtp(1), (STRANGER, 1), now=0.0)
    assert relay.source == (STRANGER, 1)


def test_garbage_that_parses_as_rtp_does_not_latch():
    relay = StreamRelay(creator=CREATOR)
    # Version 2, dynamic payload type, but no H.264 in it.
    assert not relay.feed(pack_header(96, False, 1, 0, 1) + b"\xff\xff\xff", (CREATOR, 9), now=0.0)
    assert not relay.feed(pack_header(0, False, 1, 0, 1) + b"\x41\x00", (CREATOR, 9), now=0.0)
    assert relay.source is None and relay.stats.malformed == 2 and relay.stats.packets_in == 0


# -- real sockets ------------------------------------------------------------------------------------------------
async def test_a_stranger_spraying_before_the_device_does_not_capture_the_ingest(stranger):
    ingest = RtpIngest(CREATOR, free_range(10), creator=CREATOR)
    device = RtpSource(ingest.port)
    try:
        for seq in range(5):
            stranger.sendto(rtp(seq), (CREATOR, ingest.port))
        await until(lambda: ingest.relay.stats.foreign == 5)
        assert ingest.relay.source is None
        assert ingest.last_packet_at is None, "a stranger's packets are no sign of life"
        await device.run(frames=10)
        await until(lambda: ingest.relay.source is not None and ingest.relay.has_keyframe)
        assert ingest.relay.source == (CREATOR, device.sock.getsockname()[1])
        stranger.sendto(rtp(6), (CREATOR, ingest.port))
        await until(lambda: ingest.relay.stats.foreign == 6)
        assert ingest.relay.stats.packets_in >= 10
    finally:
        device.close()
        ingest.close()


async def test_only_the_latched_sources_rtp_refreshes_last_packet_at(stranger):
    ingest = RtpIngest(CREATOR, free_range(10), creator=CREATOR)
    device = udp(CREATOR)
    try:
        device.sendto(b"garbage", (CREATOR, ingest.port))
        await until(lambda: ingest.relay.stats.malformed == 1)
        assert ingest.last_packet_at is None
        device.sendto(rtp(1), (CREATOR, ingest.port))
        await until(lambda: ingest.relay.stats.packets_in == 1)
        alive = ingest.last_packet_at
        assert alive is not None
        await asyncio.sleep(0.05)
        # The device is dead; garbage from it and RTP from a stranger must not make it look alive.
        device.sendto(b"\x80garbage", (CREATOR, ingest.port))
        stranger.sendto(rtp(2), (CREATOR, ingest.port))
        await until(lambda: ingest.relay.stats.malformed == 2 and ingest.relay.stats.foreign == 1)
        assert ingest.last_packet_at == alive
        device.sendto(rtp(2), (CREATOR, ingest.port))
        await until(lambda: ingest.relay.stats.packets_in == 2)
        assert ingest.last_packet_at is not None and ingest.last_packet_at > alive
    finally:
        device.close()
        ingest.close()


async def test_a_device_on_another_address_is_latched_after_the_grace_period_and_logged_once(stranger, caplog):
    ingest = RtpIngest(CREATOR, free_range(10), creator=CREATOR, grace=0.3)
    caplog.set_level(logging.WARNING, logger="apuppet.media.ingest")
    try:
        for seq in range(40):
            stranger.sendto(rtp(seq), (CREATOR, ingest.port))
            await asyncio.sleep(0.02)
        await until(lambda: ingest.relay.source is not None)
        assert ingest.relay.source == stranger.getsockname()
        assert ingest.relay.stats.packets_in >= 1
        fallbacks = [r for r in caplog.records if "latched to" in r.getMessage()]
        assert len(fallbacks) == 1, caplog.text
        assert "127.0.0.2:" in fallbacks[0].getMessage()
    finally:
        ingest.close()


async def test_a_slow_device_takes_its_mountpoint_back_from_a_stranger_who_won_the_fallback(stranger, caplog):
    """The device's user took longer than the grace period to allow screen capture, a stranger sprayed meanwhile."""
    ingest = RtpIngest(CREATOR, free_range(10), creator=CREATOR, grace=0.2)
    caplog.set_level(logging.WARNING, logger="apuppet.media.ingest")
    device = RtpSource(ingest.port)
    try:
        for seq in range(20):
            stranger.sendto(rtp(seq), (CREATOR, ingest.port))
            await asyncio.sleep(0.02)
        await until(lambda: ingest.relay.source == stranger.getsockname())
        await device.run(frames=10)
        await until(lambda: ingest.relay.source == (CREATOR, device.sock.getsockname()[1]))
        await until(lambda: ingest.relay.has_keyframe)
        # Only once: the stranger cannot take it back, and neither can another creator-side port.
        foreign = ingest.relay.stats.foreign
        stranger.sendto(rtp(99), (CREATOR, ingest.port))
        other = udp(CREATOR)
        other.sendto(rtp(100), (CREATOR, ingest.port))
        other.close()
        await until(lambda: ingest.relay.stats.foreign == foreign + 2)
        assert ingest.relay.source == (CREATOR, device.sock.getsockname()[1])
        assert len([r for r in caplog.records if "sends now" in r.getMessage()]) == 1, caplog.text
    finally:
        device.close()
        ingest.close()


# -- the attack through the streaming plugin ---------------------------------------------------------------------
def agent_create(mp_id: str) -> dict[str, object]:
    return {"request": "create", "type": "rtp", "id": mp_id, "pin": "4321", "video": True, "videoport": 0}


@pytest.fixture
async def plugin_server() -> AsyncIterator[tuple[StreamingPlugin, InProcClient, Config]]:
    lo, hi = free_range(20)
    config = Config(admin_secret="adm", rtp_port_range=f"{lo}-{hi}", bind=CREATOR)
    plugin = StreamingPlugin(config, Peers(media_settings(config)))
    gateway = Gateway([plugin], session_timeout=60)
    yield plugin, InProcClient(gateway, remote=CREATOR), config
    await gateway.close()


async def test_spraying_the_port_range_captures_no_new_mountpoint(plugin_server, stranger):
    """The reviewer's attack: a spray over the whole range, devices starting 100 ms after `create`."""
    plugin, janus, config = plugin_server
    session = janus.create()
    handle = janus.attach(session, "janus.plugin.streaming")
    spray = Spray(stranger, config.port_range)
    devices: list[RtpSource] = []
    try:
        await asyncio.sleep(0.1)
        for i in range(5):
            reply = plugin_data(janus.message(session, handle, agent_create(f"70{i}")))
            assert reply["streaming"] == "created", reply
            await asyncio.sleep(0.1)
            device = RtpSource(reply["stream"]["video_port"], fps=15)
            devices.append(device)
            device.send_frame()
        for i, device in enumerate(devices):
            ingest = plugin.ingests[f"70{i}"]
            await until(lambda ingest=ingest: ingest.relay.source is not None)  # type: ignore[misc]
            assert ingest.relay.source == (CREATOR, device.sock.getsockname()[1]), f"mountpoint {i} captured"
            assert ingest.relay.stats.foreign > 0, "the spray did reach the port"
        assert spray.sent > 0
        listed = plugin_data(janus.message(session, handle, {"request": "list"}))["list"]
        assert len([m for m in listed if "video_age_ms" in m]) == 5
    finally:
        await spray.stop()
        for device in devices:
            device.close()


async def test_a_sprayed_mountpoint_whose_device_never_sends_shows_no_video_age(plugin_server, stranger):
    plugin, janus, config = plugin_server
    session = janus.create()
    handle = janus.attach(session, "janus.plugin.streaming")
    reply = plugin_data(janus.message(session, handle, agent_create("800")))
    spray = Spray(stranger, config.port_range)
    try:
        ingest = plugin.ingests["800"]
        await until(lambda: ingest.relay.stats.foreign >= 3)
        listed = plugin_data(janus.message(session, handle, {"request": "list"}))["list"]
        assert [m for m in listed if str(m["id"]) == "800"] == [
            {"id": "800", "type": "live", "description": "800", "enabled": True}
        ], "a dead device must not look live"
        assert reply["stream"]["video_port"] == ingest.port
    finally:
        await spray.stop()
