"""The agent's mountpoint request does what the Android agent's does (spec §4.1), judged by what a gateway makes of
it, not by comparing it with a copy of itself: the same checks run against apuppet's server and against the real
Janus gateway (Debian's `janus`, configured as aPuppet's Ansible does), which the Android agent was written for."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from apuppet.agent.janus import JanusClient
from apuppet.agent.streaming import Mountpoint
from apuppet.server import Server

from ..janus_gateway import JanusGateway, janus_installed
from .conftest import SECRET, server_config

NO_SUCH_MOUNTPOINT, UNAUTHORIZED = 455, 457
#: A password that would add a field if the body were built by pasting strings.
PIN = 'p","admin_key":"x'


@pytest.fixture(params=["apuppet", "janus"])
async def gateway(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    if request.param == "apuppet":
        server = Server(server_config())
        await server.start()
        try:
            yield server.url
        finally:
            await server.stop()
        return
    if not janus_installed():
        pytest.skip("the Janus gateway is not installed (apt-get install janus)")
    janus = await asyncio.to_thread(JanusGateway, tmp_path, SECRET)
    try:
        yield janus.url
    finally:
        await asyncio.to_thread(janus.stop)


def video_of(info: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(payload type, rtpmap, port) of the one video stream, from Janus' `media` list or apuppet's flat fields."""
    if "media" in info:
        (video,) = info["media"]  # exactly one stream: no audio, no data
        assert video["type"] == "video"
        return video["pt"], video["rtpmap"], video["port"]
    assert not info.get("audio_port") and not info.get("data_port")
    return info["videopt"], info["videortpmap"], info["video_port"]


async def watch(janus: JanusClient, mountpoint: str, pin: str) -> dict[str, Any]:
    """The `watch` a web-admin sends: the event carrying the offer, or the error event."""
    handle = await janus.attach("janus.plugin.streaming")
    reply = await janus.message(handle, {"request": "watch", "id": mountpoint, "pin": pin})
    if "jsep" in reply:
        return reply
    return await janus.event(
        handle, lambda e: "jsep" in e or "error_code" in e.get("plugindata", {}).get("data", {}), timeout=10
    )


async def test_the_mountpoint_is_the_android_agents(gateway: str) -> None:
    session_id = str(secrets.randbelow(10**10)).zfill(10)
    async with aiohttp.ClientSession() as http:
        agent, viewer = JanusClient(http, gateway, SECRET), JanusClient(http, gateway, SECRET)
        await agent.create()
        await viewer.create()
        try:
            mountpoint = Mountpoint(agent)
            port = await mountpoint.create(session_id, PIN)
            assert isinstance(port, int) and 0 < port < 65536  # videoport 0: the gateway chose one
            assert mountpoint.handle is not None
            reply = await agent.message(mountpoint.handle, {"request": "info", "id": session_id})
            info = reply["plugindata"]["data"]["info"]
            assert info["id"] == session_id and info["description"] == session_id
            assert video_of(info) == (100, "H264/90000", port)  # video only, PT 100, H.264
            assert "admin_key" not in info and info.get("pin", PIN) == PIN

            listed = await agent.message(mountpoint.handle, {"request": "list"})
            assert [m["id"] for m in listed["plugindata"]["data"]["list"]] == [session_id]  # not private

            # The password is the pin, exactly: a prefix of it is refused, the whole of it is offered video.
            refused = await watch(viewer, session_id, "p")
            assert refused["plugindata"]["data"]["error_code"] == UNAUTHORIZED
            offer = await watch(viewer, session_id, PIN)
            sdp = offer["jsep"]["sdp"]
            assert offer["jsep"]["type"] == "offer" and "H264/90000" in sdp
            assert "m=video " in sdp and "m=audio " not in sdp and "m=application " not in sdp

            await mountpoint.destroy()
            listed = await agent.message(mountpoint.handle, {"request": "list"})
            assert listed["plugindata"]["data"]["list"] == []
            gone = await watch(viewer, session_id, PIN)
            assert gone["plugindata"]["data"]["error_code"] == NO_SUCH_MOUNTPOINT
        finally:
            await viewer.close()
            await agent.close()
