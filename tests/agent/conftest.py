"""Fixtures for agent tests: a real server on loopback and a running demo agent."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from apuppet.agent.agent import Agent, AgentOptions
from apuppet.agent.phone import Phone
from apuppet.agent.sources.demo import DemoSource
from apuppet.config import Config
from apuppet.server import Server

from ..ports import free_port  # noqa: F401  (re-exported for the tests and bench/)

SECRET = "agent-test-" + secrets.token_hex(4)


def server_config(port: int = 0) -> Config:
    return Config(bind="127.0.0.1", web_http_port=port, api_http=False, api_secret=SECRET, admin_secret="adm-" + SECRET)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(server_config())
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


class RunningAgent:
    def __init__(self, agent: Agent, task: asyncio.Task[None], phone: Phone) -> None:
        self.agent = agent
        self.task = task
        self.phone = phone

    async def stop(self) -> None:
        self.agent.stop()
        async with asyncio.timeout(15):
            await self.task


async def start_agent(server_url: str, **options: object) -> RunningAgent:
    phone = Phone()
    agent = Agent(AgentOptions(server_url=server_url, secret=SECRET, name="Test phone", **options), DemoSource(phone))
    task = asyncio.get_running_loop().create_task(agent.run())
    async with asyncio.timeout(20):
        await agent.connected.wait()
    return RunningAgent(agent, task, phone)


@pytest.fixture
async def running(server: Server) -> AsyncIterator[RunningAgent]:
    ra = await start_agent(server.url)
    try:
        yield ra
    finally:
        await ra.stop()
