"""The operator console of a cluster, through whichever node answers: real redis-server, two nodes on loopback,
the Python agent with its demo phone and aiortc viewers. A login made through node A holds on B and a logout
through A ends it on B; B's view shows a device whose agent is on A, live; ending that device's viewer through B
disconnects it on A and tells the page why; a node killed with SIGKILL leaves the view."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from apuppet.agent.janus import JanusClient
from apuppet.api.idtag import tag
from apuppet.server import Server

from ..agent.conftest import start_agent
from ..agent.viewer import Viewer
from ..ports import free_port
from ..server.test_console import Operator
from ..server.viewer import TellingViewer, ViewerRoom, until
from .conftest import ADMIN, RedisProcess, node_config
from .nodeproc import serve, stop, wait_http, write_config


class WatchFirstTellingViewer(TellingViewer):
    """A viewer session (no API secret) that watches first and then joins the room, as a janus.js page may: both
    of its handles go to the device's node."""

    async def _enter(self) -> Viewer:
        self._http = aiohttp.ClientSession()
        self.janus = JanusClient(self._http, self.server_url, "")
        self.janus.on_event = self.janus_events.append
        await self.janus.create()
        await self._watch()
        self.room = ViewerRoom(self.janus, self._event)
        await self.room.connect()
        join = {"textroom": "join", "room": self.session, "pin": self.password, "username": self.name}
        self.participants = (await self.room.checked(join)).get("participants", [])
        return self


def as_operator(http: aiohttp.ClientSession, server_url: str, logged_in: Operator) -> Operator:
    """The same browser (cookie and CSRF token) sending its requests to another node."""
    other = Operator(http, server_url)
    other.cookie, other.csrf = logged_in.cookie, logged_in.csrf
    return other


async def test_a_login_through_one_node_holds_on_the_other_until_a_logout_through_either(
    nodes: list[Server], http: aiohttp.ClientSession, redis_server: RedisProcess
) -> None:
    a, b = nodes
    at_a = Operator(http, a.url)
    assert (await at_a.log_in(ADMIN)).status == 200
    at_b = as_operator(http, b.url, at_a)
    status, whoami = await at_b.call("GET", "/console/api/login")
    assert (status, whoami["csrf"]) == (200, at_a.csrf)
    assert (await at_b.call("GET", "/console/api/state"))[0] == 200
    # Redis holds a hash of the token, never the token (reading Redis gives no login).
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = await client.keys("apuppet:login:*")
        assert len(keys) == 1 and at_a.set_cookie.value not in keys[0]
        stored = await client.get(keys[0])
        assert stored is not None and at_a.set_cookie.value not in stored and ADMIN not in stored
        assert 0 < await client.pttl(keys[0]) <= 30 * 60 * 1000  # unused, it expires in Redis itself
    finally:
        await client.aclose()
    # B's live stream ends when A logs the browser out, and B refuses the cookie from then on.
    async with http.get(f"{b.url}console/api/live", headers={"Cookie": at_a.cookie}) as live:
        assert (await asyncio.wait_for(live.content.readuntil(b"\n\n"), 10)).startswith(b"event: state\n")
        assert (await at_a.call("POST", "/console/api/logout"))[0] == 200
        assert b"event: logout" in await asyncio.wait_for(live.content.read(), 10)
    assert (await at_b.call("GET", "/console/api/state"))[0] == 401
    assert (await at_a.call("GET", "/console/api/state"))[0] == 401
    # A login through B is ended by a logout through... B, and A agrees.
    at_b = Operator(http, b.url)
    assert (await at_b.log_in(ADMIN)).status == 200
    assert (await as_operator(http, a.url, at_b).call("POST", "/console/api/logout"))[0] == 200
    assert (await at_b.call("GET", "/console/api/login"))[0] == 401


