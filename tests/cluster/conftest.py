"""Fixtures for the cluster tests: Debian's redis-server on a free loopback port, and apuppet nodes sharing it,
each with its own web port and its own slice of UDP ports."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import redis
import redis.asyncio as aioredis

from apuppet.config import Config
from apuppet.server import Server

from ..agent.conftest import SECRET
from ..media.test_ice import free_range
from ..ports import free_port

ADMIN = "adm-" + SECRET
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")


@dataclass
class RedisProcess:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def start_redis(port: int | None = None) -> RedisProcess:
    port = port or free_port()
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return RedisProcess(port, process)


@contextlib.contextmanager
def running_redis() -> Iterator[RedisProcess]:
    """A redis-server answering, for synchronous tests (install.sh, Chromium), stopped afterwards."""
    server = start_redis()
    client = redis.Redis(port=server.port)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield server
    finally:
        client.close()
        server.stop()


async def wait_redis(url: str, timeout: float = 10.0) -> None:
    client = aioredis.from_url(url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await client.ping()
                    return
                except Exception:
                    await asyncio.sleep(0.05)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisProcess]:
    server = start_redis()
    try:
        await wait_redis(server.url)
        yield server
    finally:
        server.stop()


def node_config(redis_url: str, rtp: tuple[int, int], name: str, **extra: object) -> Config:
    return Config(
        bind="127.0.0.1",
        web_http_port=0,
        api_http=False,
        api_secret=SECRET,
        admin_secret=ADMIN,
        redis_url=redis_url,
        node_name=name,
        rtp_port_range=f"{rtp[0]}-{rtp[1]}",
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def rtp_slices() -> Iterator[list[tuple[int, int]]]:
    """Three disjoint port ranges of 30 ports (a node each)."""
    low, _ = free_range(90)
    yield [(low + 30 * i, low + 30 * i + 29) for i in range(3)]


@pytest.fixture
async def nodes(redis_server: RedisProcess, rtp_slices: list[tuple[int, int]]) -> AsyncIterator[list[Server]]:
    """Nodes A and B on one Redis."""
    servers = [Server(node_config(redis_server.url, rtp_slices[i], f"node-{'ab'[i]}")) for i in range(2)]
    started: list[Server] = []
    try:
        for server in servers:
            await server.start()
            started.append(server)
        yield servers
    finally:
        for server in started:
            await server.stop()
