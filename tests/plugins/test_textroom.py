"""The TextRoom plugin end to end: the Janus core in-process, real aiortc peers over loopback UDP.

Two kinds of client play the parts of aPuppet. `agent=True` replays the Android agent's sequence (spec
§3.1-§3.3): an answer without candidates and no trickle, its own `Trick` channel, and messages it reads only
from channels the server opens. The other plays the web-admin through janus.js (candidates in the answer,
its own `JanusDataChannel`). The phone itself cannot run here; these peers send its exact bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from apuppet.api.gateway import Gateway
from apuppet.config import Config
from apuppet.media import datachannel
from apuppet.media.datachannel import SERVER_LABEL
from apuppet.media.peers import Peers
from apuppet.ops.audit import Audit, AuditStore
from apuppet.plugins.textroom import TextRoomPlugin
from apuppet.server.app import media_settings
from tests.inproc import InProcClient, plugin_data

JSON = dict[str, Any]
PLUGIN = "janus.plugin.textroom"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def agent_transaction() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(12))


class DataPeer:
    """A Janus TextRoom client with a real PeerConnection; records every message with the channel it came on."""

    def __init__(self, janus: InProcClient, *, agent: bool) -> None:
        self.janus = janus
        self.agent = agent
        self.session = 0
        self.handle = 0
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.own: RTCDataChannel | None = None
        self.server_channels: list[RTCDataChannel] = []
        self.inbox: list[tuple[str, JSON]] = []
        self.arrived = asyncio.Event()
        self.pc.on("datachannel", self._server_channel)
        self.offer_sdp = ""

    def _server_channel(self, channel: RTCDataChannel) -> None:
        self.server_channels.append(channel)
        channel.on("message", lambda data: self._record(channel.label, data))

    def _record(self, label: str, data: str | bytes) -> None:
        self.inbox.append((label, json.loads(data)))
        self.arrived.set()

    async def connect(self) -> None:
        """Janus session, textroom handle, setup/offer, answer/ack, webrtcup: spec §3.1 steps 1-5."""
        self.session = self.janus.create()
        self.handle = self.janus.attach(self.session, PLUGIN)
        assert self.janus.message(self.session, self.handle, {"request": "setup"})["janus"] == "ack"
        offer = await self.janus.event(self.session, lambda e: "jsep" in e)
        assert plugin_data(offer) == {"textroom": "event", "result": "ok"}
        assert offer["jsep"]["type"] == "offer" and "m=application" in offer["jsep"]["sdp"]
        self.offer_sdp = offer["jsep"]["sdp"]
        await self.pc.setRemoteDescription(RTCSessionDescription(**offer["jsep"]))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        sdp = self.pc.localDescription.sdp
        if self.agent:
            # The agent reads its answer before gathering and never trickles: no candidates at all.
            lines = [line for line in sdp.splitlines() if not line.startswith(("a=candidate", "a=end-of-cand"))]
            sdp = "\r\n".join(lines) + "\r\n"
            assert "a=candidate" not in sdp
        reply = self.janus.message(self.session, self.handle, {"request": "ack"}, {"type": "answer", "sdp": sdp})
        assert reply["janus"] == "ack"
        ok = await self.janus.event(self.session, lambda e: plugin_data(e).get("result") == "ok")
        assert "jsep" not in ok
        await self.janus.event(self.session, lambda e: e["janus"] == "webrtcup", timeout=20)

    async def open_channel(self) -> None:
        label = "Trick" if self.agent else SERVER_LABEL
        self.own = self.pc.createDataChannel(label)
        # Listened to only to prove that nothing comes back on it.
        self.own.on("message", lambda data: self._record("own:" + label, data))
        opened = asyncio.Event()
        self.own.on("open", opened.set)
        await asyncio.wait_for(opened.wait(), 10)

    def send(self, request: JSON | str) -> None:
        assert self.own is not None
        self.own.send(request if isinstance(request, str) else json.dumps(request))

    async def recv(self, predicate: Callable[[JSON], bool] | None = None, timeout: float = 10.0) -> tuple[str, JSON]:
        """The first message (in arrival order) matching `predicate`, with its channel label; it is consumed."""
        predicate = predicate or (lambda _m: True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, (label, msg) in enumerate(self.inbox):
                if predicate(msg):
                    del self.inbox[i]
                    return label, msg
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"nothing matching arrived; inbox: {self.inbox!r}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                pass

    async def reply(self, transaction: str, timeout: float = 10.0) -> JSON:
        label, msg = await self.recv(lambda m: m.get("transaction") == transaction, timeout)
        assert label == SERVER_LABEL, f"reply on {label!r}"
        return msg

    async def request(self, body: JSON) -> JSON:
        transaction = agent_transaction()
        self.send({**body, "transaction": transaction})
        return await self.reply(transaction)

    async def close(self) -> None:
        await self.pc.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[tuple[Gateway, TextRoomPlugin]]:
    config = Config(admin_secret="the-admin-secret", rtp_port_range="20000-40000")
    plugin = TextRoomPlugin(config, Peers(media_settings(config)))
    gateway = Gateway([plugin], session_timeout=60, clock=clock)
    yield gateway, plugin
    await gateway.close()


@pytest.fixture
async def peers(server: tuple[Gateway, TextRoomPlugin]) -> AsyncIterator[list[DataPeer]]:
    made: list[DataPeer] = []
    yield made
    for peer in made:
        await peer.close()


async def connected(gateway: Gateway, peers: list[DataPeer], *, agent: bool, remote: str = "127.0.0.1") -> DataPeer:
    peer = DataPeer(InProcClient(gateway, remote=remote), agent=agent)
    peers.append(peer)
    await peer.connect()
    await peer.open_channel()
    return peer


async def agent_online(agent: DataPeer, name: str = "Pixel 7") -> tuple[str, str]:
    """The agent's connect flow on the data channel (spec §3.1 step 5-6, §3.2), byte for byte."""
    room, password = str(agent.session), "7Kp2"
    t = agent_transaction()
    agent.send('{"textroom":"list","transaction":"' + t + '"}')
    label, init = await agent.recv()
    assert (label, init) == (SERVER_LABEL, {"textroom": "success", "list": [], "transaction": t})
    t = agent_transaction()
    agent.send(
        '{"textroom":"create","is_private":false,"permanent":false,"transaction":"'
        + t
        + '","room":"'
        + room
        + '","pin":"'
        + password
        + '"}'
    )
    assert await agent.reply(t) == {"textroom": "success", "room": room, "permanent": False, "transaction": t}
    t = agent_transaction()
    agent.send(
        '{"textroom":"join","room":"'
        + room
        + '","username":"device:'
        + name
        + '","display":"'
        + name
        + '","pin":"'
        + password
        + '", "transaction":"'
        + t
        + '"}'
    )
    # Janus' order: the joiner's own join echo, then the success reply.
    label, echo = await agent.recv()
    assert (label, echo) == (
        SERVER_LABEL,
        {"textroom": "join", "room": room, "username": f"device:{name}", "display": name},
    )
    label, joined = await agent.recv()
    assert (label, joined) == (SERVER_LABEL, {"textroom": "success", "participants": [], "transaction": t})
    return room, password


