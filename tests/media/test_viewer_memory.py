"""A server-side viewer's peer connection only sends: it must not carry aiortc's receive-side bitrate estimator,
which is 1000 objects per viewer, nor a jitter buffer and decoder queue of its own (memory with 100 devices each
watched once, issue 16 §5; bench/memory.py)."""

from __future__ import annotations

import gc
import queue
import threading

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rate import RateBucket, RemoteBitrateEstimator

from apuppet.media.ingest import RtpIngest
from apuppet.media.peers import Peers
from apuppet.media.settings import MediaSettings
from apuppet.media.viewer import Viewer
from tests.inproc import InProcClient
from tests.plugins.test_streaming import config, open_viewer, server, sources, stream_from_agent, viewers

from .test_ice import free_range

__all__ = ["config", "server", "sources", "viewers"]  # fixtures


def rate_buckets() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, RateBucket))


def rate_buckets_in(estimator: RemoteBitrateEstimator) -> int:
    counter = estimator.incoming_bitrate
    return len(counter._buckets) + 1  # the window's buckets and its running total


async def test_a_watching_viewer_adds_only_its_own_receivers_estimator(server, viewers, sources) -> None:
    gateway, _plugin = server
    janus = InProcClient(gateway)
    stream_from_agent(janus, sources)
    before = rate_buckets()
    one_estimator = rate_buckets_in(RemoteBitrateEstimator())
    viewer = await open_viewer(janus, viewers)
    await viewer.wait_frames(3)
    grown = rate_buckets() - before
    # The test's decoding peer (in this process too) has one estimator; the server's sendonly peer must add none.
    assert grown <= one_estimator, (grown, one_estimator)


def count(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


RECEIVE_SIDE = ("_RTCRtpReceiver__jitter_buffer", "_RTCRtpReceiver__decoder_queue", "_RTCRtpReceiver__decoder_error")


async def test_viewers_share_one_unused_receive_side() -> None:
    """Each viewer's receiver had a 512-slot jitter buffer, a decoder queue (three threading conditions) and an
    error flag, ~8 KB for video that never comes; the viewers now share one of each."""
    # The names are aiortc's own (an aiortc that renamed them would get new attributes and keep its own objects).
    plain = RTCPeerConnection()
    receiver = plain.addTransceiver("video", direction="sendonly").receiver
    assert all(hasattr(receiver, name) for name in RECEIVE_SIDE)
    await plain.close()
    del plain, receiver
    low, high = free_range(40)
    peers = Peers(MediaSettings(bind="127.0.0.1", port_range=(low, high), use_ipv6=False, max_peers_per_session=0))
    ingest = RtpIngest("127.0.0.1", (low, high))
    made: list[Viewer] = []
    try:
        before = {kind: count(kind) for kind in (JitterBuffer, queue.Queue, threading.Event)}
        made = [Viewer(peers, ingest) for _ in range(10)]
        grown = {kind: count(kind) - n for kind, n in before.items()}
        assert grown == {JitterBuffer: 0, queue.Queue: 0, threading.Event: 0}, grown
        shared = [getattr(made[0].transceiver.receiver, name) for name in RECEIVE_SIDE]
        for viewer in made:
            assert [getattr(viewer.transceiver.receiver, name) for name in RECEIVE_SIDE] == shared
    finally:
        for viewer in made:
            await viewer.close()
        ingest.close()
