"""The streaming plugin end to end: Janus core in-process, a real RTP/H.264 sender (PyAV libx264, RFC 6184)
on UDP, and real aiortc viewers that decode the relayed video and read back the frame numbers drawn into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from apuppet.api.gateway import Gateway
from apuppet.config import Config
from apuppet.media.peers import Peers
from apuppet.media.relay import starts_keyframe
from apuppet.media.rtp import is_rtcp, pack_header
from apuppet.plugins.streaming import StreamingPlugin
from apuppet.server.app import media_settings
from tests.inproc import InProcClient, plugin_data
from tests.media.source import RtpSource, read_code
from tests.media.test_ice import free_range

JSON = dict[str, Any]
PLUGIN = "janus.plugin.streaming"


def agent_create(session_id: str = "48213077", password: str = "4321") -> JSON:
    """The Android agent's exact create body (spec §4.1)."""
    return {
        "request": "create", "type": "rtp", "description": session_id, "permanent": False, "is_private": False,
        "audio": False, "video": True, "data": False, "id": session_id, "name": session_id, "pin": password,
        "audioport": 0, "audiopt": 0, "videoport": 0, "videopt": 100, "videortpmap": "H264/90000",
        "videobufferkf": False,
    }  # fmt: skip


def candidates(sdp: str) -> list[tuple[str, int]]:
    return [(f[4], int(f[5])) for f in (line.split() for line in sdp.splitlines() if line.startswith("a=candidate:"))]


class Client:
    """A Janus session with a streaming handle."""

    def __init__(self, janus: InProcClient) -> None:
        self.janus = janus
        self.session = janus.create()
        self.handle = janus.attach(self.session, PLUGIN)

    def request(self, body: JSON) -> JSON:
        reply = self.janus.message(self.session, self.handle, body)
        assert reply["janus"] == "success", reply
        return plugin_data(reply)

    async def event(self, predicate=lambda d: True, timeout: float = 10.0) -> JSON:
        event = await self.janus.event(
            self.session, lambda e: e.get("janus") == "event" and predicate(plugin_data(e)), timeout
        )
        return plugin_data(event)


class WebViewer(Client):
    """The web-admin's side: watch, answer, start; decodes what arrives."""

    def __init__(self, janus: InProcClient) -> None:
        super().__init__(janus)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.codes: list[tuple[float, int]] = []
        self.offer: JSON = {}
        self._reader: asyncio.Task[None] | None = None
        self.pc.on("track", self._track)

    def _track(self, track) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.codes.append((time.monotonic(), read_code(frame.to_ndarray(format="rgb24"))))

    async def watch(self, mp_id: str | int, pin: str | None) -> JSON:
        body: JSON = {"request": "watch", "id": mp_id}
        if pin is not None:
            body["pin"] = pin
        assert self.janus.message(self.session, self.handle, body)["janus"] == "ack"
        return await self.event(lambda d: "error_code" in d or d.get("result") == {"status": "preparing"})

    async def play(self, mp_id: str | int, pin: str | None) -> None:
        event = await self.janus.event(self.session, lambda e: "jsep" in e or "error_code" in plugin_data(e))
        assert plugin_data(event) == {"streaming": "event", "result": {"status": "preparing"}}, event
        self.offer = event["jsep"]
        await self.pc.setRemoteDescription(RTCSessionDescription(**self.offer))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = {"type": "answer", "sdp": self.pc.localDescription.sdp}
        reply = self.janus.message(self.session, self.handle, {"request": "start"}, answer)
        assert reply["janus"] == "ack"
        starting = await self.event(lambda d: "result" in d)
        assert starting["result"] == {"status": "starting"}

    async def open(self, mp_id: str | int, pin: str | None) -> None:
        assert self.janus.message(self.session, self.handle, {"request": "watch", "id": mp_id, "pin": pin})["janus"]
        await self.play(mp_id, pin)

    async def wait_frames(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.codes) < count:
            assert time.monotonic() < deadline, f"only {len(self.codes)} frames decoded"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()


@pytest.fixture
def config() -> Config:
    lo, hi = free_range(60)
    return Config(admin_secret="the-admin-secret", rtp_port_range=f"{lo}-{hi}", bind="127.0.0.1")


