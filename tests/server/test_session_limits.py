"""`max_session_minutes` and `viewer_idle_minutes` enforced by a real server on a real viewer session (aiortc data
channel and video, a demo agent as the phone): the viewer hears why on its data channel and its video, then its
session goes; the agent's session is never limited. Minutes are fractions here so that a test takes seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from apuppet.config import Config
from apuppet.server import Server

from ..agent.conftest import SECRET, start_agent
from .viewer import TellingViewer, until


async def limited_server(**limits: float) -> Server:
    config = Config(bind="127.0.0.1", web_http_port=0, api_http=False, api_secret=SECRET, **limits)
    server = Server(config, housekeeping_interval=0.2)
    await server.start()
    return server


@pytest.fixture
async def agent_on() -> AsyncIterator[Any]:
    started: list[tuple[Server, Any]] = []

    async def start(**limits: float) -> tuple[Server, Any]:
        server = await limited_server(**limits)
        agent = await start_agent(server.url)
        started.append((server, agent))
        return server, agent

    yield start
    for server, agent in started:
        await agent.stop()
        await server.stop()


def kicked(viewer: TellingViewer) -> dict[str, Any] | None:
    return next((e for e in viewer.room_events if e.get("textroom") == "kicked"), None)


async def test_a_viewer_is_disconnected_at_the_time_limit(agent_on: Any) -> None:
    # 6 s: room for a slow connect on a loaded machine (the viewer must be watching when the limit strikes).
    server, agent = await agent_on(max_session_minutes=0.1)
    info = agent.agent.info
    began = time.monotonic()
    async with TellingViewer(server.url, info["session"], info["password"], "admin:limited") as viewer:
        kick = await until(lambda: kicked(viewer), timeout=30)
        waited = time.monotonic() - began
        assert viewer.frames > 0  # it was watching
        assert kick["reason"] == "time limit"
        assert kick["message"] == "The session reached its time limit of 0.1 minutes."
        assert waited >= 6 * 0.95  # not before the limit (the session was created just after `began`)
        stopped = await until(viewer.stopped)
        assert (stopped["reason"], stopped["message"]) == ("time limit", kick["message"])
        await until(lambda: not [s for s in server.gateway.sessions.values() if not s.trusted], timeout=10)
    # The device keeps its session, room and video: only viewers are limited.
    await asyncio.sleep(1.0)
    assert agent.agent.connected.is_set()
    assert [m["id"] for m in server.gateway.plugins["janus.plugin.streaming"].snapshot()["mountpoints"]] == [
        info["session"]
    ]


async def test_an_idle_viewer_is_disconnected_one_giving_input_is_not(agent_on: Any) -> None:
    server, agent = await agent_on(viewer_idle_minutes=0.1)  # 6 s
    info = agent.agent.info
    async with TellingViewer(server.url, info["session"], info["password"], "admin:busy") as busy:
        busy.send("tap,10,10,30")  # a person's input, at once
        async with TellingViewer(server.url, info["session"], info["password"], "admin:idle") as idle:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and kicked(idle) is None:
                busy.send("tap,10,10,30")
                idle.send(f"ping,{int(time.time() * 1000)}")  # the page's heartbeat only: not input
                await asyncio.sleep(0.4)
            kick = kicked(idle)
            assert kick is not None and kick["reason"] == "idle"
            assert kick["message"] == "Disconnected after 0.1 minutes without input."
            assert kicked(busy) is None
            # The device heard the idle viewer leave (aPuppet agents stop sharing on `leave`, they ignore `kicked`).
            await until(lambda: "admin:idle" not in server_participants(server, info["session"]))
            assert "admin:busy" in server_participants(server, info["session"])


def server_participants(server: Server, room: str) -> list[str]:
    rooms = server.gateway.plugins["janus.plugin.textroom"].snapshot()["rooms"]
    return [p["username"] for r in rooms if r["room"] == room for p in r["participants"]]