async def test_agent_and_admin_session(server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer]) -> None:
    gateway, plugin = server
    agent = await connected(gateway, peers, agent=True)
    await asyncio.sleep(0.2)
    assert agent.server_channels == [], "the server channel opens with the first reply, as in Janus"
    room, password = await agent_online(agent)
    assert [c.label for c in agent.server_channels] == [SERVER_LABEL]
    # The offer is data-only and its ICE ports come from rtp_port_range (the firewall's UDP range).
    assert "m=audio" not in agent.offer_sdp and "m=video" not in agent.offer_sdp
    ports = [int(line.split()[5]) for line in agent.offer_sdp.splitlines() if line.startswith("a=candidate")]
    assert ports and all(20000 <= port <= 40000 for port in ports)

    admin = await connected(gateway, peers, agent=False)
    username = f"admin:{room}"
    t = agent_transaction()
    admin.send(
        {"textroom": "join", "room": room, "pin": password, "username": username, "display": username, "transaction": t}
    )
    _, echo = await admin.recv(lambda m: m["textroom"] == "join")
    assert echo == {"textroom": "join", "room": room, "username": username, "display": username}
    assert await admin.reply(t) == {
        "textroom": "success",
        "participants": [{"username": "device:Pixel 7", "display": "Pixel 7"}],
        "transaction": t,
    }
    label, joined = await agent.recv()
    assert (label, joined) == (SERVER_LABEL, echo)

    # The agent answers any join with its resolution, ack false: everybody (itself too) gets it, no reply.
    agent.send(
        '{"textroom":"message","room":"'
        + room
        + '","text":"streamingVideoResolution,368,800","ack":false,"transaction":"'
        + agent_transaction()
        + '"}'
    )
    _, res = await admin.recv(lambda m: m["textroom"] == "message")
    assert res["from"] == "device:Pixel 7" and res["text"] == "streamingVideoResolution,368,800"
    assert res["room"] == room and res["date"].endswith("+0000") and "whisper" not in res
    _, own = await agent.recv()
    assert own["text"] == "streamingVideoResolution,368,800"

    # The web-admin's commands carry no `ack`: it gets `success` with its transaction.
    for text in ("tap,120,300,80", "ping,1764094800123"):
        t = agent_transaction()
        admin.send({"textroom": "message", "room": room, "text": text, "transaction": t})
        assert await admin.reply(t) == {"textroom": "success", "transaction": t}
        label, got = await agent.recv()
        assert label == SERVER_LABEL and (got["textroom"], got["from"], got["text"]) == ("message", username, text)
        await admin.recv(lambda m, text=text: m.get("text") == text)  # its own copy
    agent.send('{"textroom":"message","room":"' + room + '","text":"pong,1764094800123","ack":false,"transaction":"1"}')
    _, pong = await admin.recv(lambda m: m.get("text", "").startswith("pong,"))
    assert pong["from"] == "device:Pixel 7"
    await agent.recv(lambda m: m.get("text", "").startswith("pong,"))

    # The admin leaves: the agent hears it, and the same username is free again.
    t = agent_transaction()
    admin.send({"textroom": "leave", "room": room, "transaction": t})
    assert await admin.reply(t) == {"textroom": "success", "transaction": t}
    label, left = await agent.recv()
    assert (label, left) == (SERVER_LABEL, {"textroom": "leave", "room": room, "username": username})
    again = await admin.request({"textroom": "join", "room": room, "pin": password, "username": username})
    assert again["textroom"] == "success"

    # `ack: false` was honoured: no reply ever came for the agent's messages.
    assert not [m for _, m in agent.inbox if m["textroom"] in ("success", "error")]
    # Whatever happened, nothing came back on the agent's own channel.
    assert not [m for label, m in agent.inbox if label.startswith("own:")]
    assert all(not label.startswith("own:") for label, _ in admin.inbox)

    # Teardown as the agent does it: over the Janus API, and the admin is told.
    reply = agent.janus.message(agent.session, agent.handle, {"request": "destroy", "room": room})
    assert reply["janus"] == "success"
    assert reply["plugindata"] == {
        "plugin": PLUGIN,
        "data": {"textroom": "destroyed", "room": room, "permanent": False},
    }
    _, destroyed = await admin.recv(lambda m: m["textroom"] == "destroyed")
    assert destroyed == {"textroom": "destroyed", "room": room}
    assert plugin.rooms.rooms == {}