@pytest.fixture
async def server(config: Config) -> AsyncIterator[tuple[Gateway, StreamingPlugin]]:
    plugin = StreamingPlugin(config, Peers(media_settings(config)))
    gateway = Gateway([plugin], session_timeout=60)
    yield gateway, plugin
    await gateway.close()


@pytest.fixture
async def viewers() -> AsyncIterator[list[WebViewer]]:
    made: list[WebViewer] = []
    yield made
    for v in made:
        await v.close()


@pytest.fixture
async def sources() -> AsyncIterator[list[tuple[RtpSource, asyncio.Task[None]]]]:
    made: list[tuple[RtpSource, asyncio.Task[None]]] = []
    yield made
    for source, task in made:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        source.close()


def start_source(sources, port: int, **kw) -> RtpSource:
    source = RtpSource(port, **kw)
    sources.append((source, asyncio.get_running_loop().create_task(source.run())))
    return source


def stream_from_agent(janus: InProcClient, sources: list, **source_options: Any) -> tuple[Client, Any]:
    """The agent's mountpoint (its exact create body) with a libx264 RTP source sending into it."""
    agent = Client(janus)
    port = agent.request(agent_create())["stream"]["video_port"]
    return agent, start_source(sources, port, **source_options)


async def open_viewer(janus: InProcClient, viewers: list) -> WebViewer:
    """A decoding viewer watching the agent's mountpoint with its pin (closed by the `viewers` fixture)."""
    viewer = WebViewer(janus)
    viewers.append(viewer)
    await viewer.open("48213077", "4321")
    return viewer


async def test_agent_create_reply_has_janus_shape_and_port_in_range(server, config):
    gateway, plugin = server
    agent = Client(InProcClient(gateway))
    data = agent.request(agent_create())
    port = data["stream"]["video_port"]
    assert data == {
        "streaming": "created", "created": "48213077", "permanent": False,
        "stream": {"id": "48213077", "type": "live", "description": "48213077", "is_private": False,
                   "video_port": port},
    }  # fmt: skip
    lo, hi = config.port_range
    assert lo <= port <= hi
    again = agent.request(agent_create())
    assert again["error_code"] == 456
    # Integer ids work too, and `videoport: 0` picks another free port.
    other = agent.request({**agent_create(), "id": 77, "name": "n"})
    assert other["stream"]["id"] == 77 and other["stream"]["video_port"] != port


async def test_relay_end_to_end_no_frame_lost(server, config, viewers, sources):
    gateway, plugin = server
    janus = InProcClient(gateway)
    agent, source = stream_from_agent(janus, sources, agent_markers=True)
    viewer = await open_viewer(janus, viewers)
    assert (await viewer.event(lambda d: "result" in d))["result"] == {"status": "started"}
    offer = viewer.offer["sdp"]
    assert "a=rtpmap:" in offer and "H264/90000" in offer and "packetization-mode=1" in offer
    assert "a=sendonly" in offer
    lo, hi = config.port_range
    assert candidates(offer) and all(lo <= p <= hi for _, p in candidates(offer))
    await viewer.wait_frames(45)
    codes = [c for _, c in viewer.codes]
    # The first pictures come from the kept GOP, then live: every frame from the first one on, in order.
    assert codes == list(range(codes[0], codes[0] + len(codes))), codes
    assert source.index - codes[-1] < 10
    relay = plugin.ingests["48213077"].relay
    assert relay.stats.foreign == relay.stats.malformed == 0
    assert relay.assembler.stats.lost == 0


async def test_new_viewer_mid_stream_sees_a_picture_at_once(server, viewers, sources):
    gateway, plugin = server
    janus = InProcClient(gateway)
    agent = Client(janus)
    port = agent.request(agent_create())["stream"]["video_port"]
    # Keyframes only every 4 s: without the kept GOP a new viewer would wait seconds.
    source = start_source(sources, port, keyframe_interval=4.0)
    await asyncio.sleep(1.5)
    viewer = await open_viewer(janus, viewers)
    asked = time.monotonic()
    await viewer.wait_frames(1, timeout=5)
    first_at, first_code = viewer.codes[0]
    assert first_at - asked <= 0.5, f"first picture after {first_at - asked:.3f} s"
    assert first_code == 0, "the replay starts at the kept keyframe (frame 0)"
    # It catches up with the live stream at once: the replayed GOP is squeezed, not played in real time.
    while viewer.codes[-1][1] < source.index - 3:
        assert time.monotonic() - first_at < 1.0, "did not catch up with the live stream within 1 s"
        await asyncio.sleep(0.01)
    codes = [c for _, c in viewer.codes]
    assert codes == list(range(len(codes)))


