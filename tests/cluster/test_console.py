"""The operator console of a cluster, through whichever node answers: real redis-server, two nodes on loopback,
the Python agent with its demo phone and aiortc viewers. A login made through node A holds on B and a logout
through A ends it on B; B's view shows a device whose agent is on A, live; ending that device's viewer through B
disconnects it on A and tells the page why; a node killed with SIGKILL leaves the view."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from apuppet.agent.janus import JanusClient
from apuppet.api.idtag import tag
from apuppet.server import Server
from apuppet.server.console import CLUSTER_REFRESH

from ..agent.conftest import SECRET, start_agent
from ..agent.viewer import Viewer
from ..server.test_console import Operator
from ..server.viewer import TellingViewer, ViewerRoom, until
from .conftest import ADMIN, Cluster, RedisProcess, start_redis, wait_redis
from .nodeproc import stop


class WatchFirstTellingViewer(TellingViewer):
    """A viewer session (no API secret) that watches first and then joins the room, as a janus.js page may: both
    of its handles go to the device's node. `pause`: seconds between creating the session and watching."""

    pause = 0.0

    async def _enter(self) -> Viewer:
        self._http = aiohttp.ClientSession()
        self.janus = JanusClient(self._http, self.server_url, "")
        self.janus.on_event = self.janus_events.append
        await self.janus.create()
        await asyncio.sleep(self.pause)
        await self._watch()
        self.room = ViewerRoom(self.janus, self._event)
        await self.room.connect()
        join = {"textroom": "join", "room": self.session, "pin": self.password, "username": self.name}
        self.participants = (await self.room.checked(join)).get("participants", [])
        return self

    def room_events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.room_events if e.get("textroom") == kind]


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


async def test_wrong_secrets_at_one_node_block_the_console_login_on_every_node_until_the_delay_ends(
    nodes: list[Server], http: aiohttp.ClientSession
) -> None:
    """The console's side of the cluster-wide guessing limit (tests/cluster/test_guess_limits.py has the rest)."""
    a, b = nodes
    at_a, at_b = Operator(http, a.url), Operator(http, b.url)
    for node in nodes:  # the first delay: long enough to be seen on a loaded machine
        node.admin_throttle.base_delay = 3.0
    statuses = [(await at_a.log_in("wrong")).status for _ in range(7)]
    assert statuses == [401] * 6 + [429]
    assert (await at_a.log_in(ADMIN)).status == 429  # blocked at A: not compared until the delay is over
    await until(lambda: b.admin_throttle.blocked_for("127.0.0.1") > 0, timeout=5)
    assert (await at_b.log_in(ADMIN)).status == 429  # and at B, which heard of it
    await until(lambda: a.admin_throttle.blocked_for("127.0.0.1") == 0, timeout=30)
    await until(lambda: b.admin_throttle.blocked_for("127.0.0.1") == 0, timeout=30)
    assert (await at_a.log_in(ADMIN)).status == 200
    assert (await at_b.log_in(ADMIN)).status == 200


async def test_open_pages_share_one_view_of_the_cluster(nodes: list[Server], http: aiohttp.ClientSession) -> None:
    """Eight console pages open on A (live streams) and more asking for the state: B is asked for its devices
    about once a `CLUSTER_REFRESH` all the same, not once a second for each page."""
    a, b = nodes
    assert b.cluster is not None
    asked: list[float] = []
    serve = b.cluster.router.services["console.snapshot"]

    async def counted(call: dict[str, Any]) -> Any:
        asked.append(time.monotonic())
        return await serve(call)

    b.cluster.router.services["console.snapshot"] = counted
    operator = Operator(http, a.url)
    await operator.log_in(ADMIN)
    async with contextlib.AsyncExitStack() as pages:
        streams = [
            await pages.enter_async_context(http.get(f"{a.url}console/api/live", headers={"Cookie": operator.cookie}))
            for _ in range(8)
        ]
        for live in streams:
            await next_state(live, lambda s: s["unreachable"] == [])
        window = 3.0
        began = time.monotonic()
        while time.monotonic() - began < window:
            states = await asyncio.gather(*(operator.call("GET", "/console/api/state") for _ in range(4)))
            assert all(status == 200 and state["node"] == "node-a" for status, state in states)
            await asyncio.sleep(0.1)
        during = [t for t in asked if began <= t <= began + window]
    # Once a second (CLUSTER_REFRESH), give or take one at either end; 8 pages each asking would be 24 or more.
    assert 1 <= len(during) <= window / CLUSTER_REFRESH + 2, len(during)


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
            viewer = WatchFirstTellingViewer(b.url, info["session"], info["password"], name="admin:v1")
            viewer.pause = 1.5  # its guest on A is made 1.5 s after its session on B
            async with viewer:
                await viewer.until(lambda frame: True, timeout=20)
                state = await next_state(live, lambda s: s["devices"] and s["devices"][0]["viewers"])
                [seen] = state["devices"][0]["viewers"]
                assert seen["username"] == "admin:v1" and seen["address"] == "127.0.0.1" and seen["video"] == "playing"
                # The viewer's session is B's; its handles run on A (a guest), which names it with A's tag.
                assert viewer.janus is not None and viewer.janus.session_id in b.gateway.sessions
                assert a.cluster is not None and viewer.janus.session_id in a.cluster.directory.guests
                assert seen["session"] == tag(viewer.janus.session_id)  # one process here: one tag key
                # Since when: the session's creation at B, not the guest's later one at A.
                origin = b.gateway.sessions[viewer.janus.session_id]
                created = time.time() - (b.gateway.clock() - origin.created)
                assert abs(seen["since"] - created) < 0.5 and seen["transport"] == "http"
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


