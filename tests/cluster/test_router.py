"""The router's services for other parts (the console's): `ask`, `ask_all` and one-way `handlers`, between two real
nodes on a real redis-server; a message that fails on a node does not end its subscription, one without a valid
signature is dropped, and a subscription that ends anyway is started again."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from apuppet.cluster.bus import bus_key, sign
from apuppet.cluster.directory import ClusterUnavailable, channel
from apuppet.cluster.router import NodeGone
from apuppet.server import Server

from ..server.viewer import until
from .conftest import SECRET, RedisProcess


async def test_ask_and_ask_all_reach_the_services_of_the_live_nodes(nodes: list[Server]) -> None:
    a, b = nodes
    assert a.cluster is not None and b.cluster is not None
    seen: list[dict[str, Any]] = []

    async def echo(call: dict[str, Any]) -> dict[str, Any]:
        seen.append(call)
        return {"node": "node-b", "n": call["n"] + 1}

    b.cluster.router.services["test.echo"] = echo
    assert await a.cluster.router.ask("node-b", "test.echo", {"n": 1}) == {"node": "node-b", "n": 2}
    assert seen[0]["from"] == "node-a"
    assert await a.cluster.router.ask_all("test.echo", {"n": 5}) == {"node-b": {"node": "node-b", "n": 6}}
    # A node that is not there, and a service that fails there.
    with pytest.raises(NodeGone):
        await a.cluster.router.ask("node-z", "test.echo", {"n": 1})
    assert await a.cluster.router.ask_all("test.echo", {"n": 1}, nodes=["node-z"]) == {"node-z": None}

    async def broken(call: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a bug")

    b.cluster.router.services["test.broken"] = broken
    with pytest.raises(ClusterUnavailable):
        await a.cluster.router.ask("node-b", "test.broken", {})
    assert await a.cluster.router.ask_all("test.nothing", {}) == {"node-b": None}  # unknown there


async def test_a_message_that_fails_leaves_the_subscription_up(nodes: list[Server], redis_server: RedisProcess) -> None:
    a, b = nodes
    assert a.cluster is not None and b.cluster is not None
    got: list[dict[str, Any]] = []

    def handler(message: dict[str, Any]) -> None:
        got.append(message)
        if message.get("boom"):
            raise RuntimeError("a bug")

    a.cluster.router.handlers["test.note"] = handler
    key = bus_key(SECRET)
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        failing = (
            {"type": "test.note", "boom": True},
            {"type": "drop", "sid": "x", "hid": []},
            {"type": "idle", "from": "node-b", "sessions": {"1": 10**400}},
            {"type": "requeue", "sid": 1, "events": 5},
            {"type": "contest", "kind": [], "key": {}},
            {"type": "cancel", "id": "never-started"},
        )
        for body in failing:
            await client.publish(channel("node-a"), sign(key, body, channel("node-a")))
        for raw in (
            "[1]",
            "{",
            sign(key, {"type": "test.note"}, channel("node-a"))[1:],
            json.dumps({"type": "test.note"}),
        ):
            await client.publish(channel("node-a"), raw)  # unsigned, badly signed: dropped and counted
        await client.publish(channel("node-a"), sign(key, {"type": "test.note"}, channel("node-a")))
        await until(lambda: len(got) == 2)
        assert a.cluster.router.metrics()["cluster_messages_rejected_total"] == 4
        assert not a.cluster.router._cancelled  # a cancel for no running poll is not kept
        # A listener that ends anyway (a bug of ours) is started again by the next heartbeat.
        listener = a.cluster.bus._listener
        assert listener is not None
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await until(lambda: a.cluster is not None and a.cluster.bus._listener is not listener)
        async with asyncio.timeout(10):
            while len(got) < 3:  # published until the new subscription takes it
                await client.publish(channel("node-a"), sign(key, {"type": "test.note"}, channel("node-a")))
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    assert await b.cluster.router.ask_all("console.snapshot", {}) == {"node-a": {"devices": [], "activity": []}}


async def test_a_burst_of_ownership_changes_is_one_redis_call(nodes: list[Server], redis_server: RedisProcess) -> None:
    """A node stopping lets go of hundreds of mountpoints and rooms at once: one script call, not one each (which
    exhausted redis-py's connection pool with 200 devices)."""
    a, _ = nodes
    assert a.cluster is not None
    router = a.cluster.router
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:

        async def scripts() -> int:
            stats = await client.info("commandstats")
            return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))

        keys = [f"burst-{i}" for i in range(400)]
        before = await scripts()
        for key in keys:
            router._placed("mountpoint", key, True)
        await router._settle()
        assert await scripts() - before <= 2  # one call (and a NOSCRIPT retry at most)
        assert await client.get("apuppet:own:m:burst-399") == "node-a"
        before = await scripts()
        for key in keys:
            router._placed("mountpoint", key, False)
        await router._settle()
        assert await scripts() - before <= 2
        assert await client.exists(*[f"apuppet:own:m:{k}" for k in keys]) == 0
    finally:
        await client.aclose()