async def test_wrong_pin_and_unknown_mountpoint(server, viewers):
    gateway, plugin = server
    janus = InProcClient(gateway)
    agent = Client(janus)
    agent.request(agent_create())
    viewer = WebViewer(janus)
    viewers.append(viewer)
    wrong = await viewer.watch("48213077", "0000")
    assert plugin_data_error(wrong) == (457, "Unauthorized (wrong pin)")
    missing = await viewer.watch("99999999", "4321")
    assert plugin_data_error(missing) == (455, "No such mountpoint/stream 99999999")
    assert viewer.handle not in plugin.watches


def plugin_data_error(data: JSON) -> tuple[int, str]:
    return data["error_code"], data["error"]


async def test_repeated_wrong_pins_are_slowed_down(server):
    gateway, plugin = server
    janus = InProcClient(gateway, remote="198.51.100.9")
    Client(InProcClient(gateway)).request(agent_create())
    guesser = WebViewer(janus)
    try:
        for _ in range(6):  # five free failures, then each one blocks the address for a doubling delay
            assert plugin_data_error(await guesser.watch("48213077", "1111"))[0] == 457
        code, reason = plugin_data_error(await guesser.watch("48213077", "4321"))
        assert code == 457 and "Too many wrong pins" in reason  # even the right pin waits now
        # Another address is not affected.
        other = WebViewer(InProcClient(gateway, remote="198.51.100.10"))
        assert "result" in await other.watch("48213077", "4321")
        await other.close()
    finally:
        await guesser.close()


async def test_garbage_and_foreign_source_dropped_without_harm(server, viewers, sources):
    gateway, plugin = server
    janus = InProcClient(gateway)
    agent, source = stream_from_agent(janus, sources)
    port = source.addr[1]
    viewer = await open_viewer(janus, viewers)
    await viewer.wait_frames(5)
    # Garbage from the latched source, and an intruder's well-formed RTP (a "frame" of its own).
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(50):
            source.sock.sendto(b"\x00garbage" * (i % 5), ("127.0.0.1", port))
            source.sock.sendto(bytes([0x80, 0xC8]) + b"\x00" * 26, ("127.0.0.1", port))  # RTCP SR
            intruder.sendto(pack_header(96, True, 1000 + i, 1, 0xBAD) + b"\x65" + b"\x00" * 50, ("127.0.0.1", port))
            await asyncio.sleep(0.002)
    finally:
        intruder.close()
    before = len(viewer.codes)
    await viewer.wait_frames(before + 20)
    codes = [c for _, c in viewer.codes]
    assert codes == list(range(codes[0], codes[0] + len(codes)))
    relay = plugin.ingests["48213077"].relay
    assert relay.stats.foreign == 50
    assert relay.stats.malformed >= 90
    assert relay.assembler.stats.lost == 0 and relay.assembler.stats.frames_dropped == 0
    assert source.index - codes[-1] < 10


async def test_nat_offer_carries_public_ip_and_the_lan_viewer_still_plays(viewers, sources):
    lo, hi = free_range(60)
    config = Config(rtp_port_range=f"{lo}-{hi}", bind="127.0.0.1", nat=True, public_ip="203.0.113.7")
    plugin = StreamingPlugin(config, Peers(media_settings(config)))
    gateway = Gateway([plugin])
    try:
        janus = InProcClient(gateway)
        agent, _ = stream_from_agent(janus, sources)
        viewer = await open_viewer(janus, viewers)
        found = candidates(viewer.offer["sdp"])
        public = [p for h, p in found if h == "203.0.113.7"]
        private = [p for h, p in found if h != "203.0.113.7" and ":" not in h]
        assert public and sorted(public) == sorted(private)
        assert all(lo <= p <= hi for _, p in found)
        await viewer.wait_frames(10)
    finally:
        await gateway.close()


