"""Guessing limits that hold across a cluster: a real redis-server, nodes A and B on loopback, guessers at other
loopback addresses (127.0.0.2…: any 127/8 address is local on Linux). Wrong API secrets and wrong admin secrets
spread over A and B block the address on both; the right secret from another address still works; a hung Redis
leaves each node its own limits, and they are shared again once it answers."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from apuppet.server import Server

from ..agent.conftest import SECRET
from ..server.test_console import Operator
from ..server.viewer import until
from .conftest import ADMIN, Cluster, RedisProcess, wait_redis
from .test_cluster import janus_post

GUESSER = "127.0.0.2"


def from_address(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), force_close=True))


async def scrape(http: aiohttp.ClientSession, node: Server, secret: str) -> int:
    async with http.get(f"{node.url}metrics", headers={"Authorization": f"Bearer {secret}"}) as resp:
        await resp.read()
        return resp.status


async def log_in(http: aiohttp.ClientSession, node: Server, secret: str) -> int:
    return (await Operator(http, node.url).log_in(secret)).status


async def create(http: aiohttp.ClientSession, node: Server, secret: str) -> dict[str, Any]:
    """The reply to a `create`, or its error (code and reason) when refused."""
    reply = await janus_post(http, f"{node.url}janus", {"janus": "create", "apisecret": secret})
    error = reply.get("error")
    return error if isinstance(error, dict) else reply


def slow(*nodes: Server) -> None:
    """A first delay of 10 s instead of 1 s (both secrets, every node: Redis counts with the policy the nodes
    send), so that a busy test machine checks a block before it is over."""
    for node in nodes:
        node.admin_throttle.base_delay = node.gateway.throttle.base_delay = 10.0


def admin_blocked(node: Server, address: str) -> bool:
    return node.admin_throttle.blocked_for(address) > 0


async def test_wrong_admin_secrets_spread_over_two_nodes_block_the_address_on_both(
    nodes: list[Server], http: aiohttp.ClientSession, redis_server: RedisProcess
) -> None:
    a, b = nodes
    slow(a, b)
    async with from_address(GUESSER) as guesser:
        # Three failures on each node, under the five free ones of a node: neither would ever block the address.
        for _ in range(3):
            assert await scrape(guesser, a, "wrong") == 401
        for _ in range(3):
            assert await log_in(guesser, b, "wrong") == 401
        # The sixth blocks it in Redis, and A hears of it from B at once.
        await until(lambda: admin_blocked(a, GUESSER) and admin_blocked(b, GUESSER), timeout=1.0)
        for node in (a, b):
            assert await scrape(guesser, node, "wrong") == 429
            assert await log_in(guesser, node, "wrong") == 429
            # Refused before any comparison: the right secret gets the same 429.
            assert await scrape(guesser, node, ADMIN) == 429
            assert await log_in(guesser, node, ADMIN) == 429
    # The operator at another address is not affected, on either node.
    for node in (a, b):
        assert await scrape(http, node, ADMIN) == 200
        assert await log_in(http, node, ADMIN) == 200
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        assert await client.get(f"apuppet:guess:admin:{GUESSER}") == "6"  # the 429s were not counted
        assert 0 < await client.pttl(f"apuppet:guess:admin:{GUESSER}") <= 600_000
        assert 5_000 < (await client.zscore("apuppet:blocked:admin", GUESSER) or 0) - time.time() * 1000 <= 10_000
        assert await client.keys("apuppet:guess:api:*") == []  # the kinds count apart
    finally:
        await client.aclose()


async def test_wrong_api_secrets_spread_over_two_nodes_block_the_address_on_both(
    nodes: list[Server], http: aiohttp.ClientSession, redis_server: RedisProcess
) -> None:
    a, b = nodes
    slow(a, b)
    unauthorized = "Unauthorized request (wrong or missing secret/token)"
    async with from_address(GUESSER) as guesser:
        for node in (a, b, a, b, a, b):
            assert (await create(guesser, node, "wrong"))["reason"] == unauthorized
        key = ("apisecret", GUESSER)
        await until(lambda: a.gateway.throttle.blocked_for(key) > 0 and b.gateway.throttle.blocked_for(key) > 0, 1.0)
        for node in (a, b):
            refused = await create(guesser, node, "wrong")
            assert str(refused["reason"]).startswith("Too many failed attempts, retry in "), refused
            # The right API secret passes a blocked address, as on a single server (phones behind one NAT).
            assert (await create(guesser, node, SECRET))["janus"] == "success"
    for node in (a, b):
        assert (await create(http, node, SECRET))["janus"] == "success"
        assert (await create(http, node, "wrong"))["reason"] == unauthorized  # another address: its own count
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        assert await client.get(f"apuppet:guess:api:{GUESSER}") == "6"
        assert await client.zscore("apuppet:blocked:api", GUESSER) is not None
    finally:
        await client.aclose()


async def test_a_node_that_starts_during_a_block_refuses_the_address_at_once(
    cluster: Cluster, nodes: list[Server], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    slow(a, b)
    async with from_address(GUESSER) as guesser:
        for node in (a, b, a, b, a, b):
            assert await log_in(guesser, node, "wrong") == 401
        await until(lambda: admin_blocked(a, GUESSER), timeout=1.0)
        # C missed the message: it reads the blocks current in Redis as it starts.
        c = await cluster.node("node-c")
        assert admin_blocked(c, GUESSER)
        assert await log_in(guesser, c, ADMIN) == 429
    assert await log_in(http, c, ADMIN) == 200


async def test_a_hung_redis_leaves_each_node_its_own_limits_and_shared_ones_come_back(
    nodes: list[Server], http: aiohttp.ClientSession, redis_server: RedisProcess
) -> None:
    a, b = nodes
    slow(a, b)
    redis_server.process.send_signal(signal.SIGSTOP)  # every command now waits for its timeout
    try:
        async with from_address("127.0.0.3") as guesser:
            for _ in range(6):
                assert await scrape(guesser, a, "wrong") == 401
            # A still limits the address by itself (its sixth failure blocks it): never no limit.
            started = time.monotonic()
            assert await scrape(guesser, a, ADMIN) == 429
            # B counts its own: nothing is shared while Redis does not answer.
            assert await scrape(guesser, b, "wrong") == 401
            # Nobody else is refused, and nobody waits for Redis.
            assert await scrape(http, a, ADMIN) == 200
            assert await scrape(http, b, ADMIN) == 200
            assert time.monotonic() - started < 0.5
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    await wait_redis(redis_server.url)
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        # Both nodes have announced themselves again since (their connections work again).
        await client.delete("apuppet:node:node-a", "apuppet:node:node-b")
        async with asyncio.timeout(10):
            while await client.exists("apuppet:node:node-a", "apuppet:node:node-b") < 2:
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    async with from_address("127.0.0.4") as guesser:
        for node in (a, b, a, b, a, b):
            assert await scrape(guesser, node, "wrong") == 401
        await until(lambda: admin_blocked(a, "127.0.0.4") and admin_blocked(b, "127.0.0.4"), timeout=3.0)
        assert await scrape(guesser, a, ADMIN) == 429 and await scrape(guesser, b, ADMIN) == 429
