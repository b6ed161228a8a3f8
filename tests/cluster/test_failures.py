"""What a cluster does when a part of it fails: a node killed with SIGKILL, Redis unreachable at start, Redis
lost while the nodes run; and `apuppet serve --workers 2`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from apuppet.agent import phone as ph
from apuppet.cluster.directory import ClusterUnavailable
from apuppet.server import Server

from ..agent.conftest import SECRET, start_agent
from ..agent.viewer import near
from ..ports import free_port
from .conftest import ADMIN, Cluster, RedisProcess, node_config, start_redis, wait_redis
from .nodeproc import serve, stop, stop_and_read, write_config
from .test_cluster import RoundRobinViewer, WatchFirstViewer, janus_post


async def test_a_killed_viewer_node_leaves_nothing_on_the_device_node(cluster: Cluster) -> None:
    a = await cluster.node("node-a")
    b = await cluster.child("node-b")
    device = await start_agent(a.url)
    try:
        creds = device.agent.credentials
        streaming, textroom = a.plugins[0].metrics, a.plugins[1].metrics
        assert textroom()["peer_connections"] == 1  # the device's own
        viewer = WatchFirstViewer(b.url, SECRET, creds.session, creds.password)
        async with viewer:
            await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
            assert a.cluster is not None and a.cluster.directory.guests
            assert streaming()["streaming_viewers"] == 1 and textroom()["peer_connections"] == 2
            # B dies without a word: A notices its node key expire and lets the guest go, peers and ports too.
            assert viewer.janus is not None and viewer.janus.session_id is not None
            b_session = viewer.janus.session_id
            assert await stop(b.process, signal.SIGKILL) == -signal.SIGKILL
            killed = asyncio.get_running_loop().time()
            async with asyncio.timeout(15):
                while a.cluster.directory.guests or streaming()["streaming_viewers"]:
                    await asyncio.sleep(0.1)
            # B's own session, asked at A: "no such session" (a relay finds nobody subscribed, then the entry expires).
            async with aiohttp.ClientSession() as http, asyncio.timeout(15):
                while (await janus_post(http, f"{a.url}janus/{b_session}", {"janus": "keepalive"}))["janus"] != "error":
                    await asyncio.sleep(0.1)
                reply = await janus_post(http, f"{a.url}janus/{b_session}", {"janus": "keepalive"})
            assert reply["error"]["code"] == 458
            assert asyncio.get_running_loop().time() - killed < 8  # the node key's 3 s, a heartbeat, the load
            async with asyncio.timeout(10):
                while textroom()["peer_connections"] != 1 or len(a.gateway.sessions) != 1:
                    await asyncio.sleep(0.1)
            assert device.agent.state in ("connected", "sharing")
    finally:
        await device.stop()


async def test_redis_unreachable_at_start_is_a_clear_error(rtp_slices: list[tuple[int, int]], tmp_path: Path) -> None:
    nowhere = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    server = Server(node_config(nowhere, rtp_slices[0], "lonely"))
    with pytest.raises(ClusterUnavailable, match=r"cannot reach Redis at redis://:\*\*\*@127\.0\.0\.1"):
        await server.start()
    assert not server.ports  # no client was ever accepted
    await server.stop()
    # The command says it in one line, without the password, and exits 1.
    process = await serve(write_config(tmp_path, nowhere, free_port(), rtp_slices[1]))
    assert process.stderr is not None
    err = (await process.stderr.read()).decode()
    assert await process.wait() == 1
    assert "cannot reach Redis at redis://:***@127.0.0.1" in err and "hunter2" not in err
    assert "Traceback" not in err


async def test_redis_lost_mid_run_each_node_keeps_serving_what_it_holds(
    redis_server: RedisProcess, nodes: list[Server], http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = nodes
    device = await start_agent(a.url)
    try:
        creds = device.agent.credentials
        session = device.agent.sessions[-1]
        async with WatchFirstViewer(a.url, SECRET, creds.session, creds.password) as viewer:
            await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
            caplog.set_level(logging.WARNING, logger="apuppet.cluster")
            redis_server.stop()
            # A still serves its device and viewer, and a new viewer of its own.
            viewer.send("tap,72,156,60")
            await viewer.until(lambda f: near(f, 20, 400, (250, 240, 225)), timeout=20)
            async with WatchFirstViewer(a.url, SECRET, creds.session, creds.password, "admin:two") as two:
                await two.until(lambda f: near(f, 20, 400, (250, 240, 225)), timeout=20)
            # B cannot tell where A's session is: a clear error, not "no such session".
            reply = await janus_post(http, f"{b.url}janus/{session}", {"janus": "keepalive"})
            assert reply["janus"] == "error" and reply["error"]["code"] == 490, reply
            async with asyncio.timeout(10):
                while not any("Redis unreachable" in r.getMessage() for r in caplog.records):
                    await asyncio.sleep(0.1)
            lost = [r for r in caplog.records if "Redis unreachable" in r.getMessage() and r.name.endswith("node")]
            assert len(lost) <= 2  # once per node, not once a second
            # Redis back (empty, as after a restart): A registers what it holds again, and B relays again.
            again = start_redis(redis_server.port)
            try:
                await wait_redis(again.url)
                client = aioredis.from_url(again.url, decode_responses=True)
                try:
                    async with asyncio.timeout(15):
                        while await client.get(f"apuppet:own:s:{session}") != "node-a":
                            await asyncio.sleep(0.2)
                        while await client.get(f"apuppet:own:m:{creds.session}") != "node-a":
                            await asyncio.sleep(0.2)
                finally:
                    await client.aclose()
                async with asyncio.timeout(10):
                    while (await janus_post(http, f"{b.url}janus/{session}", {"janus": "keepalive"}))["janus"] != "ack":
                        await asyncio.sleep(0.2)
            finally:
                again.stop()
    finally:
        await device.stop()


async def test_workers_share_the_web_port_and_a_dead_worker_comes_back(cluster: Cluster) -> None:
    parent = await cluster.child("w", workers=2)
    port = parent.port
    client = aioredis.from_url(cluster.redis_url, decode_responses=True)
    try:
        async with asyncio.timeout(20):
            while await client.exists("apuppet:node:w-1", "apuppet:node:w-2") != 2:
                await asyncio.sleep(0.1)
        records = {n: json.loads(await client.get(f"apuppet:node:w-{n}") or "{}") for n in (1, 2)}
        assert records[1]["rtp"] != records[2]["rtp"]
        # Sessions made through the one port land on both nodes (the kernel spreads connections).
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            ids = [
                (await janus_post(http, f"http://127.0.0.1:{port}/janus", {"janus": "create"}))["data"]["id"]
                for _ in range(24)
            ]
        holders = {await client.get(f"apuppet:own:s:{sid}") for sid in ids}
        assert holders == {"w-1", "w-2"}
        # A worker killed is started again under its name.
        os.kill(records[1]["pid"], signal.SIGKILL)
        async with asyncio.timeout(30):
            while True:
                record = json.loads(await client.get("apuppet:node:w-1") or "{}")
                if record.get("pid") not in (None, records[1]["pid"]):
                    break
                await asyncio.sleep(0.2)
        code, err = await stop_and_read(parent.process)
        assert code == 0
        # Only the worker killed here was restarted: the others started and stopped cleanly.
        assert err.count("exited with status") == 1, err[-2000:]
        assert "Traceback" not in err, err[-2000:]
        async with asyncio.timeout(10):
            while await client.exists("apuppet:node:w-1", "apuppet:node:w-2"):
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def test_two_workers_serve_a_device_and_its_viewer_through_one_port(cluster: Cluster) -> None:
    """`serve --workers 2` end to end: the agent and a viewer whose every request opens a new connection to the
    one port (so the kernel hands them to either worker) see and drive the demo phone."""
    parent = await cluster.child("e2e", workers=2)
    client = aioredis.from_url(cluster.redis_url)
    try:
        async with asyncio.timeout(20):
            while await client.exists("apuppet:node:e2e-1", "apuppet:node:e2e-2") != 2:
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    device = await start_agent(parent.url)
    try:
        creds = device.agent.credentials
        async with RoundRobinViewer(parent.url, SECRET, creds.session, creds.password) as viewer:
            await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
            viewer.send("tap,72,156,60")
            await viewer.until(lambda f: near(f, 20, 400, (250, 240, 225)), timeout=20)
        assert device.phone.screen == "counter"
    finally:
        await device.stop()


async def test_a_viewer_node_restarted_under_its_own_name_counts_as_gone_then_joined(cluster: Cluster) -> None:
    """`--workers` restarts a dead worker under its name within 0.5 s: the device node must still let go of the
    dead one's guests (peers, ports) at once, not at the session timeout."""
    a = await cluster.node("node-a")
    b = await cluster.child("w-1")
    device = await start_agent(a.url)
    try:
        creds = device.agent.credentials
        streaming = a.plugins[0].metrics
        viewer = WatchFirstViewer(b.url, SECRET, creds.session, creds.password)
        async with viewer:
            await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
            assert a.cluster is not None and a.cluster.directory.guests
            async with asyncio.timeout(10):
                while "w-1" not in a.cluster.directory.live:
                    await asyncio.sleep(0.1)
            assert await stop(b.process, signal.SIGKILL) == -signal.SIGKILL
            await asyncio.sleep(0.5)  # the supervisor's first backoff
            await b.restart()
            async with asyncio.timeout(15):
                while a.cluster.directory.guests or streaming()["streaming_viewers"]:
                    await asyncio.sleep(0.1)
            # The new one is live (a slow start, on a loaded machine, may let the old key expire first: A then sees
            # it at its next heartbeat).
            async with asyncio.timeout(10):
                while "w-1" not in a.cluster.directory.live:
                    await asyncio.sleep(0.1)
            assert a.cluster.router.metrics()["cluster_guest_sessions"] == 0
    finally:
        await device.stop()


