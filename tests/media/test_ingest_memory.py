"""What packets waiting in a mountpoint's outbox cost: a header and a reference to the payload the GOP keeps, not a
joined copy per viewer (memory with 100 devices each watched once, issue 16 §5; bench/memory.py). A copy queued
between the payloads the GOP keeps left a hole in the allocator's heap when it was sent."""

from __future__ import annotations

import asyncio
import gc
import itertools
import tracemalloc

from apuppet.media.h264 import H264Packetizer
from apuppet.media.ingest import RtpIngest
from apuppet.media.rtp import RtpPacket

from .test_ice import free_range

SOURCE = ("127.0.0.1", 40000)


def packets(count: int) -> list[bytes]:
    """Full-size FU-A packets of one large access unit, as the agent sends a keyframe."""
    packetizer = H264Packetizer(ssrc=5, payload_type=96, sequence_number=100)
    unit = b"\x00\x00\x00\x01\x65" + bytes(range(256)) * (count * 5)
    return packetizer.packetize(unit, 3000)[:count]


def fed(ingest: RtpIngest, stream: list[bytes]) -> int:
    """Bytes still allocated after `ingest`'s relay took `stream` (tracemalloc), before the pump runs."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for data in stream:
            ingest.relay.feed(data, SOURCE, now=0.0)
        return int(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()


async def test_queued_packets_share_their_payload_and_go_out_whole() -> None:
    stream = packets(300)
    assert sum(len(p) for p in stream) > 300_000
    alone = RtpIngest("127.0.0.1", free_range(2), creator=SOURCE[0])
    try:
        kept = fed(alone, stream)  # what the relay keeps anyway: the GOP, the assembler's unit in progress
    finally:
        alone.close()
    ingest = RtpIngest("127.0.0.1", free_range(2), creator=SOURCE[0])
    sent: dict[int, list[bytes]] = {1: [], 2: []}
    try:
        for ssrc in sent:

            async def send(data: bytes, into: list[bytes] = sent[ssrc]) -> None:
                into.append(data)

            viewer = ingest.viewer(ssrc, 100, send)
            viewer.live = True  # watching already (no keyframe replay: only the live path is measured)
            ingest.relay.viewers.append(viewer)
        queued = fed(ingest, stream) - kept
        assert len(ingest._outbox) == 2 * len(stream)
        # ~150 bytes per packet and viewer (a tuple, a 12-byte header, the history's slot), where joined packets
        # added ~1.2 KB more.
        per_queued = queued / len(ingest._outbox)
        assert per_queued < 400, per_queued
        # The pump sends each packet whole, rewritten for its viewer.
        ingest._kick()  # as a read from the socket does
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while any(len(got) < len(stream) for got in sent.values()):
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        for ssrc, got in sent.items():
            rewritten = [RtpPacket.parse(data) for data in got]
            assert [p.ssrc for p in rewritten] == [ssrc] * len(stream)
            assert [p.payload for p in rewritten] == [RtpPacket.parse(data).payload for data in stream]
            assert all((b.sequence_number - a.sequence_number) & 0xFFFF == 1 for a, b in itertools.pairwise(rewritten))
    finally:
        ingest.close()