async def test_refusals_keep_everything_up(server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer]) -> None:
    gateway, plugin = server
    agent = await connected(gateway, peers, agent=True)
    room, password = await agent_online(agent)
    admin = await connected(gateway, peers, agent=False)
    stranger = await connected(gateway, peers, agent=False, remote="192.0.2.66")
    username = f"admin:{room}"
    assert (await admin.request({"textroom": "join", "room": room, "pin": password, "username": username}))[
        "textroom"
    ] == "success"

    async def refused(peer: DataPeer, body: JSON) -> int:
        reply = await peer.request(body)
        assert reply["textroom"] == "error" and isinstance(reply["error"], str), reply
        return reply["error_code"]

    assert await refused(stranger, {"textroom": "join", "room": room, "pin": "0000", "username": "x"}) == 419
    assert await refused(stranger, {"textroom": "join", "room": room, "pin": password, "username": username}) == 420
    assert await refused(stranger, {"textroom": "join", "room": "no-such", "username": "x"}) == 417
    assert await refused(stranger, {"textroom": "create", "room": room}) == 418
    assert await refused(stranger, {"textroom": "destroy", "room": room}) == 419
    assert await refused(stranger, {"textroom": "destroy", "room": room, "secret": "guess"}) == 419
    assert await refused(admin, {"textroom": "kick", "room": room, "username": "device:Pixel 7"}) == 419
    over_http = stranger.janus.message(stranger.session, stranger.handle, {"request": "destroy", "room": room})
    assert plugin_data(over_http)["error_code"] == 419
    # list shows the pin-protected room to nobody but its creator.
    assert (await stranger.request({"textroom": "list"}))["list"] == []
    assert [r["room"] for r in (await agent.request({"textroom": "list"}))["list"]] == [room]

    # Garbage on the channel gets an error on the server channel; the channel and the peer stay usable.
    stranger.send("{not json")
    label, bad = await stranger.recv(lambda m: m.get("error_code") == 412)
    assert label == SERVER_LABEL and "transaction" not in bad
    stranger.send("x" * 70_000)
    _, big = await stranger.recv(lambda m: m.get("error_code") == 414)
    assert "larger" in big["error"]
    assert await refused(admin, {"textroom": "message", "room": room, "text": "x" * 20_000}) == 414
    assert (await stranger.request({"textroom": "exists", "room": room}))["exists"] is True

    # None of it reached the room's members or changed the room.
    assert [m["textroom"] for _, m in agent.inbox] == ["join"]
    assert list(plugin.rooms.rooms[str(agent.session)].participants) == ["device:Pixel 7", username]

    # The server admin may kick; the kicked and the others hear it.
    kick = {"textroom": "kick", "room": room, "username": username, "admin_key": "the-admin-secret"}
    assert (await stranger.request(kick))["textroom"] == "success"
    _, kicked = await admin.recv(lambda m: m["textroom"] == "kicked")
    assert kicked == {"textroom": "kicked", "room": room, "username": username}


