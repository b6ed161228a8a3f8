"""Fixtures for the cluster tests: Debian's redis-server on a free loopback port, and apuppet nodes sharing it,
each with its own web port and its own slice of UDP ports, in this process or as `apuppet serve` children."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from apuppet.config import Config
from apuppet.server import Server

from ..agent.conftest import SECRET
from ..media.test_ice import free_range
from ..ports import free_port
from .nodeproc import ADMIN, ChildNode, serve, wait_http, write_config

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


class Cluster:
    """The nodes a test starts on its Redis, in the order it needs them: each takes the next RTP slice, and each is
    stopped after the test, the last started first."""

    def __init__(
        self, redis_url: str, slices: list[tuple[int, int]], folder: Path, stack: contextlib.AsyncExitStack
    ) -> None:
        self.redis_url = redis_url
        self._slices = iter(slices)
        self._folder = folder
        self._stack = stack

    async def node(self, name: str, **extra: object) -> Server:
        """A node in this process (the test reaches into its gateway, plugins and directory); `extra`: settings."""
        server = Server(node_config(self.redis_url, next(self._slices), name, **extra))
        await server.start()
        self._stack.push_async_callback(server.stop)
        return server

    async def child(self, name: str, workers: int = 0) -> ChildNode:
        """A node in a child process, answering HTTP: one a test can SIGKILL. `workers`: `serve --workers N`
        (nodes `name-1` … `name-N` on one port), given N slices of ports."""
        rtp = [next(self._slices) for _ in range(max(workers, 1))]
        folder = self._folder / name
        folder.mkdir()
        port = free_port()
        config = write_config(folder, self.redis_url, port, (rtp[0][0], rtp[-1][1]), node_name=name)
        node = ChildNode(config, port, await serve(config, *(("--workers", str(workers)) if workers else ())))
        self._stack.push_async_callback(node.close)
        await wait_http(port)
        return node


@pytest.fixture
async def cluster(
    redis_server: RedisProcess, rtp_slices: list[tuple[int, int]], tmp_path: Path
) -> AsyncIterator[Cluster]:
    async with contextlib.AsyncExitStack() as stack:
        yield Cluster(redis_server.url, rtp_slices, tmp_path, stack)


@pytest.fixture
async def nodes(cluster: Cluster) -> list[Server]:
    """Nodes A and B on one Redis."""
    return [await cluster.node("node-a"), await cluster.node("node-b")]
