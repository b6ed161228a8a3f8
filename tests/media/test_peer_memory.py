"""The server's peer connections share one DTLS certificate and one OpenSSL context (`peer.ServerCertificate`)
instead of making both per connection (memory per watch, issue 16 §5; bench/memory.py). Real aiortc clients on
loopback check that DTLS still comes up, with the shared certificate and after it was renewed."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCCertificate
from OpenSSL import SSL

from apuppet.media import peer
from apuppet.media.peer import ServerCertificate, ServerPeerConnection, shares_certificates
from apuppet.media.peers import Peers
from apuppet.media.settings import MediaSettings

from .test_ice import free_range


def fingerprint(sdp: str) -> str:
    return next(line for line in sdp.splitlines() if line.startswith("a=fingerprint:sha-256"))


Pairs = list[tuple[ServerPeerConnection, RTCPeerConnection]]


@pytest.fixture
async def pairs() -> AsyncIterator[Pairs]:
    made: Pairs = []
    yield made
    for server, client in made:
        await client.close()
        await server.close()


async def connect(peers: Peers, pairs: Pairs) -> ServerPeerConnection:
    """A server connection with a data channel, answered by an aiortc client; returns once the channel is open."""
    server = peers.create()
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pairs.append((server, client))
    channel = server.createDataChannel("JanusDataChannel")
    opened = asyncio.Event()
    channel.on("open", opened.set)
    await server.setLocalDescription(await server.createOffer())
    await client.setRemoteDescription(RTCSessionDescription(**server.jsep()))
    await client.setLocalDescription(await client.createAnswer())
    await server.accept_answer(client.localDescription.sdp)
    await asyncio.wait_for(opened.wait(), 15)
    return server


def ssl_context(pc: ServerPeerConnection) -> SSL.Context:
    assert pc.sctp is not None and pc.sctp.transport._ssl is not None
    return pc.sctp.transport._ssl.get_context()


def peers() -> Peers:
    return Peers(MediaSettings(port_range=free_range(20), bind="127.0.0.1"))


def test_this_aiortc_lets_connections_share_a_certificate() -> None:
    """Fails on an aiortc that moved the private attribute (the server would then fall back to one per connection)."""
    assert shares_certificates()


async def test_connections_share_one_certificate_and_one_ssl_context(pairs: Pairs) -> None:
    made = peers()
    gc.collect()
    before = sum(1 for o in gc.get_objects() if isinstance(o, RTCCertificate))
    first = await connect(made, pairs)
    second = await connect(made, pairs)
    gc.collect()
    kept = sum(1 for o in gc.get_objects() if isinstance(o, RTCCertificate)) - before
    # aiortc alone keeps one certificate per connection (the two clients here do); the server one for both.
    assert kept == 2 + 1, kept
    assert fingerprint(first.localDescription.sdp) == fingerprint(second.localDescription.sdp)
    context = ssl_context(first)
    assert context is ssl_context(second)
    # No session of one connection can be resumed by another.
    assert context.get_session_cache_mode() == SSL.SESS_CACHE_OFF


async def test_a_renewed_certificate_serves_new_connections_and_the_old_ones_keep_theirs(pairs: Pairs) -> None:
    made = peers()
    old = await connect(made, pairs)
    certificate = made.certificate()
    assert isinstance(certificate, ServerCertificate)
    certificate.created -= peer.CERTIFICATE_LIFETIME
    new = await connect(made, pairs)
    assert made.certificate() is not certificate
    assert fingerprint(new.localDescription.sdp) != fingerprint(old.localDescription.sdp)
    assert ssl_context(new) is not ssl_context(old)
    # The old connection still carries data under its certificate.
    client = pairs[0][1]
    got: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    assert client.sctp is not None
    echo = client.createDataChannel("Trick")

    def deliver(message: object) -> None:
        if not got.done():
            got.set_result(message)

    old.on("datachannel", lambda channel: channel.on("message", deliver))
    echo.on("open", lambda: echo.send("still here"))
    assert await asyncio.wait_for(got, 15) == "still here"