async def test_private_message_reaches_only_its_recipient(
    server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer]
) -> None:
    gateway, _ = server
    agent = await connected(gateway, peers, agent=True)
    room, password = await agent_online(agent)
    admin = await connected(gateway, peers, agent=False)
    watcher = await connected(gateway, peers, agent=False)
    for peer, name in ((admin, "admin:1"), (watcher, "watcher")):
        await peer.request({"textroom": "join", "room": room, "pin": password, "username": name})
    await admin.request({"textroom": "message", "room": room, "text": "secret tap", "to": "device:Pixel 7"})
    _, whisper = await agent.recv(lambda m: m.get("textroom") == "message")
    assert whisper["whisper"] is True and whisper["from"] == "admin:1" and whisper["text"] == "secret tap"
    await admin.request({"textroom": "message", "room": room, "text": "for all"})
    _, public = await watcher.recv(lambda m: m.get("textroom") == "message")
    assert public["text"] == "for all", "the whisper must not have reached the watcher"


async def test_vanished_peer_leaves_its_rooms(server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer]) -> None:
    gateway, plugin = server
    agent = await connected(gateway, peers, agent=True)
    room, password = await agent_online(agent)
    admin = await connected(gateway, peers, agent=False)
    await admin.request({"textroom": "join", "room": room, "pin": password, "username": "admin:x"})
    await agent.recv(lambda m: m["textroom"] == "join")

    await admin.close()  # the browser tab goes away without a textroom `leave`
    label, left = await agent.recv(lambda m: m["textroom"] == "leave", timeout=20)
    assert (label, left) == (SERVER_LABEL, {"textroom": "leave", "room": room, "username": "admin:x"})
    hangup = await admin.janus.event(admin.session, lambda e: e["janus"] == "hangup", timeout=20)
    assert hangup["sender"] == admin.handle
    assert list(plugin.rooms.rooms[room].participants) == ["device:Pixel 7"]
    # The handle survives its PeerConnection and may set up a new one.
    assert admin.janus.message(admin.session, admin.handle, {"request": "setup"})["janus"] == "ack"
    offer = await admin.janus.event(admin.session, lambda e: "jsep" in e)
    assert plugin_data(offer)["result"] == "ok"


