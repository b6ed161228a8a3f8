"""Streaming plugin defects of issue 16 §3: trickled candidates, failed watches, shutdown.

Real parts: the Janus core in-process, a libx264 RTP source on UDP, aiortc viewers over loopback.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCSessionDescription

from apuppet.api.gateway import Gateway
from apuppet.config import Config
from apuppet.media import contain
from apuppet.media.ice import ice_connections
from apuppet.media.peers import Peers
from apuppet.media.viewer import Viewer
from apuppet.plugins.streaming import StreamingPlugin
from apuppet.server.app import media_settings
from tests.inproc import InProcClient
from tests.plugins import test_streaming
from tests.plugins.test_streaming import WebViewer, open_viewer, stream_from_agent

JSON = dict[str, Any]

# The streaming tests' fixtures: a port range, a Gateway with the plugin, viewers and RTP sources closed after.
config, server, viewers, sources = (
    test_streaming.config,
    test_streaming.server,
    test_streaming.viewers,
    test_streaming.sources,
)


def without_candidates(sdp: str) -> str:
    lines = [line for line in sdp.splitlines() if not line.startswith(("a=candidate", "a=end-of-candidates"))]
    return "\r\n".join(lines) + "\r\n"


async def connects(viewer: WebViewer, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while viewer.pc.connectionState != "connected":
        if loop.time() > deadline or viewer.pc.connectionState == "failed":
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_viewer_reachable_only_through_trickled_candidates_connects(
    server: tuple[Gateway, StreamingPlugin], viewers: list[WebViewer], sources: list
) -> None:
    """The viewer ignores the server's candidates (it cannot reach them) and answers without its own; it trickles
    them, one before its `start` is processed, the others after. Only the server's checks towards the trickled
    candidates can connect it."""
    gateway, plugin = server
    janus = InProcClient(gateway)
    stream_from_agent(janus, sources)
    viewer = WebViewer(janus)
    viewers.append(viewer)
    janus.message(viewer.session, viewer.handle, {"request": "watch", "id": "48213077", "pin": "4321"})
    offer = await janus.event(viewer.session, lambda e: "jsep" in e)
    await viewer.pc.setRemoteDescription(
        RTCSessionDescription(sdp=without_candidates(offer["jsep"]["sdp"]), type="offer")
    )
    await viewer.pc.setLocalDescription(await viewer.pc.createAnswer())
    sdp = viewer.pc.localDescription.sdp
    mine = [line[2:] for line in sdp.splitlines() if line.startswith("a=candidate")]
    assert mine
    trickles = [{"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0} for c in mine]
    janus.request("trickle", viewer.session, viewer.handle, candidate=trickles[0])  # before the answer
    start = janus.message(
        viewer.session, viewer.handle, {"request": "start"}, {"type": "answer", "sdp": without_candidates(sdp)}
    )
    assert start["janus"] == "ack"
    assert (await viewer.event(lambda d: "result" in d))["result"] == {"status": "starting"}
    unspecified = "candidate:9 1 udp 2122260223 0.0.0.0 40000 typ host"
    extra = [{"candidate": "candidate:garbage"}, {"candidate": unspecified, "sdpMid": "0"}, {"completed": True}]
    assert janus.request("trickle", viewer.session, viewer.handle, candidates=trickles[1:] + extra)["janus"] == "ack"
    assert await connects(viewer, timeout=15), viewer.pc.connectionState
    await viewer.wait_frames(3)
    # Trickled candidates pass the same checks as the others (media/ice.py): the unspecified address is refused.
    (connection,) = ice_connections(plugin.watches[viewer.handle].viewer.pc)
    hosts = {c.host for c in connection.remote_candidates}
    assert hosts and "0.0.0.0" not in hosts


async def test_a_watch_that_fails_unexpectedly_answers_and_leaves_nothing(
    server: tuple[Gateway, StreamingPlugin], viewers: list[WebViewer], sources: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure that is not a refusal (here the offer itself fails) still produces an error event, and releases
    the watch entry and the viewer's peer connection; the same handle can then watch."""
    gateway, plugin = server
    janus = InProcClient(gateway)
    stream_from_agent(janus, sources)
    failed: list[Viewer] = []
    real_offer = Viewer.offer

    async def failing_offer(self: Viewer) -> dict[str, Any]:
        failed.append(self)
        raise OSError("no route to the ICE gatherer")

    monkeypatch.setattr(Viewer, "offer", failing_offer)
    contain.failures.clear()
    viewer = WebViewer(janus)
    viewers.append(viewer)
    event = await viewer.watch("48213077", "4321")
    assert event["error_code"] == 470 and "OSError" in event["error"], event
    assert "no route" not in event["error"]
    assert viewer.handle not in plugin.watches
    await asyncio.sleep(0.2)
    assert failed and failed[0].pc.connectionState == "closed" and failed[0].closed
    assert contain.failures == {"streaming watch": 1}

    monkeypatch.setattr(Viewer, "offer", real_offer)
    await viewer.open("48213077", "4321")
    await viewer.wait_frames(3)


async def test_shutdown_waits_for_the_viewers_to_close(config: Config, viewers: list[WebViewer], sources: list) -> None:
    plugin = StreamingPlugin(config, Peers(media_settings(config)))
    gateway = Gateway([plugin], session_timeout=60)
    janus = InProcClient(gateway)
    stream_from_agent(janus, sources)
    for _ in range(3):
        await (await open_viewer(janus, viewers)).wait_frames(1)
    server_side = [watch.viewer for watch in plugin.watches.values()]
    assert len(server_side) == 3
    await gateway.close()
    assert [v.pc.connectionState for v in server_side] == ["closed"] * 3
    assert not plugin._closing


async def test_a_hung_up_viewer_is_closed_before_shutdown_returns(
    server: tuple[Gateway, StreamingPlugin], viewers: list[WebViewer], sources: list
) -> None:
    gateway, plugin = server
    janus = InProcClient(gateway)
    stream_from_agent(janus, sources)
    viewer = await open_viewer(janus, viewers)
    await viewer.wait_frames(1)
    server_side = plugin.watches[viewer.handle].viewer
    assert janus.request("hangup", viewer.session, viewer.handle)["janus"] == "success"
    await plugin.close()
    assert server_side.pc.connectionState == "closed"


async def test_a_failure_handling_the_viewers_rtcp_does_not_end_its_connection(
    server: tuple[Gateway, StreamingPlugin], viewers: list[WebViewer], sources: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The viewer's RTCP is handled inside aiortc's DTLS receive loop: an exception there would end the loop and
    the video. Here handling its PLI fails; the failure is counted and the frames keep coming."""
    gateway, plugin = server
    janus = InProcClient(gateway)
    stream_from_agent(janus, sources)
    viewer = await open_viewer(janus, viewers)
    await viewer.wait_frames(3)

    def broken(self: Viewer) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(Viewer, "_picture_loss", broken)
    contain.failures.clear()
    ssrc = plugin.watches[viewer.handle].viewer.sender._ssrc
    receiver = viewer.pc.getReceivers()[0]
    for _ in range(3):
        await receiver._send_rtcp_pli(ssrc)
    await asyncio.sleep(0.3)
    seen = len(viewer.codes)
    await viewer.wait_frames(seen + 10, timeout=5)
    assert contain.failures.get("viewer RTCP") == 3
