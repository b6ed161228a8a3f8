"""A viewer as the web-admin is, for the console and session-limit tests: a viewer session (no API secret) with a
real aiortc data channel and video, keeping every room and Janus event it gets (a kick, a stop and their reason)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from apuppet.agent.janus import JanusClient
from apuppet.agent.textroom import TextRoomPeer

from ..agent.viewer import Viewer


class ViewerRoom(TextRoomPeer):
    """The agent's textroom client as a viewer session uses it: its channel check (`list`) needs the API secret,
    which a viewer has not, so it is answered here."""

    async def request(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("textroom") == "list":
            return {"textroom": "success", "list": []}
        return await super().request(body)


class TellingViewer(Viewer):
    """The test viewer as the web-admin is, a viewer session (no API secret), keeping every room and Janus event
    it gets."""

    def __init__(self, server_url: str, session: str, password: str, name: str) -> None:
        super().__init__(server_url, "", session, password, name)
        self.room_events: list[dict[str, Any]] = []
        self.janus_events: list[dict[str, Any]] = []

    async def __aenter__(self) -> TellingViewer:
        await super().__aenter__()
        return self

    async def _enter(self) -> Viewer:
        self._http = aiohttp.ClientSession()
        self.janus = JanusClient(self._http, self.server_url, "")
        self.janus.on_event = self.janus_events.append
        await self.janus.create()
        self.room = ViewerRoom(self.janus, self._event)
        await self.room.connect()
        join = {"textroom": "join", "room": self.session, "pin": self.password, "username": self.name}
        self.participants = (await self.room.checked(join)).get("participants", [])
        await self._watch()
        return self

    def _event(self, msg: dict[str, Any]) -> None:
        self.room_events.append(msg)
        super()._event(msg)

    def stopped(self) -> dict[str, Any] | None:
        for event in self.janus_events:
            data = event.get("plugindata", {}).get("data", {})
            result = data.get("result")
            if isinstance(result, dict) and result.get("status") == "stopped":
                return dict(data)
        return None


async def until(predicate: Any, timeout: float = 15.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := predicate()):
            await asyncio.sleep(0.05)
        return value
