"""Two nodes on one Redis serve a device on one and its viewer on the other, end to end: real redis-server, real
HTTP, the Python agent with its demo phone, aiortc viewers decoding the video."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from apuppet.agent import phone as ph
from apuppet.agent.janus import JanusClient
from apuppet.agent.textroom import TextRoomPeer
from apuppet.netaddr import client_key
from apuppet.server import Server

from ..agent.conftest import SECRET, start_agent
from ..agent.viewer import Viewer, near
from ..server.viewer import until
from .balancer import Balancer
from .conftest import ADMIN, Cluster, RedisProcess


class WatchFirstViewer(Viewer):
    """A viewer as janus.js pages do it: it watches first, then sets up its data channel without naming a room
    (the cluster sends that handle where the session's other handle went). `fresh_connections`: a new TCP
    connection per request, so that a round-robin balancer sends each request to the next node."""

    fresh_connections = False

    async def _enter(self) -> Viewer:
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=self.fresh_connections))
        self.janus = JanusClient(self._http, self.server_url, self.secret)
        await self.janus.create()
        await self._watch()
        self.room = TextRoomPeer(self.janus, self._event)
        await self.room.connect()
        reply = await self.room.checked(
            {"textroom": "join", "room": self.session, "pin": self.password, "username": self.name}
        )
        self.participants = reply.get("participants", [])
        return self


async def metric(http: aiohttp.ClientSession, server: Server, name: str) -> float:
    async with http.get(server.url + "metrics", headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_a_viewer_on_node_b_watches_and_drives_a_device_on_node_a(
    nodes: list[Server], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    device = await start_agent(a.url)
    try:
        creds = device.agent.credentials
        async with WatchFirstViewer(b.url, SECRET, creds.session, creds.password) as viewer:
            await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
            viewer.send("tap,72,156,60")
            await viewer.until(lambda f: near(f, 20, 400, (250, 240, 225)))
            assert device.phone.screen == "counter"
            # The viewer's session is B's; its handles run on A, where the mountpoint and room are.
            assert len(b.gateway.sessions) == 1 and a.cluster is not None and b.cluster is not None
            assert len(b.cluster.directory.bound) == 2
            assert len(a.cluster.directory.guests) == 1
            # The viewer's address is counted on B, where its session is; A counts only the device's session.
            assert a.gateway.sessions_by_address.held(client_key("127.0.0.1")) == 1
            assert a.plugins[0].metrics()["streaming_viewers"] == 1
            assert await metric(http, b, "apuppet_cluster_relayed_total") > 3
        # The viewer left: its guest on A went with it, and the peer connections with the guest.
        async with asyncio.timeout(10):
            while a.cluster.directory.guests or a.plugins[0].metrics()["streaming_viewers"]:
                await asyncio.sleep(0.05)
    finally:
        await device.stop()


class RoundRobinViewer(WatchFirstViewer):
    fresh_connections = True


async def test_one_sessions_requests_and_long_polls_round_robin_across_nodes(nodes: list[Server]) -> None:
    a, b = nodes
    device = await start_agent(a.url)
    try:
        creds = device.agent.credentials
        async with Balancer([a.port, b.port]) as lb:
            async with RoundRobinViewer(lb.url, SECRET, creds.session, creds.password) as viewer:
                await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
                viewer.send("ping,42")
                assert await viewer.message(lambda t: t.startswith("pong")) == "pong,42"
            # Creating, attaching, watching, answering, joining and the long polls between them: both nodes
            # took a fair share of the one session's connections.
            assert min(lb.counts.get(a.port, 0), lb.counts.get(b.port, 0)) >= 4, lb.counts
    finally:
        await device.stop()


async def janus_post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    payload = {"transaction": "t-" + str(id(body)), "apisecret": SECRET, **body}
    async with http.post(url, data=json.dumps(payload)) as resp:
        reply = await resp.json(content_type=None)
    assert isinstance(reply, dict)
    return reply


async def test_a_node_that_stops_harms_only_its_own_sessions_and_the_agent_comes_back_on_another(
    nodes: list[Server], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    async with Balancer([a.port]) as lb:
        device = await start_agent(lb.url)
        try:
            lb.ports[:] = [a.port, b.port]
            first = device.agent.sessions[-1]
            assert first in a.gateway.sessions
            created = await janus_post(http, f"{b.url}janus", {"janus": "create"})
            own = created["data"]["id"]
            creds = device.agent.credentials
            async with WatchFirstViewer(b.url, SECRET, creds.session, creds.password) as viewer:
                await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
                await a.stop()
                # The viewer's handles ran on A: B hangs them up and forgets them.
                assert viewer.janus is not None
                async with asyncio.timeout(10):
                    while b.cluster is not None and b.cluster.directory.bound:
                        await asyncio.sleep(0.05)
                keepalive = await janus_post(http, f"{b.url}janus/{own}", {"janus": "keepalive"})
                assert keepalive["janus"] == "ack"
                gone = await janus_post(http, f"{b.url}janus/{first}", {"janus": "keepalive"})
                assert gone["janus"] == "error" and gone["error"]["code"] == 458
            # The agent noticed and made everything anew on B, where a viewer sees it again.
            async with asyncio.timeout(40):
                while device.agent.sessions[-1] == first or device.agent.state not in ("connected", "sharing"):
                    await asyncio.sleep(0.1)
            assert device.agent.sessions[-1] in b.gateway.sessions
            creds = device.agent.credentials
            async with WatchFirstViewer(b.url, SECRET, creds.session, creds.password) as again:
                await again.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
        finally:
            await device.stop()


async def test_a_room_made_anew_on_another_node_takes_over_once_the_old_creator_is_gone(
    nodes: list[Server], http: aiohttp.ClientSession, redis_server: RedisProcess
) -> None:
    """An agent back through another node while its old node still holds its room (its old session has not
    expired): the new room wins as soon as the old creator counts as gone, not when its session expires."""
    a, b = nodes
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    textroom = "janus.plugin.textroom"
    create = {"janus": "message", "body": {"request": "create", "room": "4242", "pin": "p"}}
    try:
        old = (await janus_post(http, f"{a.url}janus", {"janus": "create"}))["data"]["id"]
        handle = (await janus_post(http, f"{a.url}janus/{old}", {"janus": "attach", "plugin": textroom}))["data"]
        assert (await janus_post(http, f"{a.url}janus/{old}/{handle['id']}", create))["janus"] == "success"
        assert await client.get("apuppet:own:r:4242") == "node-a"
        new = (await janus_post(http, f"{b.url}janus", {"janus": "create"}))["data"]["id"]
        handle = (await janus_post(http, f"{b.url}janus/{new}", {"janus": "attach", "plugin": textroom}))["data"]
        # The handle's first message names a room A holds: it goes to A, where the id is taken (418).
        taken = await janus_post(http, f"{b.url}janus/{new}/{handle['id']}", create)
        assert taken["plugindata"]["data"]["error_code"] == 418
        # A create on a data channel set up on B (the agent's way) is made on B, whatever A holds; A's copy stays
        # while its creator is alive. (The request as the channel hands it over: TextRoomPlugin.receive.)
        fresh = (await janus_post(http, f"{b.url}janus/{new}", {"janus": "attach", "plugin": textroom}))["data"]["id"]
        channel_handle = b.gateway.sessions[new].handles[fresh]
        request = {"textroom": "create", "room": "4242", "pin": "p", "transaction": "c1"}
        b.plugins[1].dispatch("127.0.0.1", channel_handle, request)
        assert "4242" in b.plugins[1].rooms.rooms
        await asyncio.sleep(2.5)
        assert await client.get("apuppet:own:r:4242") == "node-a"
        # Once the old creator counts as gone there, A lets its room go and B's is the one clients reach.
        a.plugins[1].RECLAIM_AFTER = 0.5
        async with asyncio.timeout(10):
            while await client.get("apuppet:own:r:4242") != "node-b":
                await asyncio.sleep(0.1)
        assert "4242" not in a.plugins[1].rooms.rooms
    finally:
        await client.aclose()


async def test_a_long_poll_on_another_node_gets_the_events_and_a_client_that_left_loses_none(
    nodes: list[Server], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    sid = (await janus_post(http, f"{a.url}janus", {"janus": "create"}))["data"]["id"]
    handle = await janus_post(http, f"{a.url}janus/{sid}", {"janus": "attach", "plugin": "janus.plugin.streaming"})
    hid = handle["data"]["id"]
    watch = {"janus": "message", "body": {"request": "watch", "id": "nothing-here"}}
    poll_url = f"{b.url}janus/{sid}?apisecret={SECRET}"

    # A poll held by B for A's session: the event of a request sent to A comes back through it.
    async def poll_b() -> dict[str, Any]:
        async with http.get(poll_url) as resp:
            assert resp.status == 200
            return dict(await resp.json(content_type=None))

    waiting = asyncio.ensure_future(poll_b())
    await asyncio.sleep(0.5)
    assert (await janus_post(http, f"{a.url}janus/{sid}/{hid}", watch))["janus"] == "ack"
    event = await asyncio.wait_for(waiting, 15)
    assert event["janus"] == "event" and event["plugindata"]["data"]["error_code"] == 455
    assert b.cluster is not None and b.cluster.router.relayed == 0  # a poll is not a request

    # A client that gives up its poll at B: A stops waiting for it, and the next event waits for the next poll.
    # The cancel must reach A and end its wait before the event exists: otherwise this would pass through the
    # requeue path instead.
    assert a.cluster is not None
    polling = a.cluster.router._polling
    async with aiohttp.ClientSession() as other:
        gone = asyncio.ensure_future(other.get(poll_url))
        await until(lambda: len(polling) == 1)  # A waits for events for B's client
        gone.cancel()
    await until(lambda: not polling)  # B noticed (it looks every second) and told A, which stopped waiting
    assert not a.cluster.router._cancelled
    assert (await janus_post(http, f"{a.url}janus/{sid}/{hid}", watch))["janus"] == "ack"
    async with http.get(f"{a.url}janus/{sid}?apisecret={SECRET}") as resp:
        kept = await resp.json(content_type=None)
    assert kept["janus"] == "event" and kept["plugindata"]["data"]["error_code"] == 455


async def test_events_popped_for_a_poll_whose_reply_cannot_be_sent_wait_for_the_next_poll(
    nodes: list[Server], http: aiohttp.ClientSession
) -> None:
    """A serves B's client's poll; B goes before the event comes: the event A popped for that reply, which reaches
    nobody, goes back to the head of the session's queue (a lost JSEP offer would leave a viewer stuck)."""
    a, b = nodes
    sid = (await janus_post(http, f"{a.url}janus", {"janus": "create"}))["data"]["id"]
    handle = await janus_post(http, f"{a.url}janus/{sid}", {"janus": "attach", "plugin": "janus.plugin.streaming"})
    hid = handle["data"]["id"]
    assert a.cluster is not None
    polling = a.cluster.router._polling
    async with aiohttp.ClientSession() as other:
        waiting = asyncio.ensure_future(other.get(f"{b.url}janus/{sid}?apisecret={SECRET}"))
        await until(lambda: len(polling) == 1)
        await b.stop()  # B leaves without cancelling: A still waits, for nobody
        watch = {"janus": "message", "body": {"request": "watch", "id": "nothing-here"}}
        assert (await janus_post(http, f"{a.url}janus/{sid}/{hid}", watch))["janus"] == "ack"
        await until(lambda: not polling)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    async with http.get(f"{a.url}janus/{sid}?apisecret={SECRET}") as resp:
        kept = await resp.json(content_type=None)
    assert kept["janus"] == "event" and kept["plugindata"]["data"]["error_code"] == 455


async def test_a_vanished_viewer_on_another_node_leaves_nothing_on_the_device_node(cluster: Cluster) -> None:
    """A browser tab closed without a word: its session on B times out, and its guest on A (the handles, the
    peers, the ports) goes with it, not later."""
    a = await cluster.node("node-a", session_timeout=3)
    b = await cluster.node("node-b", session_timeout=3)
    device = await start_agent(a.url)
    try:
        creds = device.agent.credentials
        streaming, textroom = a.plugins[0].metrics, a.plugins[1].metrics
        async with WatchFirstViewer(b.url, SECRET, creds.session, creds.password) as viewer:
            await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
            assert a.cluster is not None and b.cluster is not None
            assert a.cluster.directory.guests and b.cluster.directory.bound
            assert viewer.janus is not None
            sid = viewer.janus.session_id
            await viewer.janus.close(destroy=False)  # no more polls, no destroy: the tab is gone
            await until(lambda: sid not in b.gateway.sessions, timeout=20)
            await until(lambda: not a.cluster.directory.guests and not streaming()["streaming_viewers"], timeout=10)
            await until(lambda: textroom()["peer_connections"] == 1, timeout=10)  # the device's own
            assert not b.cluster.directory.bound and sid not in a.gateway.sessions
    finally:
        await device.stop()


async def test_the_api_secret_never_crosses_redis(
    nodes: list[Server], redis_server: RedisProcess, http: aiohttp.ClientSession
) -> None:
    """Relayed requests, handle calls and long polls are checked by the node the client reached, which tells the
    holder only that the secret was right: whoever reads Redis learns no secret."""
    a, b = nodes
    seen: list[str] = []
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.psubscribe("apuppet:rpc:*")

    async def capture() -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                seen.append(str(message["data"]))

    capturing = asyncio.ensure_future(capture())
    device = await start_agent(a.url)
    try:
        creds = device.agent.credentials
        async with Balancer([a.port, b.port]) as lb:
            async with RoundRobinViewer(lb.url, SECRET, creds.session, creds.password) as viewer:
                await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
        async with WatchFirstViewer(b.url, SECRET, creds.session, creds.password) as viewer:  # bound to A
            await viewer.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
        # A long poll at B for a session of A.
        sid = (await janus_post(http, f"{a.url}janus", {"janus": "create"}))["data"]["id"]
        assert a.cluster is not None
        polling = a.cluster.router._polling
        async with aiohttp.ClientSession() as other:
            waiting = asyncio.ensure_future(other.get(f"{b.url}janus/{sid}?apisecret={SECRET}"))
            await until(lambda: len(polling) == 1)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        # A wrong secret for A's session is refused by B, the node it reached, before anything is relayed.
        session = device.agent.sessions[-1]
        relayed = b.cluster.router.relayed if b.cluster is not None else -1
        wrong = {"janus": "keepalive", "transaction": "t", "apisecret": "wrong"}
        async with http.post(f"{b.url}janus/{session}", data=json.dumps(wrong)) as resp:
            reply = await resp.json(content_type=None)
        assert reply["janus"] == "error" and reply["error"]["code"] == 403
        assert b.cluster is not None and b.cluster.router.relayed == relayed
    finally:
        await device.stop()
        capturing.cancel()
        await asyncio.gather(capturing, return_exceptions=True)
        await pubsub.aclose()
        await client.aclose()
    assert len(seen) > 10 and any('"op":"handle"' in m for m in seen) and any('"op":"poll"' in m for m in seen)
    assert not [m for m in seen if SECRET in m]