async def test_agent_session_timeout_destroys_its_room(
    server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer], clock: FakeClock
) -> None:
    """aPuppet's stale-room 418: the agent's session dies, its room must die with it so a reconnect works."""
    gateway, plugin = server
    agent = await connected(gateway, peers, agent=True)
    room, password = await agent_online(agent)
    admin = await connected(gateway, peers, agent=False)
    await admin.request({"textroom": "join", "room": room, "pin": password, "username": "admin:x"})

    clock.now += 30
    gateway.sessions[admin.session].touch(clock.now)
    clock.now += 31
    assert gateway.expire() == [agent.session]
    _, left = await admin.recv(lambda m: m["textroom"] == "leave")
    assert left == {"textroom": "leave", "room": room, "username": "device:Pixel 7"}
    _, destroyed = await admin.recv(lambda m: m["textroom"] == "destroyed")
    assert destroyed == {"textroom": "destroyed", "room": room}
    assert plugin.rooms.rooms == {}
    assert agent.handle not in {h.id for h in plugin.links}

    again = await connected(gateway, peers, agent=True)
    reply = await again.request({"textroom": "create", "room": room, "pin": password})
    assert reply["textroom"] == "success"


async def test_janus_api_requests(server: tuple[Gateway, TextRoomPlugin]) -> None:
    """Room requests over `message` answer synchronously; setup/ack misuse comes back as an error event."""
    gateway, plugin = server
    janus = InProcClient(gateway)
    session = janus.create()
    handle = janus.attach(session, PLUGIN)

    def ask(body: JSON) -> JSON:
        reply = janus.message(session, handle, body)
        assert reply["janus"] == "success", reply
        assert reply["sender"] == handle and reply["plugindata"]["plugin"] == PLUGIN
        return plugin_data(reply)

    assert ask({"request": "create", "room": 99, "description": "lab"}) == {
        "textroom": "created",
        "room": 99,
        "permanent": False,
    }
    assert ask({"request": "list"})["list"] == [
        {"room": 99, "description": "lab", "pin_required": False, "num_participants": 0}
    ]
    assert ask({"request": "exists", "room": "99"})["exists"] is True
    assert ask({"request": "listparticipants", "room": 99})["participants"] == []
    assert ask({"request": "create", "room": 99, "permanent": True})["error_code"] == 414
    assert ask({"request": "nonsense"})["error_code"] == 415
    assert ask({"request": "destroy", "room": 99})["textroom"] == "destroyed"
    assert ask({"request": "exists", "room": 99})["exists"] is False

    assert janus.message(session, handle, {"request": "ack"})["janus"] == "ack"
    refused = await janus.event(session, lambda e: "error_code" in plugin_data(e))
    assert plugin_data(refused)["error_code"] == 415
    janus.message(session, handle, {"request": "setup"})
    await janus.event(session, lambda e: "jsep" in e)
    janus.message(session, handle, {"request": "setup"})
    twice = await janus.event(session, lambda e: "error_code" in plugin_data(e))
    assert plugin_data(twice)["error_code"] == 416
    janus.message(session, handle, {"request": "ack"}, {"type": "answer", "sdp": "v=0\r\nm=bogus\r\n"})
    bad = await janus.event(session, lambda e: "error_code" in plugin_data(e))
    assert plugin_data(bad)["error_code"] == 414 and "Invalid SDP" in plugin_data(bad)["error"]
    assert len(plugin.links) == 1


