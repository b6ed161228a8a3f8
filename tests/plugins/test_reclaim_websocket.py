"""Issue 17 #9: a creator on a live WebSocket that is merely quiet must keep its room and mountpoint.

Reclaiming (an agent reconnecting with the same ids takes them over from its vanished old session) asks only
`Plugin.owner_gone`, i.e. the Gateway's `idle_for`, which is 0 for a session whose WebSocket is open. Replayed on a
real server: the creator talks over a real WebSocket, the would-be thief over HTTP with the API secret and the pin.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp

from apuppet.server import Server
from tests.media.test_ice import free_range
from tests.plugins.test_access_attacks import WEAK_PIN, mountpoint
from tests.server.conftest import SECRET, make_config

JSON = dict[str, Any]
ROOM = "48213077"
RECLAIM_AFTER = 0.5


class WebSocketJanus:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count()

    async def call(self, **body: Any) -> JSON:
        transaction = f"t{next(self.ids)}"
        await self.ws.send_str(json.dumps({"transaction": transaction, "apisecret": SECRET, **body}))
        while True:
            reply = json.loads((await self.ws.receive(timeout=5)).data)
            if reply.get("transaction") == transaction:
                return reply  # type: ignore[no-any-return]


async def http_call(http: aiohttp.ClientSession, url: str, **body: Any) -> JSON:
    async with http.post(url, data=json.dumps({"transaction": "t", "apisecret": SECRET, **body})) as resp:
        return await resp.json()  # type: ignore[no-any-return]


async def thief_tries(http: aiohttp.ClientSession, base: str) -> tuple[JSON, JSON]:
    """A trusted HTTP client with the pin asks for the same room and mountpoint ids (what a reconnecting agent does)."""
    sid = (await http_call(http, base, janus="create"))["data"]["id"]
    attach = [await http_call(http, f"{base}/{sid}", janus="attach", plugin=p)
              for p in ("janus.plugin.textroom", "janus.plugin.streaming")]  # fmt: skip
    room, stream = (f"{base}/{sid}/{a['data']['id']}" for a in attach)
    body = {"request": "create", "room": ROOM, "pin": WEAK_PIN}
    room_reply = (await http_call(http, room, janus="message", body=body))["plugindata"]["data"]
    stream_reply = (await http_call(http, stream, janus="message", body=mountpoint(ROOM, WEAK_PIN)))["plugindata"]
    return room_reply, stream_reply["data"]


async def test_a_quiet_websocket_creator_keeps_its_room_and_mountpoint(http: aiohttp.ClientSession) -> None:
    lo, hi = free_range(40)
    async with Server(make_config(rtp_port_range=f"{lo}-{hi}")) as server:
        for plugin in server.plugins:
            plugin.RECLAIM_AFTER = RECLAIM_AFTER
        base = server.url + "janus"
        textroom = next(p for p in server.plugins if p.name == "janus.plugin.textroom")
        streaming = next(p for p in server.plugins if p.name == "janus.plugin.streaming")
        async with http.ws_connect(base, protocols=("janus-protocol",)) as ws:
            creator = WebSocketJanus(ws)
            sid = (await creator.call(janus="create"))["data"]["id"]
            handles = [(await creator.call(janus="attach", session_id=sid, plugin=p))["data"]["id"]
                       for p in ("janus.plugin.textroom", "janus.plugin.streaming")]  # fmt: skip
            body = {"request": "create", "room": ROOM, "pin": WEAK_PIN}
            made = await creator.call(janus="message", session_id=sid, handle_id=handles[0], body=body)
            assert made["plugindata"]["data"]["textroom"] == "created", made
            made = await creator.call(
                janus="message", session_id=sid, handle_id=handles[1], body=mountpoint(ROOM, WEAK_PIN)
            )
            assert made["plugindata"]["data"]["streaming"] == "created", made

            # Silent for many times RECLAIM_AFTER, the WebSocket still open: nothing can be taken over.
            await asyncio.sleep(RECLAIM_AFTER * 4)
            room_reply, stream_reply = await thief_tries(http, base)
            assert room_reply["error_code"] == 418 and stream_reply["error_code"] == 456, (room_reply, stream_reply)
            assert textroom.rooms.rooms[ROOM].owner.session.id == sid
            assert streaming.mountpoints.mountpoints[ROOM].owner == sid

        # The WebSocket closed: its session goes, and the same ids are free for the reconnecting agent.
        for _ in range(50):
            if sid not in server.gateway.sessions:
                break
            await asyncio.sleep(0.05)
        room_reply, stream_reply = await thief_tries(http, base)
        assert room_reply["textroom"] == "created" and stream_reply["streaming"] == "created", (
            room_reply,
            stream_reply,
        )
