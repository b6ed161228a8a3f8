"""Peer connections per session and per address are capped, so that one client cannot take every UDP port of
`rtp_port_range`; the count comes back on every way a connection goes. Real plugins, real aiortc gatherings on
loopback sockets; the Janus hop is in-process (tests/inproc.py) with the addresses a transport would report."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from apuppet.api.gateway import Gateway
from apuppet.config import Config
from apuppet.media.peers import PeerBudget, TooManyPeerConnections
from apuppet.plugins.textroom import TextRoomPlugin
from apuppet.server.app import load_plugins
from tests.inproc import InProcClient, plugin_data

from .test_ice import free_range

JSON = dict[str, Any]
ATTACKER = "127.0.0.2"
VIEWER = "127.0.0.3"
SECRET = "api-secret-for-the-agents"


class ViewerClient(InProcClient):
    """A client without the API secret, like the web-admin (and like the reported attacker)."""

    def request(self, verb: str, session: int | None = None, handle: int | None = None, **fields: Any) -> JSON:
        msg = {"janus": verb, "transaction": secrets.token_hex(6), **fields}
        return self.gateway.handle(msg, session_id=session, handle_id=handle, remote=self.remote)


def candidates(sdp: str) -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith("a=candidate:")]


@pytest.fixture
async def server() -> AsyncIterator[tuple[Gateway, Config]]:
    # 20 ports, one host candidate per connection (bind is loopback): 25 connections would take them all.
    lo, hi = free_range(20)
    config = Config(admin_secret="adm", api_secret=SECRET, rtp_port_range=f"{lo}-{hi}", bind="127.0.0.1")
    gateway = Gateway(load_plugins(config), api_secret=SECRET, session_timeout=60, viewer_access=True)
    yield gateway, config
    await gateway.close()


def textroom_plugin(gateway: Gateway) -> TextRoomPlugin:
    plugin = gateway.plugins["janus.plugin.textroom"]
    assert isinstance(plugin, TextRoomPlugin)
    return plugin


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def setup(janus: InProcClient, session: int, handle: int) -> JSON:
    """`setup` on a textroom handle; the event that answers it (an offer, or an error)."""
    reply = janus.message(session, handle, {"request": "setup"})
    assert reply["janus"] == "ack", reply
    return await janus.event(session, lambda e: e.get("sender") == handle and e.get("janus") == "event")


# -- sans-I/O --------------------------------------------------------------------------------------------------
def test_budget_caps_per_session_and_per_address_and_gives_back_once():
    budget = PeerBudget(per_session=2, per_address=3)
    a = budget.acquire(1, "192.0.2.1")
    b = budget.acquire(1, "::ffff:192.0.2.1")  # the same address, seen by a dual-stack socket
    with pytest.raises(TooManyPeerConnections, match="2 per session"):
        budget.acquire(1, "198.51.100.1")
    c = budget.acquire(2, "192.0.2.1")
    with pytest.raises(TooManyPeerConnections, match="3 per address"):
        budget.acquire(3, "192.0.2.1")
    a.release()
    a.release()
    assert budget.sessions[1] == 1 and budget.addresses["192.0.2.1"] == 2
    budget.acquire(3, "192.0.2.1")
    for lease in (b, c):
        lease.release()
    assert PeerBudget(0, 0).acquire(1, "192.0.2.1") is not None  # 0: no cap


# -- the attack: many textroom handles, `setup` on each ----------------------------------------------------------
async def test_one_session_cannot_use_up_the_udp_range(server):
    gateway, config = server
    attacker = ViewerClient(gateway, remote=ATTACKER)
    session = attacker.create()
    handles = [attacker.attach(session, "janus.plugin.textroom") for _ in range(25)]
    events = [await setup(attacker, session, h) for h in handles]
    offers = [e for e in events if "jsep" in e]
    refused = [plugin_data(e) for e in events if "jsep" not in e]
    assert len(offers) == config.max_peers_per_session == 4
    assert len(refused) == 21
    assert all("too many peer connections" in d["error"].lower() for d in refused), refused[0]

    # A real viewer, elsewhere, still gets candidates.
    viewer = ViewerClient(gateway, remote=VIEWER)
    vs = viewer.create()
    offer = await setup(viewer, vs, viewer.attach(vs, "janus.plugin.textroom"))
    assert "jsep" in offer, offer
    assert candidates(offer["jsep"]["sdp"])


async def test_many_sessions_from_one_address_cannot_use_up_the_udp_range(server):
    gateway, config = server
    attacker = ViewerClient(gateway, remote=ATTACKER)
    offers = 0
    refused: list[JSON] = []
    for _ in range(5):
        session = attacker.create()
        for _ in range(5):
            event = await setup(attacker, session, attacker.attach(session, "janus.plugin.textroom"))
            if "jsep" in event:
                offers += 1
            else:
                refused.append(plugin_data(event))
    assert offers == config.max_peers_per_address == 16
    assert any("per address" in d["error"] for d in refused), refused
    viewer = ViewerClient(gateway, remote=VIEWER)
    vs = viewer.create()
    offer = await setup(viewer, vs, viewer.attach(vs, "janus.plugin.textroom"))
    assert candidates(offer["jsep"]["sdp"])


# -- the count comes back ------------------------------------------------------------------------------------------
async def test_hangup_detach_and_session_destroy_give_the_count_back(server):
    gateway, config = server
    budget = textroom_plugin(gateway).peers.budget
    client = ViewerClient(gateway, remote=ATTACKER)
    session = client.create()
    handles = [client.attach(session, "janus.plugin.textroom") for _ in range(4)]
    for h in handles:
        assert "jsep" in await setup(client, session, h)
    assert budget.sessions[session] == 4 and budget.addresses[ATTACKER] == 4

    assert client.request("hangup", session, handles[0])["janus"] == "success"
    await until(lambda: budget.sessions[session] == 3)
    assert client.request("detach", session, handles[1])["janus"] == "success"
    await until(lambda: budget.sessions[session] == 2)
    # Room again: a new setup on the hung-up handle works.
    assert "jsep" in await setup(client, session, handles[0])
    assert client.request("destroy", session)["janus"] == "success"
    await until(lambda: session not in budget.sessions and ATTACKER not in budget.addresses)


async def test_streaming_viewers_count_too_and_stop_gives_back(server):
    gateway, config = server
    agent = InProcClient(gateway, remote="127.0.0.1")
    agent_session = agent.create()
    agent_handle = agent.attach(agent_session, "janus.plugin.streaming")
    created = plugin_data(
        agent.message(agent_session, agent_handle, {"request": "create", "type": "rtp", "id": "61", "video": True})
    )
    assert created["streaming"] == "created", created

    viewer = ViewerClient(gateway, remote=VIEWER)
    session = viewer.create()
    textroom = viewer.attach(session, "janus.plugin.textroom")
    assert "jsep" in await setup(viewer, session, textroom)
    results: list[JSON] = []
    handles = [viewer.attach(session, "janus.plugin.streaming") for _ in range(4)]
    for h in handles:
        assert viewer.message(session, h, {"request": "watch", "id": "61"})["janus"] == "ack"
        event = await viewer.event(session, lambda e, h=h: e.get("sender") == h and e.get("janus") == "event")
        results.append(event)
    assert ["jsep" in e for e in results] == [True, True, True, False]
    assert plugin_data(results[3])["error_code"] == 470
    assert "Too many peer connections" in plugin_data(results[3])["error"]

    # A real aiortc viewer plays one of them: connected connections count as much as pending ones.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(**results[0]["jsep"]))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = {"type": "answer", "sdp": pc.localDescription.sdp}
        assert viewer.message(session, handles[0], {"request": "start"}, answer)["janus"] == "ack"
        await until(lambda: pc.connectionState == "connected")
        assert viewer.message(session, handles[1], {"request": "stop"})["janus"] == "ack"
        budget = textroom_plugin(gateway).peers.budget
        await until(lambda: budget.sessions[session] == 3)
        assert viewer.message(session, handles[3], {"request": "watch", "id": "61"})["janus"] == "ack"
        again = await viewer.event(session, lambda e: e.get("sender") == handles[3] and "jsep" in e)
        assert candidates(again["jsep"]["sdp"])
    finally:
        await pc.close()


async def test_phones_behind_one_carrier_nat_are_not_capped_per_address():
    """The per-address cap is for viewers (no API secret): agents hold the secret, and hundreds of phones may leave
    through one carrier-NAT or office address. Each of their sessions keeps its own per-session cap."""
    lo, hi = free_range(20)
    config = Config(
        admin_secret="adm", api_secret=SECRET, rtp_port_range=f"{lo}-{hi}", bind="127.0.0.1", max_peers_per_address=2
    )
    gateway = Gateway(load_plugins(config), api_secret=SECRET, session_timeout=60, viewer_access=True)
    try:
        phones = InProcClient(gateway, remote=ATTACKER)
        events = []
        for _ in range(5):
            session = phones.create()
            events.append(await setup(phones, session, phones.attach(session, "janus.plugin.textroom")))
        assert all("jsep" in e for e in events), [plugin_data(e) for e in events if "jsep" not in e]

        # Viewers from that same address are still held to it.
        viewers = ViewerClient(gateway, remote=ATTACKER)
        answers = []
        for _ in range(3):
            session = viewers.create()
            answers.append(await setup(viewers, session, viewers.attach(session, "janus.plugin.textroom")))
        assert ["jsep" in e for e in answers] == [True, True, False]
        assert "2 per address" in plugin_data(answers[-1])["error"]
    finally:
        await gateway.close()