async def test_many_viewers_and_a_vanished_one(server, viewers, sources):
    gateway, plugin = server
    janus = InProcClient(gateway)
    agent, _ = stream_from_agent(janus, sources)
    group = [WebViewer(janus) for _ in range(4)]
    viewers.extend(group)
    for v in group:
        await v.open("48213077", "4321")
    for v in group:
        await v.wait_frames(5)
    # One viewer vanishes without a word (its peer connection just closes).
    await group[0].pc.close()
    counts = [len(v.codes) for v in group[1:]]
    await asyncio.sleep(1.0)
    for v, before in zip(group[1:], counts, strict=True):
        assert len(v.codes) >= before + 20
        codes = [c for _, c in v.codes]
        assert codes == list(range(codes[0], codes[0] + len(codes)))


async def test_ownership_list_and_destroy(server, viewers, sources):
    gateway, plugin = server
    janus = InProcClient(gateway)
    agent = Client(janus)
    agent.request(agent_create())
    agent.request({"request": "create", "type": "rtp", "video": True, "id": "public-one", "name": "pub"})
    stranger = Client(InProcClient(gateway, remote="198.51.100.20"))
    # list: strangers see no pin-protected or private mountpoint; the owner and the admin see all.
    assert [m["id"] for m in stranger.request({"request": "list"})["list"]] == ["public-one"]
    assert {m["id"] for m in agent.request({"request": "list"})["list"]} == {"48213077", "public-one"}
    admin = {"request": "list", "admin_key": "the-admin-secret"}
    assert len(stranger.request(admin)["list"]) == 2
    # info: a stranger needs the pin and never sees the ingest port.
    assert stranger.request({"request": "info", "id": "48213077"})["error_code"] == 457
    info = stranger.request({"request": "info", "id": "48213077", "pin": "4321"})["info"]
    assert info["id"] == "48213077" and "video_port" not in info
    assert "video_port" in agent.request({"request": "info", "id": "48213077"})["info"]
    # Only the creator (or a secret holder, or the admin) may destroy or edit.
    denied = stranger.request({"request": "destroy", "id": "48213077"})
    assert denied["error_code"] == 457
    assert stranger.request({"request": "edit", "id": "48213077", "new_pin": "0"})["error_code"] == 457
    assert stranger.request({"request": "destroy", "id": "public-one", "admin_key": "the-admin-secret"}) == {
        "streaming": "destroyed", "id": "public-one"}  # fmt: skip
    # A viewer of a destroyed mountpoint gets `stopped`, and the port is released.
    port = agent.request({"request": "info", "id": "48213077"})["info"]["video_port"]
    start_source(sources, port)
    viewer = await open_viewer(janus, viewers)
    await viewer.wait_frames(3)
    assert agent.request({"request": "destroy", "id": "48213077"}) == {"streaming": "destroyed", "id": "48213077"}
    stopped = await viewer.event(lambda d: d.get("result") == {"status": "stopped"})
    assert stopped
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", port))
    probe.close()
    assert plugin.ingests == {}


async def test_owner_session_gone_destroys_the_mountpoint(server, viewers, sources):
    gateway, plugin = server
    janus = InProcClient(gateway)
    agent, _ = stream_from_agent(janus, sources)
    viewer = await open_viewer(janus, viewers)
    await viewer.wait_frames(3)
    assert janus.request("destroy", agent.session)["janus"] == "success"
    await viewer.event(lambda d: d.get("result") == {"status": "stopped"})
    assert plugin.mountpoints.mountpoints == {} and plugin.ingests == {}
    missing = await viewer.watch("48213077", "4321")
    assert missing["error_code"] == 455


