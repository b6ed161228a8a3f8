"""`RedisLoginStore` against a real redis-server: the idle expiry is the key's own TTL, renewed on use; at most
`limit` logins exist (the oldest goes, index included); a removal deletes both; and `Logins` on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from apuppet.cluster.logins import INDEX, RedisLoginStore, login_key
from apuppet.ops.logins import Logins

from .conftest import ADMIN, RedisProcess


@pytest.fixture
async def client(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_the_idle_expiry_is_the_keys_and_use_renews_it(client: aioredis.Redis) -> None:
    store = RedisLoginStore(client, limit=10)
    record = {"csrf": "c", "address": "192.0.2.1", "created": 1.0}
    await store.add("k1", record, idle=60)
    assert 59_000 < await client.pttl(login_key("k1")) <= 60_000
    await client.pexpire(login_key("k1"), 500)  # as if unused for 59.5 s
    assert await store.use("k1", idle=60) == record
    assert await client.pttl(login_key("k1")) > 59_000  # used: a full idle timeout again
    await store.add("k2", record, idle=0.2)
    async with asyncio.timeout(10):  # Redis expires it by itself
        while await client.exists(login_key("k2")):
            await asyncio.sleep(0.05)
    assert await store.use("k2", idle=60) is None


async def test_at_most_limit_logins_the_oldest_going_and_removal(client: aioredis.Redis) -> None:
    store = RedisLoginStore(client, limit=3)
    for n in range(5):
        await store.add(f"k{n}", {"csrf": "c", "address": "a", "created": 100.0 + n}, idle=60)
    assert [await store.use(f"k{n}", 60) is not None for n in range(5)] == [False, False, True, True, True]
    assert await client.zcard(INDEX) == 3
    await store.remove("k3")
    await store.remove("k3")  # twice is harmless
    assert await store.use("k3", 60) is None and await client.zcard(INDEX) == 2
    await client.set(login_key("junk"), "not json")
    assert await store.use("junk", 60) is None


async def test_logins_on_redis_are_shared_by_two_nodes_objects(client: aioredis.Redis) -> None:
    one, two = (Logins(ADMIN, store=RedisLoginStore(client, limit=10)) for _ in range(2))
    login = await one.log_in(ADMIN, "192.0.2.1")
    assert await two.check(login.token) == login
    await two.log_out(login.token)
    assert await one.check(login.token) is None
    assert [k for k in await client.keys("apuppet:*") if login.token in k] == []