async def test_wrong_secrets_are_throttled_by_the_node_they_reach(
    nodes: list[Server], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    at_a, at_b = Operator(http, a.url), Operator(http, b.url)
    statuses = [(await at_a.log_in("wrong")).status for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429
    assert (await at_b.log_in("wrong")).status == 401  # each node counts its own (documented)
    assert (await at_a.log_in(ADMIN)).status == 200  # the right secret still passes


async def next_state(live: aiohttp.ClientResponse, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
    """The first state on a console's live stream that satisfies `predicate`."""
    async with asyncio.timeout(timeout):
        while True:
            chunk = (await live.content.readuntil(b"\n\n")).decode()
            if chunk.startswith("event: state\n"):
                state = json.loads(chunk.split("data: ", 1)[1])
                if predicate(state):
                    return dict(state)


async def test_b_shows_and_ends_a_viewer_of_a_device_on_a(nodes: list[Server], http: aiohttp.ClientSession) -> None:
    a, b = nodes
    at_b = Operator(http, b.url)
    await at_b.log_in(ADMIN)
    async with http.get(f"{b.url}console/api/live", headers={"Cookie": at_b.cookie}) as live:
        await next_state(live, lambda s: s["devices"] == [])
        device = await start_agent(a.url)
        try:
            info = device.agent.info
            started = time.monotonic()
            # The device appears on B's live stream (A's change, seen within B's one-second look).
            state = await next_state(live, lambda s: any(d["id"] == info["session"] for d in s["devices"]))
            appeared = time.monotonic() - started
            [shown] = state["devices"]
            assert (shown["node"], shown["name"], state["node"], state["unreachable"]) == (
                "node-a",
                "Test phone",
                "node-b",
                [],
            )
            async with WatchFirstTellingViewer(b.url, info["session"], info["password"], name="admin:v1") as viewer:
                await viewer.until(lambda frame: True, timeout=20)
                state = await next_state(live, lambda s: s["devices"] and s["devices"][0]["viewers"])
                [seen] = state["devices"][0]["viewers"]
                assert seen["username"] == "admin:v1" and seen["address"] == "127.0.0.1" and seen["video"] == "playing"
                # The viewer's session is B's; its handles run on A (a guest), which names it with A's tag.
                assert viewer.janus is not None and viewer.janus.session_id in b.gateway.sessions
                assert a.cluster is not None and viewer.janus.session_id in a.cluster.directory.guests
                assert seen["session"] == tag(viewer.janus.session_id)  # one process here: one tag key
                assert str(viewer.janus.session_id) not in json.dumps(state) and info["password"] not in json.dumps(
                    state
                )

                status, ended = await at_b.call("POST", f"/console/api/sessions/{seen['session']}/end?node=node-a")
                assert (status, ended["device"], ended["node"]) == (200, False, "node-a")
                kicked = await until(lambda: [e for e in viewer.room_events if e.get("textroom") == "kicked"])
                assert kicked[0]["reason"] == "operator" and kicked[0]["message"] == "An operator ended this session."
                assert (await until(viewer.stopped))["reason"] == "operator"
                # Both halves end: the guest and its peers on A, the session on B (after the grace).
                streaming = a.plugins[0].metrics
                await until(lambda: not a.cluster.directory.guests and not streaming()["streaming_viewers"], 15)
                await until(lambda: viewer.janus.session_id not in b.gateway.sessions, 15)
                state = await next_state(live, lambda s: s["devices"] and not s["devices"][0]["viewers"])
                assert any(e["event"] == "session_ended" and e["node"] == "node-a" for e in state["activity"])
            # The device's own session, closed through B without naming the node: found where it is.
            status, ended = await at_b.call("POST", f"/console/api/sessions/{shown['session']}/end")
            assert (status, ended["device"], ended["node"]) == (200, True, "node-a")
            assert (await at_b.call("POST", "/console/api/sessions/00000000/end"))[0] == 404
            assert (await at_b.call("POST", "/console/api/sessions/00000000/end?node=node-z"))[0] == 503
        finally:
            await device.stop()
    assert appeared < 10  # generous on a loaded machine; typically about a second


async def test_a_killed_nodes_devices_leave_the_view(
    redis_server: RedisProcess, rtp_slices: list[tuple[int, int]], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    a = Server(node_config(redis_server.url, rtp_slices[0], "node-a"))
    await a.start()
    port = free_port()
    b = await serve(write_config(tmp_path, redis_server.url, port, rtp_slices[1], node_name="node-b"))
    device = None
    try:
        await wait_http(port)
        device = await start_agent(f"http://127.0.0.1:{port}/")
        at_a = Operator(http, a.url)
        await at_a.log_in(ADMIN)
        state = await until_state(at_a, lambda s: [d["node"] for d in s["devices"]] == ["node-b"])
        assert state["devices"][0]["id"] == device.agent.info["session"]
        # Through B as well: the login made at A holds in B's process.
        assert (await as_operator(http, f"http://127.0.0.1:{port}/", at_a).call("GET", "/console/api/state"))[0] == 200
        assert await stop(b, signal.SIGKILL) == -signal.SIGKILL
        killed = time.monotonic()
        state = await until_state(at_a, lambda s: s["devices"] == [])
        assert time.monotonic() - killed < 8
    finally:
        if device is not None:
            await device.stop()
        await stop(b, signal.SIGKILL)
        await a.stop()


async def until_state(operator: Operator, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status, state = await operator.call("GET", "/console/api/state")
            assert status == 200
            if predicate(state):
                return dict(state)
            await asyncio.sleep(0.1)