async def test_pause_start_and_stop(server, viewers, sources):
    gateway, plugin = server
    seen: list[tuple[str, dict]] = []
    gateway.observers.append(lambda name, fields: seen.append((name, fields)))
    janus = InProcClient(gateway, remote="192.0.2.7")
    # The agent's API requests come from where its RTP does (the ingest waits for the creator's address).
    agent, _ = stream_from_agent(InProcClient(gateway), sources)
    viewer = await open_viewer(janus, viewers)
    await viewer.wait_frames(5)
    assert janus.message(viewer.session, viewer.handle, {"request": "pause"})["janus"] == "ack"
    assert await viewer.event(lambda d: d.get("result", {}).get("status") == "pausing")
    await asyncio.sleep(0.2)
    paused_at = len(viewer.codes)
    await asyncio.sleep(0.5)
    assert len(viewer.codes) <= paused_at + 1
    assert janus.message(viewer.session, viewer.handle, {"request": "start"})["janus"] == "ack"
    await viewer.event(lambda d: d.get("result", {}).get("status") == "starting")
    await viewer.wait_frames(paused_at + 10)
    assert janus.message(viewer.session, viewer.handle, {"request": "stop"})["janus"] == "ack"
    await viewer.event(lambda d: d.get("result", {}).get("status") == "stopped")
    assert viewer.handle not in plugin.watches
    assert plugin.ingests["48213077"].relay.viewers == []
    # Operators see the viewer come and go, with its address (and no pin).
    viewing = [(n, f) for n, f in seen if n.startswith("viewer_")]
    assert [n for n, _ in viewing] == ["viewer_watching", "viewer_left"]
    assert all(f["remote"] == "192.0.2.7" and f["mountpoint"] == "48213077" for _, f in viewing)
    assert viewing[1][1]["reason"] == "stopped"
    assert not any("pin" in f for _, f in seen)


async def test_bad_requests(server):
    gateway, plugin = server
    client = Client(InProcClient(gateway))
    assert client.request({"request": "create", "type": "rtsp", "video": True})["error_code"] == 454
    assert client.request({"request": "create", "type": "rtp", "audio": True, "video": True})["error_code"] == 454
    assert client.request({"request": "create", "type": "rtp", "video": True, "id": True})["error_code"] == 454
    assert client.request({"request": "create"})["error_code"] == 453
    assert client.request({"request": "frobnicate"})["error_code"] == 452
    assert client.request({})["error_code"] == 453
    assert client.request({"request": "destroy", "id": "nope"})["error_code"] == 455
    assert client.janus.message(client.session, client.handle, {"request": "start"})["janus"] == "ack"
    assert (await client.event())["error_code"] == 452


async def test_packets_lost_towards_a_viewer_are_resent_on_its_nack(server, viewers, sources):
    gateway, plugin = server
    janus = InProcClient(gateway)
    agent, _ = stream_from_agent(janus, sources)
    viewer = await open_viewer(janus, viewers)
    await viewer.wait_frames(3)
    # The link to this viewer loses every 10th packet once (the retransmission gets through), six times, and only
    # in the first 10 frames of a GOP (a third of a second at 30 fps). Not at the end of one: the relay does not
    # answer a NACK for a packet sent before the newest keyframe began (`RelayViewer.keep_only`; a browser would
    # not ask), and its NACK may come after that. Not more: aiortc's jitter buffer, the receiver here, hands out
    # one frame per packet that arrives, so the frames held back while a retransmission travels stay queued, and a
    # dozen losses on a loaded machine queued past its 128 packets and it threw a frame away.
    relayed = plugin.watches[viewer.handle].viewer
    transport = relayed.sender.transport
    original = transport._send_rtp
    dropped: set[int] = set()
    frames_into_gop = 1_000  # until a keyframe is seen

    async def lossy(data: bytes) -> None:
        nonlocal frames_into_gop
        if not is_rtcp(data):
            packet = RtpPacket.parse(data)
            if starts_keyframe(packet.payload):
                frames_into_gop = 0
            seq = packet.sequence_number
            if seq % 10 == 0 and seq not in dropped and len(dropped) < 6 and frames_into_gop < 10:
                dropped.add(seq)
                return
            if packet.marker:
                frames_into_gop += 1
        await original(data)

    transport._send_rtp = lossy
    deadline = time.monotonic() + 10
    while len(dropped) < 6:
        assert time.monotonic() < deadline, f"only {len(dropped)} packets dropped"
        await asyncio.sleep(0.02)
    await viewer.wait_frames(len(viewer.codes) + 30)
    assert relayed.output.retransmitted >= len(dropped)
    codes = [c for _, c in viewer.codes]
    assert codes == list(range(codes[0], codes[0] + len(codes))), "a frame was lost"


