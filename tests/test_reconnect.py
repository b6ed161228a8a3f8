"""An Android agent that lost its network reconnects with the same Session ID and password (spec §7) while its
old Janus session still holds the room and the mountpoint: the server hands them over instead of failing with 418
(aPuppet's stale-room bug), but only to a client with the API secret *and* the pin, once the old one is silent."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp

from apuppet.server import Server

from .server.conftest import SECRET, make_config

ROOM, PIN = "48151623", "7391"
MOUNTPOINT = {
    "request": "create", "type": "rtp", "description": ROOM, "permanent": False, "is_private": False,
    "audio": False, "video": True, "data": False, "id": ROOM, "name": ROOM, "pin": PIN,
    "audioport": 0, "audiopt": 0, "videoport": 0, "videopt": 100, "videortpmap": "H264/90000", "videobufferkf": False,
}  # fmt: skip


async def call(http: aiohttp.ClientSession, url: str, **body: object) -> dict:
    body = {"transaction": "123456789012", "apisecret": SECRET, **body}
    async with http.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}) as resp:
        return await resp.json()


async def agent_connects(http: aiohttp.ClientSession, base: str) -> tuple[int, dict, dict]:
    """The agent's REST calls (spec §2, §3.2 over HTTP, §4.1); returns its session and the two plugin replies."""
    sid = (await call(http, base, janus="create"))["data"]["id"]
    room_handle = (await call(http, f"{base}/{sid}", janus="attach", plugin="janus.plugin.textroom"))["data"]["id"]
    stream_handle = (await call(http, f"{base}/{sid}", janus="attach", plugin="janus.plugin.streaming"))["data"]["id"]
    room = await call(http, f"{base}/{sid}/{room_handle}", janus="message",
                      body={"request": "create", "room": ROOM, "pin": PIN, "is_private": False})  # fmt: skip
    stream = await call(http, f"{base}/{sid}/{stream_handle}", janus="message", body=MOUNTPOINT)
    return sid, room["plugindata"]["data"], stream["plugindata"]["data"]


async def test_reconnect_with_the_same_ids_after_a_network_loss(http: aiohttp.ClientSession) -> None:
    async with Server(make_config(rtp_port_range="21000-21100")) as server:
        for plugin in server.plugins:
            plugin.RECLAIM_AFTER = 0.5
        base = server.url + "janus"
        old_sid, room, stream = await agent_connects(http, base)
        assert room["textroom"] == "created" and "stream" in stream
        old_port = stream["stream"]["video_port"]

        # The old agent is still alive: the same ids are refused, as in Janus.
        await call(http, f"{base}/{old_sid}", janus="keepalive")
        _, room2, stream2 = await agent_connects(http, base)
        assert room2["error_code"] == 418 and stream2["error_code"] == 456

        # The network is lost: no more polls from the old session. The reconnect takes the ids over.
        await asyncio.sleep(0.8)
        new_sid, room3, stream3 = await agent_connects(http, base)
        assert room3["textroom"] == "created", room3
        assert stream3["streaming"] == "created", stream3
        assert old_sid in server.gateway.sessions  # still there, but it owns nothing any more
        streaming = next(p for p in server.plugins if p.name == "janus.plugin.streaming")
        assert len(streaming.ingests) == 1
        if stream3["stream"]["video_port"] != old_port:  # the old ingest port was released
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", old_port))

        # A client without the pin cannot take a room over, even from a silent owner.
        await asyncio.sleep(0.8)
        sid = (await call(http, base, janus="create"))["data"]["id"]
        handle = (await call(http, f"{base}/{sid}", janus="attach", plugin="janus.plugin.textroom"))["data"]["id"]
        thief = await call(http, f"{base}/{sid}/{handle}", janus="message",
                           body={"request": "create", "room": ROOM, "pin": "0000"})  # fmt: skip
        assert thief["plugindata"]["data"]["error_code"] == 418

        # When the old session finally times out, it takes nothing of the new agent's with it.
        server.gateway.destroy_session(server.gateway.sessions[old_sid])
        textroom = next(p for p in server.plugins if p.name == "janus.plugin.textroom")
        assert ROOM in textroom.rooms.rooms and len(streaming.ingests) == 1
        assert new_sid in server.gateway.sessions
