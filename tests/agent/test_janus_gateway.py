"""The agent against the real Janus gateway (Debian's `janus`), configured as aPuppet's Ansible does it.

This is the check that the agent speaks what the Android agent speaks: if unmodified Janus accepts it, then
so does an aPuppet server, and whatever works with it works with the Android app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from apuppet.agent import phone as ph
from apuppet.agent.agent import Agent, AgentOptions
from apuppet.agent.sources.demo import DemoSource

from ..janus_gateway import JanusGateway, janus_installed
from .viewer import Viewer, near

pytestmark = pytest.mark.skipif(
    not janus_installed(), reason="the Janus gateway is not installed (apt-get install janus)"
)
SECRET = "janus-test-secret"


@pytest.fixture
async def janus(tmp_path) -> AsyncIterator[str]:
    gateway = await asyncio.to_thread(JanusGateway, tmp_path, SECRET)
    try:
        yield gateway.url
    finally:
        await asyncio.to_thread(gateway.stop)


async def test_agent_works_with_the_real_janus(janus: str) -> None:
    agent = Agent(AgentOptions(server_url=janus, secret=SECRET, name="Janus phone"), DemoSource())
    task = asyncio.get_running_loop().create_task(agent.run())
    try:
        async with asyncio.timeout(20):
            await agent.connected.wait()
        creds = agent.credentials
        async with Viewer(janus, SECRET, creds.session, creds.password) as v:
            assert any(p.get("username") == "device:Janus phone" for p in v.participants)
            assert await v.message(lambda t: t.startswith("stream")) == "streamingVideoResolution,360,640"
            await v.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
            v.send("ping,99")
            assert await v.message(lambda t: t.startswith("pong")) == "pong,99"
            v.send("tap,72,156,50")
            await v.until(lambda f: near(f, 20, 400, (250, 240, 225)))
            await v.leave()
            async with asyncio.timeout(10):
                while agent.viewers:
                    await asyncio.sleep(0.05)
    finally:
        agent.stop()
        async with asyncio.timeout(15):
            await task


async def test_agent_comes_back_when_janus_forgets_its_session(janus: str) -> None:
    """What a Janus restart or session timeout looks like to the agent (404 on the poll); the Android agent
    would poll the dead session for ever."""
    agent = Agent(AgentOptions(server_url=janus, secret=SECRET, name="Janus phone"), DemoSource())
    task = asyncio.get_running_loop().create_task(agent.run())
    try:
        async with asyncio.timeout(20):
            await agent.connected.wait()
        first = agent.sessions[-1]
        # Destroying the session behind the agent's back is what a restart looks like to it.
        import aiohttp

        from apuppet.agent.janus import JanusClient

        async with aiohttp.ClientSession() as http:
            other = JanusClient(http, janus, SECRET)
            other.session_id = first
            await other.request({"janus": "destroy"})
        async with asyncio.timeout(10):
            while not (agent.connected.is_set() and agent.sessions[-1] != first):
                await asyncio.sleep(0.05)
    finally:
        agent.stop()
        async with asyncio.timeout(15):
            await task