class ViewerSessionClient(InProcClient):
    """The web-admin without the API secret: its session is a viewer session."""

    def request(self, verb: str, session: int | None = None, handle: int | None = None, **fields: Any) -> JSON:
        msg = {"janus": verb, "transaction": "t" + str(id(fields)), **fields}
        return self.gateway.handle(msg, session_id=session, handle_id=handle, remote=self.remote)


async def test_a_viewer_session_may_only_watch_with_the_pin(config, viewers, sources):
    plugin = StreamingPlugin(config, Peers(media_settings(config)))
    gateway = Gateway([plugin], api_secret="agents-only")
    try:
        agent = Client(InProcClient(gateway))
        port = agent.request(agent_create())["stream"]["video_port"]
        start_source(sources, port)
        web = ViewerSessionClient(gateway, remote="198.51.100.30")
        probe = Client(web)
        assert gateway.sessions[probe.session].trusted is False
        for body in (
            agent_create("11112222"),
            {"request": "list"},
            {"request": "info", "id": "48213077", "pin": "4321"},
            {"request": "destroy", "id": "48213077"},
            {"request": "edit", "id": "48213077", "new_pin": "0"},
        ):
            data = probe.request(body)
            assert data["error_code"] == 457 and "needs the API secret" in data["error"], body
        viewer = WebViewer(web)
        viewers.append(viewer)
        await viewer.open("48213077", "4321")
        await viewer.wait_frames(5)
        # Guessing mountpoint ids is slowed down like guessing pins.
        guesser = WebViewer(ViewerSessionClient(gateway, remote="198.51.100.31"))
        viewers.append(guesser)
        for i in range(6):
            assert (await guesser.watch(f"guess-{i}", "0000"))["error_code"] == 455
        blocked = await guesser.watch("48213077", "4321")
        assert blocked["error_code"] == 457 and "Too many wrong pins" in blocked["error"]
    finally:
        await gateway.close()


async def watch_while_the_stack_loads(gateway: Gateway) -> tuple[InProcClient, Client, Client]:
    """A device's mountpoint and a viewer's `watch` of it, left waiting for the WebRTC stack (`held_stack`)."""
    janus = InProcClient(gateway)
    agent = Client(janus)
    agent.request(agent_create())
    viewer = Client(janus)
    body = {"request": "watch", "id": "48213077", "pin": "4321"}
    assert janus.message(viewer.session, viewer.handle, body)["janus"] == "ack"
    await asyncio.sleep(0.05)
    return janus, agent, viewer


@pytest.mark.parametrize("verb", ["hangup", "stop", "detach"])
async def test_a_watch_taken_back_while_the_webrtc_stack_loads_makes_no_viewer(server, held_stack, verb):
    gateway, plugin = server
    janus, agent, viewer = await watch_while_the_stack_loads(gateway)
    if verb == "stop":
        janus.message(viewer.session, viewer.handle, {"request": "stop"})
    else:
        janus.request(verb, viewer.session, viewer.handle)
    await asyncio.sleep(0.05)
    held_stack.set()
    await plugin.peers.ready()
    await asyncio.sleep(0.2)
    assert plugin.watches == {} and plugin.peers.budget.sessions == {}, verb
    assert not plugin._watching
    if verb != "detach":  # the same handle may watch again
        viewer_client = WebViewer(janus)
        try:
            await viewer_client.open("48213077", "4321")
            assert len(plugin.watches) == 1
        finally:
            await viewer_client.close()


async def test_a_mountpoint_destroyed_while_the_webrtc_stack_loads_is_named_to_the_viewer(server, held_stack):
    gateway, plugin = server
    janus, agent, viewer = await watch_while_the_stack_loads(gateway)
    agent.request({"request": "destroy", "id": "48213077"})
    held_stack.set()
    refused = await viewer.event(lambda d: "error_code" in d)
    assert refused["error_code"] == 455, refused
    assert plugin.watches == {} and plugin.peers.budget.sessions == {}
