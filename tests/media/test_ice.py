import asyncio
import errno
import ipaddress
import random
import socket

import pytest
from aioice import Connection, stun
from aioice.ice import get_host_addresses

from apuppet.media.ice import PortRangeConnection, add_nat_candidates
from apuppet.media.udp import bind_udp


def free_range(size: int) -> tuple[int, int]:
    """A block of `size` ports that are free right now (probed, so parallel test runs do not collide). The
    search starts at a random block: test workers probing at the same moment would otherwise all pick the first."""
    blocks = list(range(42000, 60000 - size, size))
    start = random.randrange(len(blocks))
    for low in blocks[start:] + blocks[:start]:
        socks = []
        try:
            for port in range(low, low + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("0.0.0.0", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return low, low + size - 1
    raise RuntimeError("no free port block")


def test_bind_udp_skips_busy_ports_and_reports_a_full_range():
    low, high = free_range(3)
    taken = [bind_udp("127.0.0.1", (low, high)) for _ in range(3)]
    try:
        assert sorted(s.getsockname()[1] for s in taken) == [low, low + 1, low + 2]
        with pytest.raises(OSError) as info:
            bind_udp("127.0.0.1", (low, high))
        assert info.value.errno == errno.EADDRINUSE
    finally:
        for s in taken:
            s.close()


async def test_gathering_binds_inside_the_range():
    port_range = free_range(20)
    conn = PortRangeConnection(ice_controlling=True, port_range=port_range)
    await conn.gather_candidates()
    try:
        assert conn.local_candidates, "no host candidate at all"
        for c in conn.local_candidates:
            assert port_range[0] <= c.port <= port_range[1], c
    finally:
        await conn.close()


async def test_adopting_a_connection_made_elsewhere():
    port_range = free_range(20)
    conn = Connection(ice_controlling=False)
    PortRangeConnection.adopt(conn, port_range, use_ipv6=False)
    await conn.gather_candidates()
    try:
        assert conn.local_candidates, "no host candidate at all"
        assert all(port_range[0] <= c.port <= port_range[1] for c in conn.local_candidates)
        assert all(":" not in c.host for c in conn.local_candidates)
        with pytest.raises(RuntimeError):
            PortRangeConnection.adopt(conn, port_range, use_ipv6=False)
    finally:
        await conn.close()


def test_nat_candidates_follow_each_host_candidate_of_the_family():
    sdp = "\r\n".join(
        [
            "v=0",
            "a=candidate:1 1 udp 2130706431 192.168.1.5 40002 typ host",
            "a=candidate:2 1 udp 2130706431 fd00::2 40003 typ host",
            "a=candidate:3 1 udp 1694498815 198.51.100.1 5000 typ srflx raddr 192.168.1.5 rport 40002",
            "a=end-of-candidates",
            "",
        ]
    )
    out = add_nat_candidates(sdp, "203.0.113.7").split("\r\n")
    assert out[1] == "a=candidate:1 1 udp 2130706431 192.168.1.5 40002 typ host"
    assert out[2].endswith(" 203.0.113.7 40002 typ srflx raddr 192.168.1.5 rport 40002")
    assert out[3].startswith("a=candidate:2 ")  # IPv6 host: no IPv4 mapping
    assert sum("203.0.113.7" in line for line in out) == 1
    assert out[-1] == ""


HOST_IPV6 = get_host_addresses(use_ipv4=False, use_ipv6=True)
needs_ipv6 = pytest.mark.skipif(not HOST_IPV6, reason="this host has no IPv6 address besides ::1 and link-local")


@needs_ipv6
def test_host_has_ipv6_helper_agrees_with_aioice():
    # What the IPv6 test in test_peer.py relies on: aioice lists IPv6 addresses, and only those.
    assert HOST_IPV6
    assert all(ipaddress.ip_address(a).version == 6 for a in HOST_IPV6)
    assert all(ipaddress.ip_address(a).version == 4 for a in get_host_addresses(use_ipv4=True, use_ipv6=False))


class StunResponder(asyncio.DatagramProtocol):
    """A minimal STUN server: answers binding requests with the address it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        request = stun.parse_message(data)
        self.seen.append(addr[:2])
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr[:2]
        self.transport.sendto(bytes(response), addr)


async def test_stun_queries_leave_from_the_in_range_sockets():
    host = get_host_addresses(use_ipv4=True, use_ipv6=False)[0]
    transport, responder = await asyncio.get_running_loop().create_datagram_endpoint(
        StunResponder, local_addr=(host, 0)
    )
    port_range = free_range(20)
    conn = PortRangeConnection(
        ice_controlling=True, port_range=port_range, stun_server=transport.get_extra_info("sockname")[:2]
    )
    try:
        await conn.gather_candidates()
        assert responder.seen, "no STUN request reached the server"
        assert all(port_range[0] <= port <= port_range[1] for _, port in responder.seen)
        assert any(c.type == "srflx" for c in conn.local_candidates)
    finally:
        await conn.close()
        transport.close()
