"""Real gatherings and real connections through apuppet.media.peer (aiortc on both sides, loopback/LAN)."""

import asyncio
import ipaddress
import os
import socket

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from apuppet.media.peer import ServerPeerConnection
from apuppet.media.peers import Peers
from apuppet.media.settings import MediaSettings

from .test_ice import free_range, needs_ipv6


def candidates(sdp: str) -> list[tuple[str, int, str]]:
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            f = line.split()
            out.append((f[4], int(f[5]), f[7]))
    return out


def strip_candidates(sdp: str) -> str:
    """An answer like the Android agent's: no candidates at all (and none trickled)."""
    return "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith(("a=candidate:", "a=end-of-cand")))


async def offer_from_server(settings: MediaSettings) -> tuple[ServerPeerConnection, dict]:
    pc = Peers(settings).create()
    pc.createDataChannel("JanusDataChannel")
    pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.jsep()


def settings(**kw) -> MediaSettings:
    return MediaSettings(port_range=free_range(40), **kw)


async def test_every_candidate_port_is_inside_the_range():
    cfg = settings()
    pc, jsep = await offer_from_server(cfg)
    try:
        found = candidates(jsep["sdp"])
        assert found
        lo, hi = cfg.port_range
        assert all(lo <= port <= hi for _, port, _ in found), found
    finally:
        await pc.close()


def families(sdp: str) -> set[int]:
    return {ipaddress.ip_address(h).version for h, _, _ in candidates(sdp)}


@needs_ipv6
async def test_ipv6_candidates_when_the_host_has_ipv6():
    pc, jsep = await offer_from_server(settings(use_ipv6=True))
    try:
        assert families(jsep["sdp"]) == {4, 6}
    finally:
        await pc.close()


async def test_no_ipv6_candidates_with_use_ipv6_false():
    pc, jsep = await offer_from_server(settings(use_ipv6=False))
    try:
        assert families(jsep["sdp"]) == {4}
    finally:
        await pc.close()


async def test_nat_offer_carries_public_ip_and_keeps_the_private_host():
    cfg = settings(public_ip="203.0.113.7")
    pc, jsep = await offer_from_server(cfg)
    try:
        found = candidates(jsep["sdp"])
        hosts = {port for h, port, typ in found if typ == "host" and ipaddress.ip_address(h).version == 4}
        public = {port for h, port, typ in found if h == "203.0.113.7"}
        assert hosts and public == hosts
        assert pc.localDescription.sdp.count("203.0.113.7") == 0, "aiortc's own description stays untouched"
    finally:
        await pc.close()


async def connect_client_without_candidates(cfg: MediaSettings) -> None:
    server = Peers(cfg).create()
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    try:
        channel = server.createDataChannel("JanusDataChannel")

        @client.on("datachannel")
        def on_channel(ch):
            ch.on("message", lambda m: got.done() or got.set_result(m))

        channel.on("open", lambda: channel.send("hello"))
        await server.setLocalDescription(await server.createOffer())
        jsep = server.jsep()
        await client.setRemoteDescription(RTCSessionDescription(**jsep))
        await client.setLocalDescription(await client.createAnswer())
        answer = strip_candidates(client.localDescription.sdp)
        assert "a=candidate" not in answer
        await server.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        assert await asyncio.wait_for(got, 10) == "hello"
        assert server.iceConnectionState == "completed"
    finally:
        await client.close()
        await server.close()


async def test_client_that_sends_no_candidates_connects():
    await connect_client_without_candidates(settings())


async def test_client_without_candidates_connects_with_nat_configured():
    await connect_client_without_candidates(settings(public_ip="203.0.113.7"))


async def test_a_specific_bind_address_is_the_only_host_candidate():
    cfg = settings(bind="127.0.0.1")
    pc, jsep = await offer_from_server(cfg)
    try:
        found = candidates(jsep["sdp"])
        assert found and {h for h, _, _ in found} == {"127.0.0.1"}, found
        owned = _udp_sockets_in_range(cfg.port_range)
        assert owned and {host for host, *_ in owned} == {"127.0.0.1"}, owned
    finally:
        await pc.close()


async def test_the_nat_mapping_follows_a_specific_bind_address():
    cfg = settings(bind="127.0.0.1", public_ip="203.0.113.7")
    pc, jsep = await offer_from_server(cfg)
    try:
        found = candidates(jsep["sdp"])
        assert {(h, typ) for h, _, typ in found} == {("127.0.0.1", "host"), ("203.0.113.7", "srflx")}, found
    finally:
        await pc.close()


async def test_a_client_connects_to_a_server_bound_to_loopback():
    await connect_client_without_candidates(settings(bind="127.0.0.1"))


def _udp_sockets_in_range(port_range: tuple[int, int]) -> list[tuple[str, int]]:
    """Addresses of this process' UDP sockets bound inside `port_range` (the server's ICE sockets)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=int(name))
        except OSError:
            continue
        try:
            if sock.type == socket.SOCK_DGRAM and port_range[0] <= sock.getsockname()[1] <= port_range[1]:
                found.append(sock.getsockname()[:2])
        except OSError:
            pass
        finally:
            sock.detach()
    return found
