"""`DataChannelLink` on its own, without the TextRoom plugin: a real aiortc client on loopback UDP at the other
end. What the plugin relies on: text both ways on the channels Janus' SCTP stack would use, candidates trickled
before the answer kept and used, a raising `on_message` contained and answered, and a closed link silent and
its peer connection counted back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from apuppet.media import contain
from apuppet.media.datachannel import SERVER_LABEL, DataChannelLink, NoOfferPending
from apuppet.media.peers import Peers, TooManyPeerConnections
from apuppet.media.settings import MediaSettings

from .test_ice import free_range


def without_candidates(sdp: str) -> str:
    lines = [line for line in sdp.splitlines() if not line.startswith(("a=candidate", "a=end-of-candidates"))]
    return "\r\n".join(lines) + "\r\n"


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


class Recorder:
    """The plugin's side of a link: what it was told, in order."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.errors: list[str] = []
        self.up = 0
        self.gone: list[str] = []

    def link(self, peers: Peers, **kw: Any) -> DataChannelLink:
        return DataChannelLink(
            peers,
            on_message=kw.pop("on_message", self.messages.append),
            on_up=lambda: setattr(self, "up", self.up + 1),
            on_gone=self.gone.append,
            on_message_error=lambda exc: self.errors.append(type(exc).__name__),
            **kw,
        )


class Client:
    """A browser-like peer: answers the server's offer, reads what the server's channels bring."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.received: list[tuple[str, str | bytes]] = []
        self.pc.on("datachannel", self._channel)

    def _channel(self, channel: RTCDataChannel) -> None:
        channel.on("message", lambda data: self.received.append((channel.label, data)))

    async def answer(self, offer: dict[str, Any], *, hide_offer_candidates: bool = False) -> str:
        sdp = without_candidates(offer["sdp"]) if hide_offer_candidates else offer["sdp"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def own_channel(self, label: str) -> RTCDataChannel:
        channel = self.pc.createDataChannel(label)
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await asyncio.wait_for(opened.wait(), 10)
        return channel


@pytest.fixture
def peers() -> Peers:
    return Peers(MediaSettings(port_range=free_range(20), bind="127.0.0.1", max_peers_per_session=1))


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.pc.close()


async def test_text_goes_both_ways_on_the_channels_janus_would_use(peers: Peers, clients: list[Client]) -> None:
    seen = Recorder()
    link = seen.link(peers)
    client = Client()
    clients.append(client)
    try:
        offer = await link.offer()
        assert offer["type"] == "offer" and "m=application" in offer["sdp"]
        await link.answer({"type": "answer", "sdp": await client.answer(offer)})
        await until(lambda: seen.up == 1)
        # The agent's own channel carries requests in; replies leave on a channel the server opens.
        trick = await client.own_channel("Trick")
        trick.send('{"textroom":"list"}')
        await until(lambda: seen.messages == ['{"textroom":"list"}'])
        link.send('{"textroom":"success"}')
        await until(lambda: client.received == [(SERVER_LABEL, '{"textroom":"success"}')])
        assert seen.gone == [] and seen.errors == [] and link.dropped == 0
        with pytest.raises(NoOfferPending):
            await link.answer({"type": "answer", "sdp": await client.answer(offer)})
    finally:
        await link.close()


async def test_candidates_trickled_before_the_answer_are_kept_and_connect(peers: Peers, clients: list[Client]) -> None:
    """The client cannot reach the server's candidates (they are hidden from it) and answers without its own, as
    janus.js does before it trickles: only the server's checks towards the trickled candidates can connect."""
    seen = Recorder()
    link = seen.link(peers)
    client = Client()
    clients.append(client)
    try:
        sdp = await client.answer(await link.offer(), hide_offer_candidates=True)
        mine = [line[2:] for line in sdp.splitlines() if line.startswith("a=candidate")]
        assert mine
        ignored = [{"completed": True}, {"candidate": "candidate:garbage"}, {"candidate": ""}]
        await link.trickle([{"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0} for c in mine] + ignored)
        assert len(link.pc.early_candidates) == len(mine)
        await link.answer({"type": "answer", "sdp": without_candidates(sdp)})
        assert link.pc.early_candidates == []
        assert len(link.pc.remote_candidates.accepted) == len(mine)
        await until(lambda: seen.up == 1, timeout=15)
        assert link.pc.connectionState == "connected"
    finally:
        await link.close()


async def test_a_raising_on_message_is_contained_and_answered(peers: Peers, clients: list[Client]) -> None:
    delivered: list[str | bytes] = []

    def on_message(data: str | bytes) -> None:
        if data == "boom":
            raise KeyError("secret-pin-1234")
        delivered.append(data)

    seen = Recorder()
    link = seen.link(peers, on_message=on_message)
    client = Client()
    clients.append(client)
    contain.failures.clear()
    try:
        await link.answer({"type": "answer", "sdp": await client.answer(await link.offer())})
        channel = await client.own_channel(SERVER_LABEL)
        channel.send("boom")
        channel.send("after")
        await until(lambda: delivered == ["after"])
        assert seen.errors == ["KeyError"]
        assert contain.failures == {"data channel message": 1}
    finally:
        await link.close()


async def test_a_closed_link_is_silent_and_gives_its_count_back(peers: Peers, clients: list[Client]) -> None:
    seen = Recorder()
    link = seen.link(peers, session=7, address="127.0.0.1")
    client = Client()
    clients.append(client)
    await link.answer({"type": "answer", "sdp": await client.answer(await link.offer())})
    await until(lambda: seen.up == 1)
    channel = await client.own_channel("Trick")
    with pytest.raises(TooManyPeerConnections):
        seen.link(peers, session=7, address="127.0.0.1")

    closing = link.close()  # the synchronous step silences the link before the peer connection goes
    channel.send("too late")
    link.send("nobody hears this")
    await asyncio.sleep(0.3)
    await closing
    assert seen.messages == [] and seen.gone == [] and client.received == []
    assert link.pc.connectionState == "closed"
    assert peers.budget.sessions[7] == 0
    again = seen.link(peers, session=7, address="127.0.0.1")
    await again.close()


async def test_a_link_closed_while_its_offer_gathers_fails_the_offer(peers: Peers) -> None:
    """The plugin's answer to a setup racing a hangup: the offer fails, and the peer connection is closed only
    after gathering (aioice would otherwise bind sockets after the close)."""
    link = Recorder().link(peers)
    offering = asyncio.ensure_future(link.offer())
    await asyncio.sleep(0)
    closing = link.close()
    with pytest.raises(ConnectionError):
        await offering
    await closing
    assert link.gathering is not None and link.gathering.done()
    assert link.pc.connectionState == "closed"
