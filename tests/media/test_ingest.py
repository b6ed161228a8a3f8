"""RtpIngest on real sockets: dual-stack listening, source latching, PLI back to the source."""

import asyncio
import socket

import numpy as np
import pytest

from apuppet.media.encoder import H264Encoder
from apuppet.media.h264 import H264Packetizer
from apuppet.media.ingest import RtpIngest
from apuppet.media.rtp import pack_header

from .test_ice import free_range


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def until(predicate, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline
        await asyncio.sleep(0.01)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 on this host")
async def test_dual_stack_ingest_hears_ipv4_and_latches_the_first_source():
    ingest = RtpIngest("0.0.0.0", free_range(10), dual_stack=True)
    v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        assert ingest.sock.family == socket.AF_INET6
        v4.sendto(pack_header(96, True, 1, 0, 7) + b"\x41abc", ("127.0.0.1", ingest.port))
        await until(lambda: ingest.relay.stats.packets_in == 1)
        assert ingest.relay.source[0] == "::ffff:127.0.0.1"
        v6.sendto(pack_header(96, True, 2, 0, 7) + b"\x41abc", ("::1", ingest.port))
        await until(lambda: ingest.relay.stats.foreign == 1)
    finally:
        v4.close()
        v6.close()
        ingest.close()


async def test_explicit_port_and_port_in_use():
    low, _ = free_range(1)
    ingest = RtpIngest("127.0.0.1", (10000, 10001), port=low)
    try:
        assert ingest.port == low
        with pytest.raises(OSError):
            RtpIngest("127.0.0.1", (10000, 10001), port=low)
    finally:
        ingest.close()


async def test_a_viewer_without_a_keyframe_makes_the_ingest_ask_the_source_for_one():
    ingest = RtpIngest("127.0.0.1", free_range(10))
    source = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    source.bind(("127.0.0.1", 0))
    source.setblocking(False)
    try:
        enc = H264Encoder(64, 64, fps=10, keyframe_interval=100)
        packetizer = H264Packetizer(ssrc=0xCAFE)
        for i in range(3):
            unit = enc.encode(np.full((64, 64, 3), i * 40, np.uint8))[0]
            for packet in packetizer.packetize(unit.data, unit.timestamp):
                source.sendto(packet, ("127.0.0.1", ingest.port))
        await until(lambda: ingest.relay.has_keyframe)
        # A loss (five packets never arrive): the kept GOP is no longer usable, and a new viewer has to wait.
        packetizer.sequence_number += 5
        for _ in range(4):
            unit = enc.encode(np.zeros((64, 64, 3), np.uint8))[0]
            for packet in packetizer.packetize(unit.data, unit.timestamp):
                source.sendto(packet, ("127.0.0.1", ingest.port))
        await until(lambda: not ingest.relay.has_keyframe)
        viewer = ingest.viewer(1, 101, lambda data: asyncio.sleep(0))
        ingest.add_viewer(viewer)
        await until(lambda: _readable(source))
        pli = source.recv(100)
        assert pli[1] == 206 and pli[0] & 0x1F == 1  # RTCP PSFB, FMT 1 (PLI)
        assert int.from_bytes(pli[8:12], "big") == 0xCAFE
    finally:
        source.close()
        ingest.close()


def _readable(sock: socket.socket) -> bool:
    try:
        sock.recv(100, socket.MSG_PEEK)
        return True
    except BlockingIOError:
        return False
