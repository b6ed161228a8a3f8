"""A server-side viewer's peer connection only sends: it must not carry aiortc's receive-side bitrate estimator,
which is 1000 objects per viewer (memory with 100 devices each watched once, issue 16 §5; bench/memory.py)."""

from __future__ import annotations

import gc

from aiortc.rate import RateBucket, RemoteBitrateEstimator

from tests.inproc import InProcClient
from tests.plugins.test_streaming import config, open_viewer, server, sources, stream_from_agent, viewers

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