async def test_server_channel_accepts_requests_and_reopens(
    server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer]
) -> None:
    """janus.js adopts the server's `JanusDataChannel` for sending; a client may also close it."""
    gateway, _ = server
    admin = await connected(gateway, peers, agent=False)
    await admin.request({"textroom": "create", "room": "r"})
    first = admin.server_channels[0]
    first.send(json.dumps({"textroom": "exists", "room": "r", "transaction": "on-server-channel"}))
    assert (await admin.reply("on-server-channel"))["exists"] is True

    first.close()
    await settle(lambda: first.readyState == "closed")
    assert (await admin.request({"textroom": "exists", "room": "r"}))["exists"] is True
    assert [c.label for c in admin.server_channels] == [SERVER_LABEL, SERVER_LABEL]
    assert admin.server_channels[1].readyState == "open"

    # Joining over the Janus API needs a PeerConnection to hear the room on.
    janus = InProcClient(gateway)
    session = janus.create()
    handle = janus.attach(session, PLUGIN)
    reply = janus.message(session, handle, {"request": "join", "room": "r", "username": "ghost"})
    assert plugin_data(reply)["error_code"] == 415


async def test_operator_events_feed_the_audit(
    server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer], tmp_path: Path
) -> None:
    """The plugin's reports reach the Gateway's observers: the audit sees one remote-control session."""
    gateway, plugin = server
    audit = Audit(AuditStore(tmp_path / "audit.sqlite3"))
    seen: list[tuple[str, JSON]] = []
    gateway.observers += [audit, lambda name, fields: seen.append((name, fields))]
    agent = await connected(gateway, peers, agent=True)
    room, password = await agent_online(agent)
    admin = await connected(gateway, peers, agent=False, remote="198.51.100.7")
    await admin.request({"textroom": "join", "room": room, "pin": "0000", "username": "admin:1"})
    await admin.request({"textroom": "join", "room": room, "pin": password, "username": "admin:1"})
    await admin.request({"textroom": "message", "room": room, "text": "home"})
    await admin.close()
    await agent.recv(lambda m: m["textroom"] == "leave", timeout=20)

    (record,) = audit.store.records()
    assert (record.room, record.device, record.viewer) == (room, "Pixel 7", "admin:1")
    assert record.viewer_address == "198.51.100.7" and record.end_reason == "hangup"
    names = [name for name, _ in seen]
    assert "wrong_pin" in names and names.count("participant_joined") == 2
    assert password not in repr(seen)
    metrics = plugin.metrics()
    assert metrics["rooms"] == 1 and metrics["participants"] == 1 and metrics["messages_total"] == 1
    audit.close()


