"""The agent against the real server over real sockets, watched and driven by an aiortc viewer.

Every command's effect is checked in the *decoded* video, by colour (see `apuppet.agent.phone`).
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time

import pytest

from apuppet.agent import phone as ph
from apuppet.agent.agent import MAX_PENDING_COMMANDS, Agent, AgentOptions
from apuppet.agent.commands import parse
from apuppet.agent.sources.demo import DemoSource
from apuppet.config import Config
from apuppet.server import Server

from .conftest import SECRET, RunningAgent, free_port, server_config, start_agent
from .viewer import Viewer, color, near


def viewer_for(server: Server, ra: RunningAgent, name: str = "admin:test") -> Viewer:
    creds = ra.agent.credentials
    return Viewer(server.url, SECRET, creds.session, creds.password, name)


async def test_viewer_sees_and_drives_the_demo_phone(server: Server, running: RunningAgent) -> None:
    agent = running.agent
    assert agent.state == "connected"
    async with viewer_for(server, running) as v:
        assert any(p.get("username") == "device:Test phone" for p in v.participants)
        assert await v.message(lambda t: t.startswith("streamingVideoResolution")) == (
            "streamingVideoResolution,360,640"
        )
        frame = await v.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
        assert frame.shape == (640, 360, 3)
        assert agent.state == "sharing"

        v.send("ping,1700000000123")
        assert await v.message(lambda t: t.startswith("pong")) == "pong,1700000000123"

        # tap: open Counter, then press its button; the unary blocks show the count.
        v.send("tap,72,156,60")
        await v.until(lambda f: near(f, 20, 400, (250, 240, 225)))
        v.send("tap,180,330,60")
        await v.until(lambda f: near(f, 41, 461, (200, 90, 0)))
        # long press: resets the counter and opens the yellow bubble.
        v.send("tap,180,330,900")
        await v.until(lambda f: near(f, 255, 338, ph.BUBBLE) and near(f, 41, 461, (250, 240, 225)))

        # back: home screen again.
        v.send("back")
        await v.until(lambda f: near(f, 20, 400, ph.WALLPAPER))

        # keys and paste land in the Notes field; Copy sends the text back, escaped.
        v.send("tap,180,156,60")
        blank = await v.until(lambda f: near(f, 300, 200, (255, 255, 255), 20))
        line1, line2 = (slice(78, 102), slice(24, 200)), (slice(102, 126), slice(24, 250))
        for key in ("H", "i", "%2C", "Enter"):
            v.send(f"key,{key}")
        await v.until(lambda f: changed(f, blank, line1, 2.0))
        assert running.phone.text == "Hi,\n"
        v.send("paste,50%25 off%2C really")
        await v.until(lambda f: changed(f, blank, line2, 10.0))
        assert running.phone.text == "Hi,\n50% off, really"
        v.send("tap,90,340,60")
        copied = await v.message(lambda t: t.startswith("copy,"))
        assert copied == "copy,Hi%2C\n50%25 off%2C really"
        assert parse(copied).text == "Hi,\n50% off, really"

        # swipe: the list scrolls.
        v.send("home")
        await v.until(lambda f: near(f, 20, 400, ph.WALLPAPER))
        v.send("tap,288,156,60")
        top = await v.until(lambda f: near(f, 300, 50, ph.APPS["list"]))
        before = color(top, 30, 205)
        v.send("swipe,180,500,180,200,200")
        await v.until(lambda f: abs(color(f, 30, 205) - before).max() > 40)
        assert running.phone.scroll == 300

        # recents and notifications.
        v.send("recents")
        await v.until(lambda f: near(f, 14, 560, ph.RECENTS_BG))
        v.send("notifications")
        await v.until(lambda f: near(f, 180, 260, ph.SHADE_BG, 30))

        # Malformed commands are ignored and the agent keeps answering.
        for bad in ("tap,1,2", "swipe,a,b,c,d,e", "fly", "key,Escape", "", "tap,1,2,3,4"):
            v.send(bad)
        v.send("ping,42")
        assert await v.message(lambda t: t.startswith("pong")) == "pong,42"

        await v.leave()
        async with asyncio.timeout(10):
            while agent.viewers or agent._video.running:
                await asyncio.sleep(0.05)
        assert agent.state == "connected"


def changed(frame, blank, region, threshold: float) -> bool:
    return abs(frame[region].mean() - blank[region].mean()) > threshold


async def test_streaming_stops_only_when_the_last_viewer_leaves(server: Server, running: RunningAgent) -> None:
    agent = running.agent
    async with viewer_for(server, running, "admin:one") as one:
        await one.until(lambda f: True, timeout=20)
        async with viewer_for(server, running, "admin:two") as two:
            await two.until(lambda f: True, timeout=20)
            assert agent.viewers == {"admin:one", "admin:two"}
            await two.leave()
        async with asyncio.timeout(10):
            while "admin:two" in agent.viewers:
                await asyncio.sleep(0.05)
        assert agent._video.running
        await one.until(lambda f: True)
        await one.leave()
        async with asyncio.timeout(10):
            while agent._video.running:
                await asyncio.sleep(0.05)


async def test_wrong_password_does_not_reach_the_device(server: Server, running: RunningAgent) -> None:
    creds = running.agent.credentials
    with pytest.raises(Exception, match="(?i)pin|password|unauthorized"):
        async with Viewer(server.url, SECRET, creds.session, creds.password + "x"):
            pass
    assert not running.agent.viewers


async def test_agent_reconnects_with_a_new_session_after_a_server_restart() -> None:
    port = free_port()
    first = Server(server_config(port))
    await first.start()
    ra = await start_agent(first.url)
    second: Server | None = None
    try:
        old_session = ra.agent.sessions[-1]
        old_credentials = ra.agent.credentials
        await first.stop()
        second = Server(server_config(port))
        await second.start()
        restarted = time.monotonic()
        async with asyncio.timeout(5):
            while not (ra.agent.connected.is_set() and ra.agent.sessions[-1] != old_session):
                await asyncio.sleep(0.05)
        elapsed = time.monotonic() - restarted
        assert elapsed < 5
        # The room came back under the same Session ID and password: a viewer can just reconnect.
        assert ra.agent.credentials == old_credentials
        async with viewer_for(second, ra) as v:
            await v.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
    finally:
        await ra.stop()
        if second is not None:
            await second.stop()


async def test_agent_survives_a_server_that_is_not_there_yet() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    phone_agent = asyncio.get_running_loop().create_task(start_agent(url))
    await asyncio.sleep(1.0)
    assert not phone_agent.done()
    srv = Server(server_config(port))
    await srv.start()
    try:
        ra = await phone_agent
        assert ra.agent.state == "connected"
        await ra.stop()
    finally:
        await srv.stop()


async def test_wrong_api_secret_is_a_clear_error_at_once(server: Server) -> None:
    agent = Agent(AgentOptions(server_url=server.url, secret="wrong"), DemoSource())
    with pytest.raises(PermissionError, match="refused the API secret"):
        async with asyncio.timeout(10):
            await agent.run()
    assert not server.gateway.sessions


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_connections_leave_nothing_behind(server: Server) -> None:
    """Connect/disconnect cycles: no Janus session, room, mountpoint, socket or task survives on either side."""
    ra = await start_agent(server.url)
    await ra.stop()
    await asyncio.sleep(0.5)
    gc.collect()
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    for i in range(30):
        ra = await start_agent(server.url)
        if i % 6 == 0:
            async with viewer_for(server, ra) as v:
                await v.until(lambda f: True, timeout=20)
        await ra.stop()
    async with asyncio.timeout(10):
        while server.gateway.sessions:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    gc.collect()
    assert len(asyncio.all_tasks()) <= tasks
    assert open_fds() <= fds + 2
    owned = {
        f"{plugin.name}/{key}": value
        for plugin in server.plugins
        for key, value in plugin.metrics().items()
        if any(word in key for word in ("rooms", "mountpoints", "participants", "viewers", "peer_connections"))
    }
    assert len(owned) >= 4, owned
    assert all(value == 0 for value in owned.values()), owned


def test_config_of_the_fixture_is_valid() -> None:
    assert isinstance(server_config(), Config)


def idle_agent() -> Agent:
    from apuppet.agent.sources.base import Geometry

    agent = Agent(AgentOptions(server_url="http://127.0.0.1:9/", secret=SECRET, name="Unit"), DemoSource())
    agent.geometry = Geometry.fit(360, 640)
    agent._joined = True
    return agent


async def test_room_events_only_from_our_room_and_others() -> None:
    agent = idle_agent()
    room = agent.credentials.session
    agent._event({"textroom": "join", "room": room, "username": "device:Unit"})  # our own echo
    agent._event({"textroom": "join", "room": "other", "username": "admin:x"})
    agent._event({"textroom": "join", "room": room})  # no username
    assert agent.viewers == set()
    agent._event({"textroom": "join", "room": room, "username": "admin:x"})
    assert agent.viewers == {"admin:x"} and agent.state == "sharing"
    agent._event({"textroom": "kicked", "room": room, "username": "admin:x"})
    assert not agent._lost.is_set()
    agent._event({"textroom": "message", "room": room, "from": "admin:x", "text": "tap,1,2,3"})
    agent._event({"textroom": "message", "room": room, "from": "admin:x", "text": "tap,1,2"})  # malformed
    agent._event({"textroom": "message", "room": room, "from": "admin:x", "text": ["not", "text"]})
    agent._event({"textroom": "message", "room": room, "from": "device:Unit", "text": "back"})  # our echo
    assert agent._commands.qsize() == 1
    for _ in range(200):  # a flood is bounded
        agent._event({"textroom": "message", "room": room, "from": "admin:x", "text": "home"})
    assert agent._commands.qsize() == MAX_PENDING_COMMANDS
    agent._event({"textroom": "leave", "room": room, "username": "admin:x"})
    assert agent.viewers == set() and agent.state == "connected"
    agent._event({"textroom": "destroyed", "room": "other"})
    assert not agent._lost.is_set()
    agent._event({"textroom": "destroyed", "room": room})
    assert agent._lost.is_set()


async def test_commands_are_mapped_to_source_pixels() -> None:
    from apuppet.agent.sources.base import Geometry

    agent = idle_agent()
    phone = agent.source.phone
    agent.geometry = Geometry.fit(360, 640, max_side=320)  # stream at half size
    await agent._perform(parse("tap,36,78,10"))  # → (72, 156): the Counter icon
    assert phone.screen == "counter"
    await agent._perform(parse("tap,90,165,10"))  # → (180, 330): the big button
    assert phone.counter == 1


def test_malformed_server_url_is_refused_at_once() -> None:
    with pytest.raises(ValueError):
        Agent(AgentOptions(server_url="srv.example.org", secret=SECRET), DemoSource())


async def test_a_taken_session_id_gets_a_new_one_and_leaves_the_other_room_alone(
    server: Server, running: RunningAgent
) -> None:
    taken = running.agent.credentials
    agent = Agent(AgentOptions(server_url=server.url, secret=SECRET, name="Second"), DemoSource())
    agent.credentials = taken
    task = asyncio.get_running_loop().create_task(agent.run())
    try:
        async with asyncio.timeout(20):
            await agent.connected.wait()
        assert agent.credentials.session != taken.session
    finally:
        agent.stop()
        async with asyncio.timeout(15):
            await task
    # The first device's room and mountpoint are still there and still its own.
    async with viewer_for(server, running) as v:
        assert any(p.get("username") == "device:Test phone" for p in v.participants)
        await v.until(lambda f: True, timeout=20)


async def test_cancelling_the_agent_ends_it_promptly(server: Server) -> None:
    ra = await start_agent(server.url)
    started = time.monotonic()
    ra.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await ra.task
    assert time.monotonic() - started < 5  # clean-up is bounded at 2 s when cancelled
    assert ra.agent._sender is None and ra.agent._janus is None and ra.agent.state == "disconnected"


async def test_https_server_with_a_self_signed_certificate(tmp_path) -> None:
    from apuppet.ops import tls

    cert, key = tls.write_pair(tmp_path / "tls", *tls.self_signed(["127.0.0.1"]))
    port = free_port()
    config = server_config().model_copy(update={"tls_cert": str(cert), "tls_key": str(key), "web_https_port": port})
    srv = Server(config)
    await srv.start()
    url = f"https://127.0.0.1:{port}/"
    try:
        # Not trusted by the system: no connection (and no crash), until the certificate is given.
        untrusted = Agent(AgentOptions(server_url=url, secret=SECRET, retry_max=0.2), DemoSource())
        task = asyncio.get_running_loop().create_task(untrusted.run())
        await asyncio.sleep(1.0)
        assert not untrusted.connected.is_set() and not srv.gateway.sessions
        untrusted.stop()
        async with asyncio.timeout(10):
            await task
        ra = await start_agent(url, ca_file=str(cert))
        assert ra.agent.state == "connected"
        await ra.stop()
    finally:
        await srv.stop()


async def test_hundreds_of_joins_and_leaves_leave_no_stream_running() -> None:
    from apuppet.agent.rtpsender import RtpSender
    from apuppet.agent.video import VideoSettings, VideoStreamer

    agent = idle_agent()
    room = agent.credentials.session
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sender = await RtpSender.open("127.0.0.1", sink.getsockname()[1])
    agent._video = VideoStreamer(agent.source, agent.geometry, sender, VideoSettings())
    tasks = len(asyncio.all_tasks())
    try:
        for i in range(300):
            agent._event({"textroom": "join", "room": room, "username": f"admin:{i % 3}"})
            if i % 10 == 0:
                await asyncio.sleep(0.01)  # let some frames go out
            agent._event({"textroom": "leave", "room": room, "username": f"admin:{i % 3}"})
        await asyncio.sleep(2.0)  # the keyframe timers of the last joins run out
        assert not agent._video.running and agent.viewers == set()
        assert len(asyncio.all_tasks()) <= tasks
        assert sender.packets > 0
    finally:
        sender.close()
        sink.close()


async def test_a_viewer_who_joins_while_the_mountpoint_is_made_is_streamed_to(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page waiting for the device to come back joins as soon as the device is in the room, which can be while
    the agent still makes its mountpoint: that viewer must get the video without having to join again."""
    from apuppet.agent import agent as agent_module
    from apuppet.agent.streaming import Mountpoint

    viewer_in = asyncio.Event()

    class LateMountpoint(Mountpoint):
        async def create(self, *args: object, **kwargs: object) -> int:
            await viewer_in.wait()
            return await super().create(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(agent_module, "Mountpoint", LateMountpoint)
    agent = Agent(AgentOptions(server_url=server.url, secret=SECRET, name="Late"), DemoSource())
    task = asyncio.get_running_loop().create_task(agent.run())
    try:
        async with asyncio.timeout(20):
            while not agent._joined:
                await asyncio.sleep(0.01)
        # The server's join notice, delivered in the window the timing of a loaded machine opens.
        agent._event({"textroom": "join", "room": agent.credentials.session, "username": "admin:early"})
        assert agent._video is None and agent.viewers == {"admin:early"}
        viewer_in.set()
        async with asyncio.timeout(20):
            await agent.connected.wait()
        assert agent._video is not None and agent._video.running
        assert agent.state == "sharing"
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