async def test_a_killed_nodes_devices_leave_the_view(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    a = await cluster.node("node-a")
    b = await cluster.child("node-b")
    device = await start_agent(b.url)
    try:
        at_a = Operator(http, a.url)
        await at_a.log_in(ADMIN)
        state = await until_state(at_a, lambda s: [d["node"] for d in s["devices"]] == ["node-b"])
        assert state["devices"][0]["id"] == device.agent.info["session"]
        # Through B as well: the login made at A holds in B's process.
        assert (await as_operator(http, b.url, at_a).call("GET", "/console/api/state"))[0] == 200
        assert await stop(b.process, signal.SIGKILL) == -signal.SIGKILL
        killed = time.monotonic()
        state = await until_state(at_a, lambda s: s["devices"] == [])
        assert time.monotonic() - killed < 8
    finally:
        await device.stop()


async def until_state(operator: Operator, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status, state = await operator.call("GET", "/console/api/state")
            assert status == 200
            if predicate(state):
                return dict(state)
            await asyncio.sleep(0.1)


async def test_the_console_through_the_port_workers_share(cluster: Cluster) -> None:
    """`serve --workers 2`: each request on a new connection may reach either worker; every one sees the login
    and the whole view, and the logout holds on both."""
    url = (await cluster.child("w", workers=2)).url
    device = await start_agent(url)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            operator = Operator(http, url)
            assert (await operator.log_in(ADMIN)).status == 200
            answered: set[str] = set()
            async with asyncio.timeout(30):
                while answered != {"w-1", "w-2"}:
                    status, state = await operator.call("GET", "/console/api/state")
                    assert status == 200, state
                    assert [d["id"] for d in state["devices"]] == [device.agent.info["session"]], state
                    answered.add(state["node"])
            assert (await operator.call("POST", "/console/api/logout"))[0] == 200
            statuses = [(await operator.call("GET", "/console/api/state"))[0] for _ in range(12)]
            assert statuses == [401] * 12
    finally:
        await device.stop()


async def test_an_idle_limit_is_judged_where_the_viewers_input_arrives(cluster: Cluster) -> None:
    """`viewer_idle_minutes` on a viewer of B whose handles run on A: B's plugins never see its taps, A's do. It
    stays while it taps, and once idle A ends it, the page told why, and B's session goes with it."""
    limits = {"viewer_idle_minutes": 0.05}  # 3 s
    a = await cluster.node("node-a", **limits)
    b = await cluster.node("node-b", **limits)
    device = await start_agent(a.url)
    try:
        info = device.agent.info
        async with WatchFirstTellingViewer(b.url, info["session"], info["password"], name="admin:v1") as viewer:
            await viewer.until(lambda frame: True, timeout=20)
            assert viewer.janus is not None
            session = b.gateway.sessions[viewer.janus.session_id]
            started = time.monotonic()
            while time.monotonic() - started < 4.5:  # half as long again as the limit, tapping
                viewer.send("tap,10,10,60")
                await asyncio.sleep(0.5)
            assert session.ending is None and not viewer.room_events_of("kicked")
            kicked = await until(lambda: viewer.room_events_of("kicked"), timeout=15)
            assert kicked[0]["reason"] == "idle" and "without input" in kicked[0]["message"]
            await until(lambda: session.destroyed, timeout=15)
    finally:
        await device.stop()


async def test_redis_lost_the_console_says_so_and_a_redis_restart_ends_the_logins(
    nodes: list[Server], http: aiohttp.ClientSession, redis_server: RedisProcess
) -> None:
    a, _ = nodes
    operator = Operator(http, a.url)
    await operator.log_in(ADMIN)
    redis_server.stop()
    status, body = await operator.call("GET", "/console/api/state")
    assert status == 503 and "Redis" in body["error"]
    assert (await operator.log_in(ADMIN)).status == 503
    # Janus clients of this node are still served meanwhile.
    async with http.post(f"{a.url}janus", json={"janus": "create", "transaction": "t", "apisecret": SECRET}) as r:
        assert (await r.json())["janus"] == "success"
    again = start_redis(redis_server.port)
    try:
        await wait_redis(again.url)
        # An empty Redis (logins need no persistence): the old cookie is unknown, a new login works.
        async with asyncio.timeout(15):
            while (status := (await operator.call("GET", "/console/api/state"))[0]) == 503:
                await asyncio.sleep(0.2)
        assert status == 401
        assert (await operator.log_in(ADMIN)).status == 200
        assert (await operator.call("GET", "/console/api/state"))[0] == 200
    finally:
        again.stop()