async def test_trickled_candidates_reach_ice(server: tuple[Gateway, TextRoomPlugin]) -> None:
    """janus.js answers without candidates and trickles them, possibly before its `ack` is processed."""
    gateway, plugin = server
    janus = InProcClient(gateway)
    peer = DataPeer(janus, agent=False)
    try:
        peer.session = janus.create()
        peer.handle = janus.attach(peer.session, PLUGIN)
        janus.message(peer.session, peer.handle, {"request": "setup"})
        offer = await janus.event(peer.session, lambda e: "jsep" in e)
        await peer.pc.setRemoteDescription(RTCSessionDescription(**offer["jsep"]))
        await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        lines = peer.pc.localDescription.sdp.splitlines()
        mine = [line[2:] for line in lines if line.startswith("a=candidate")]
        assert mine
        trickles = [{"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0} for c in mine] + [
            {"candidate": "candidate:1 1 udp 2122260223 3f1a2b4c-0d7e-4f4e-9c1e-6b1d2f3a4b5c.local 50000 typ host"},
            {"candidate": "candidate:garbage"},
            {"completed": True},
        ]
        janus.request("trickle", peer.session, peer.handle, candidate=trickles[0])  # before the answer
        sdp = "\r\n".join(line for line in lines if not line.startswith(("a=candidate", "a=end-of-cand"))) + "\r\n"
        janus.message(peer.session, peer.handle, {"request": "ack"}, {"type": "answer", "sdp": sdp})
        assert janus.request("trickle", peer.session, peer.handle, candidates=trickles[1:])["janus"] == "ack"
        await janus.event(peer.session, lambda e: e["janus"] == "webrtcup", timeout=20)

        server_pc = next(iter(plugin.links.values())).pc
        assert server_pc is not None and server_pc.sctp is not None
        ice = server_pc.sctp.transport.transport
        await settle(lambda: len(ice.getRemoteCandidates()) >= len(mine))
        remote = {(c.ip, c.port) for c in ice.getRemoteCandidates()}
        trickled = {(c.split()[4], int(c.split()[5])) for c in mine}
        assert trickled <= remote
        assert not any(ip.endswith(".local") for ip, _ in remote)
    finally:
        await peer.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return
        await asyncio.sleep(0.01)


async def test_room_cycles_leave_nothing_behind(server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer]) -> None:
    gateway, plugin = server
    agent = await connected(gateway, peers, agent=True)
    admin = await connected(gateway, peers, agent=False)
    for i in range(300):
        room = f"cycle-{i}"
        assert (await agent.request({"textroom": "create", "room": room, "pin": "1"}))["textroom"] == "success"
        await agent.request({"textroom": "join", "room": room, "pin": "1", "username": "device:d"})
        await admin.request({"textroom": "join", "room": room, "pin": "1", "username": "admin:a"})
        await admin.request({"textroom": "message", "room": room, "text": "tap,1,1,1"})
        await admin.request({"textroom": "leave", "room": room})
        await agent.request({"textroom": "destroy", "room": room})
        agent.inbox.clear()
        admin.inbox.clear()
    assert plugin.rooms.rooms == {}
    assert all(not link.pending for link in plugin.links.values())


async def test_peer_lifecycles_leave_nothing_behind(server: tuple[Gateway, TextRoomPlugin]) -> None:
    """Sessions that set up a PeerConnection, make and join a room, then go away in each of the possible ways."""
    gateway, plugin = server
    janus = InProcClient(gateway)

    async def lifecycle(i: int) -> None:
        peer = DataPeer(janus, agent=i % 2 == 0)
        await peer.connect()
        await peer.open_channel()
        await peer.request({"textroom": "create", "room": f"life-{i}"})
        await peer.request({"textroom": "join", "room": f"life-{i}", "username": "device:d"})
        server_pc = plugin.links[gateway.sessions[peer.session].handles[peer.handle]].pc
        assert server_pc is not None
        ending = i % 4
        if ending == 0:
            janus.request("destroy", peer.session)
        elif ending == 1:
            janus.request("hangup", peer.session, peer.handle)
            janus.request("detach", peer.session, peer.handle)
            janus.request("destroy", peer.session)
        elif ending == 2:
            await peer.close()
            await janus.event(peer.session, lambda e: e["janus"] == "hangup", timeout=20)
            janus.request("destroy", peer.session)
        else:
            janus.request("detach", peer.session, peer.handle)
            janus.request("destroy", peer.session)
        # The server closes its side on its own: the client may well never say goodbye.
        await settle(lambda: server_pc.connectionState == "closed")
        assert server_pc.connectionState == "closed"
        await peer.close()

    await lifecycle(-1)  # warm up aiortc's lazily created state before counting
    await settle(lambda: not plugin._closing)
    tasks, fds = len(asyncio.all_tasks()), open_fds()
    for i in range(100):
        await lifecycle(i)
    await settle(lambda: not plugin._closing and len(asyncio.all_tasks()) <= tasks and open_fds() <= fds)
    assert plugin.rooms.rooms == {}
    assert plugin.links == {} and not plugin._closing
    assert gateway.sessions == {}
    assert len(asyncio.all_tasks()) <= tasks
    assert open_fds() <= fds