async def test_a_device_node_restarted_under_its_own_name_gets_no_stray_guest(cluster: Cluster) -> None:
    """The viewer's node B keeps handles bound to w-1; w-1 dies and is back under its name within 0.5 s. B's next
    trickle for the dead one's guest is refused by the new one (no guest made there for nothing), and B lets the
    binding go and tells its client."""
    b = await cluster.node("node-b")
    w1 = await cluster.child("w-1")
    device = await start_agent(w1.url)
    try:
        creds = device.agent.credentials
        async with WatchFirstViewer(b.url, SECRET, creds.session, creds.password) as viewer:
            await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
            assert b.cluster is not None and b.cluster.directory.bound
            assert viewer.janus is not None and viewer.janus.session_id is not None
            sid, (_, hid) = viewer.janus.session_id, next(iter(b.cluster.directory.bound))
            assert await stop(w1.process, signal.SIGKILL) == -signal.SIGKILL
            await asyncio.sleep(0.5)
            await w1.restart()
            trickle = {"janus": "trickle", "candidate": {"completed": True}}
            async with aiohttp.ClientSession() as http:
                reply = await janus_post(http, f"{b.url}janus/{sid}/{hid}", trickle)
                assert reply["janus"] == "error", reply
                async with asyncio.timeout(10):
                    while b.cluster.directory.bound:
                        await asyncio.sleep(0.1)
                headers = {"Authorization": f"Bearer {ADMIN}"}
                async with http.get(f"{w1.url}metrics", headers=headers) as resp:
                    text = await resp.text()
            assert "apuppet_cluster_guest_sessions 0" in text
    finally:
        await device.stop()
