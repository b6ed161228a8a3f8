"""Remote candidates a client may hand the server: no loopback, unspecified, multicast or named ones (loopback
only when the server itself listens on loopback only), at most 20 per peer connection, from the answer SDP and
trickle alike. The attack is real: an aiortc client, a server peer connection, and 60 UDP sockets on loopback
that count the STUN binding requests the server sends them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aioice import stun
from aiortc import RTCConfiguration, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription

from apuppet.media.ice import MAX_REMOTE_CANDIDATES, candidate_refusal, loopback_only
from apuppet.media.peer import add_remote_candidate
from apuppet.media.peers import Peers
from apuppet.media.settings import MediaSettings

from .test_ice import free_range
from .test_peer import strip_candidates

TARGETS = 60


@pytest.mark.parametrize(
    ("host", "port", "transport", "loopback_allowed", "refused"),
    [
        ("198.51.100.7", 5000, "udp", False, None),
        ("2001:db8::7", 5000, "udp", False, None),
        ("fe80::1%eth0", 5000, "udp", False, None),
        ("127.0.0.1", 5000, "udp", False, "loopback address"),
        ("127.9.9.9", 5000, "udp", False, "loopback address"),
        ("::1", 5000, "udp", False, "loopback address"),
        ("::ffff:127.0.0.1", 5000, "udp", False, "loopback address"),
        ("127.0.0.1", 5000, "udp", True, None),
        ("0.0.0.0", 5000, "udp", True, "unspecified address"),
        ("::", 5000, "udp", True, "unspecified address"),
        ("224.0.0.251", 5353, "udp", True, "multicast address"),
        ("ff02::fb", 5353, "udp", True, "multicast address"),
        ("255.255.255.255", 5000, "udp", True, "reserved address"),
        ("3a1b2c3d.local", 5000, "udp", True, "not an IP address"),
        ("198.51.100.7", 0, "udp", True, "invalid port 0"),
        ("198.51.100.7", 9, "tcp", True, "not a UDP candidate"),
    ],
)
def test_candidate_rule(host, port, transport, loopback_allowed, refused):
    assert candidate_refusal(host, port, transport, loopback_allowed) == refused


def test_loopback_is_allowed_only_when_the_server_binds_only_loopback():
    assert loopback_only("127.0.0.1") and loopback_only("::1")
    assert not loopback_only("0.0.0.0") and not loopback_only("::") and not loopback_only("192.0.2.2")


class Counter(asyncio.DatagramProtocol):
    """A UDP socket that counts the STUN binding requests it gets (and answers none)."""

    def __init__(self) -> None:
        self.requests = 0

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        if message.message_method == stun.Method.BINDING and message.message_class == stun.Class.REQUEST:
            self.requests += 1


@pytest.fixture
async def targets() -> AsyncIterator[list[tuple[int, Counter]]]:
    loop = asyncio.get_running_loop()
    made = []
    for _ in range(TARGETS):
        transport, counter = await loop.create_datagram_endpoint(Counter, local_addr=("127.0.0.1", 0))
        made.append((transport, counter))
    yield [(t.get_extra_info("sockname")[1], c) for t, c in made]
    for transport, _ in made:
        transport.close()


def candidate_line(i: int, port: int) -> str:
    return f"a=candidate:{i} 1 udp {2130706431 - i} 127.0.0.1 {port} typ host"


async def negotiate(
    config: MediaSettings, extra_answer_lines: list[str]
) -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """A server offer and a real client's answer. Both sides' own candidates are left out, so that the only
    addresses anyone probes are the ones the test hands the server."""
    server = Peers(config).create()
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    server.createDataChannel("JanusDataChannel")
    await server.setLocalDescription(await server.createOffer())
    await client.setRemoteDescription(
        RTCSessionDescription(sdp=strip_candidates(server.localDescription.sdp), type="offer")
    )
    await client.setLocalDescription(await client.createAnswer())
    lines = strip_candidates(client.localDescription.sdp).split("\r\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("a=ice-pwd:")) + 1
    answer = "\r\n".join(lines[:at] + extra_answer_lines + lines[at:])
    await server.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return server, client


async def probed(targets: list[tuple[int, Counter]], settle: float) -> int:
    await asyncio.sleep(settle)
    return sum(1 for _, counter in targets if counter.requests)


def loopback_candidate(i: int, port: int) -> RTCIceCandidate:
    return RTCIceCandidate(
        component=1, foundation=str(i), ip="127.0.0.1", port=port, priority=2130706431 - i, protocol="udp",
        type="host", sdpMLineIndex=0,
    )  # fmt: skip


async def test_trickled_loopback_candidates_are_not_probed_by_a_server_on_all_addresses(targets):
    lo, hi = free_range(20)
    server, client = await negotiate(MediaSettings(port_range=(lo, hi), bind="0.0.0.0"), [])
    try:
        reasons = [await add_remote_candidate(server, loopback_candidate(i, p)) for i, (p, _) in enumerate(targets)]
        assert reasons == ["loopback address"] * TARGETS
        assert await probed(targets, 1.5) == 0
    finally:
        await client.close()
        await server.close()


async def test_loopback_candidates_in_the_answer_sdp_are_not_probed_either(targets):
    lo, hi = free_range(20)
    lines = [candidate_line(i, p) for i, (p, _) in enumerate(targets)]
    server, client = await negotiate(MediaSettings(port_range=(lo, hi), bind="0.0.0.0"), lines)
    try:
        assert await probed(targets, 1.5) == 0
        assert server.remote_candidates.refused == TARGETS  # type: ignore[attr-defined]
    finally:
        await client.close()
        await server.close()


async def test_a_loopback_server_probes_at_most_20_remote_candidates(targets):
    """On a loopback-only server (how the suite runs) loopback candidates are legitimate, but bounded."""
    lo, hi = free_range(20)
    config = MediaSettings(port_range=(lo, hi), bind="127.0.0.1")
    half = TARGETS // 2
    in_sdp = [candidate_line(i, p) for i, (p, _) in enumerate(targets[:half])]
    server, client = await negotiate(config, in_sdp)
    try:
        reasons = [
            await add_remote_candidate(server, loopback_candidate(half + i, p))
            for i, (p, _) in enumerate(targets[half:])
        ]
        assert reasons == [f"more than {MAX_REMOTE_CANDIDATES} remote candidates"] * half
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await probed(targets, 0.1) < MAX_REMOTE_CANDIDATES:
            assert loop.time() < deadline, "the allowed candidates were not probed"
        assert await probed(targets, 1.0) == MAX_REMOTE_CANDIDATES
        # The first 20 of the answer are those probed.
        assert all(counter.requests for _, counter in targets[:MAX_REMOTE_CANDIDATES])
    finally:
        await client.close()
        await server.close()