async def test_failed_setup_is_reported_not_left_hanging(
    server: tuple[Gateway, TextRoomPlugin], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent waits for the offer event without a timeout, so a server-side failure must become an event.
    (Fault injection: a real exhausted port range only yields an offer without candidates.)"""
    gateway, plugin = server
    janus = InProcClient(gateway)
    session = janus.create()
    handle = janus.attach(session, PLUGIN)

    def no_ports(*owner: object) -> RTCPeerConnection:
        raise OSError("no free UDP port")

    monkeypatch.setattr(plugin.peers, "create", no_ports)
    assert janus.message(session, handle, {"request": "setup"})["janus"] == "ack"
    failed = await janus.event(session, lambda e: "error_code" in plugin_data(e))
    assert plugin_data(failed)["error_code"] == 499 and "no free UDP port" in plugin_data(failed)["error"]
    assert "jsep" not in failed
    monkeypatch.undo()
    janus.message(session, handle, {"request": "setup"})
    offer = await janus.event(session, lambda e: "jsep" in e)
    assert plugin_data(offer)["result"] == "ok"


async def test_detach_during_setup_leaves_nothing_behind(server: tuple[Gateway, TextRoomPlugin]) -> None:
    """A client that leaves while its offer is being made: the half-made PeerConnection is closed too."""
    gateway, plugin = server
    janus = InProcClient(gateway)
    session = janus.create()
    handle = janus.attach(session, PLUGIN)
    janus.message(session, handle, {"request": "setup"})
    await janus.event(session, lambda e: "jsep" in e)  # warm up, then count
    janus.request("detach", session, handle)
    await settle(lambda: not plugin._closing)
    tasks, fds = len(asyncio.all_tasks()), open_fds()
    for i in range(50):
        handle = janus.attach(session, PLUGIN)
        janus.message(session, handle, {"request": "setup"})
        await asyncio.sleep(0.002 * (i % 5))  # from "not started" to "mid-gathering"
        janus.request("detach", session, handle)
    await settle(lambda: not plugin._closing and len(asyncio.all_tasks()) <= tasks and open_fds() <= fds)
    assert plugin.links == {} and not plugin._closing
    assert len(asyncio.all_tasks()) <= tasks
    assert open_fds() <= fds


async def test_unread_messages_are_bounded(server: tuple[Gateway, TextRoomPlugin]) -> None:
    """A participant whose channel never opens (its client never answered) cannot grow the server's memory."""
    gateway, plugin = server
    janus = InProcClient(gateway)
    session = janus.create()
    handle_id = janus.attach(session, PLUGIN)
    janus.message(session, handle_id, {"request": "setup"})
    await janus.event(session, lambda e: "jsep" in e)
    handle = gateway.sessions[session].handles[handle_id]
    for i in range(datachannel.MAX_PENDING + 44):
        plugin.links[handle].send(json.dumps({"textroom": "message", "text": f"tap,{i},1,1"}))
    assert len(plugin.links[handle].pending) == datachannel.MAX_PENDING
    assert plugin.metrics()["dropped_messages_total"] == 44
    janus.request("detach", session, handle_id)
    assert plugin.links == {} and plugin.metrics()["dropped_messages_total"] == 44


@pytest.mark.parametrize("verb", ["hangup", "detach"])
async def test_a_setup_taken_back_while_the_webrtc_stack_loads_makes_no_peer_connection(
    server: tuple[Gateway, TextRoomPlugin], held_stack: threading.Event, verb: str
) -> None:
    """A server's first `setup` waits for the WebRTC stack (media/peers.py); a hangup or detach meanwhile takes it
    back, instead of a peer connection made afterwards for nobody and holding its ports and its cap slot."""
    gateway, plugin = server
    janus = InProcClient(gateway)
    session = janus.create()
    handle = janus.attach(session, PLUGIN)
    assert janus.message(session, handle, {"request": "setup"})["janus"] == "ack"
    await asyncio.sleep(0.05)  # the setup waits for the stack
    janus.request(verb, session, handle)
    await asyncio.sleep(0.05)
    held_stack.set()
    await plugin.peers.ready()
    await asyncio.sleep(0.2)
    assert plugin.links == {} and plugin.peers.budget.sessions == {} and not plugin._setups
    if verb == "hangup":  # the handle may set up again
        janus.message(session, handle, {"request": "setup"})
        offer = await janus.event(session, lambda e: "jsep" in e)
        assert plugin_data(offer)["result"] == "ok" and len(plugin.links) == 1
