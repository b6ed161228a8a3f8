"""ICE for the server's peer connections: UDP ports inside `rtp_port_range`, and 1:1 NAT candidates.

aioice 0.13 binds every host candidate to port 0 (any port) and has no option for a range. `PortRangeConnection`
is an `aioice.Connection` whose host candidates are bound inside the range (random start, next port on
EADDRINUSE). aiortc creates its `Connection`s itself, inside `RTCIceGatherer`; `confine()` turns those of a
peer connection into `PortRangeConnection`s before gathering starts (the subclass adds no state of its own
beyond the range, so the object aiortc holds stays the same object). Everything else (STUN, TURN, checks,
peer-reflexive candidates for clients that send none) is aioice's own code.

Host candidates are bound on the configured `bind` address only (every interface for 0.0.0.0 or ::), and the
remote candidates a client hands the server are checked (`candidate_refusal`, `RemoteCandidates`) inside the
connection itself, whichever way they arrive; `apuppet.media.peer.add_remote_candidate`, through which
`ServerPeerConnection.trickle` adds a client's trickled candidates, asks the same policy first only to say why
a candidate was refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

from aioice import Candidate, Connection
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import StunProtocol, server_reflexive_candidate
from aioice.turn import UDP_SOCKET_BUFFER_SIZE
from aiortc import RTCPeerConnection

from .udp import bind_udp

log = logging.getLogger(__name__)


ANY_ADDRESS = frozenset({"", "0.0.0.0", "::"})
#: Remote candidates one peer connection accepts (answer SDP and trickle together). A browser sends a handful
#: (host, srflx, relay per interface); each accepted one costs STUN checks sent by the server, so a client must
#: not be able to point the server at an unbounded list of addresses.
MAX_REMOTE_CANDIDATES = 20


def loopback_only(bind: str) -> bool:
    """Whether the server listens on a loopback address only (as the test suite and local demos run)."""
    if bind in ANY_ADDRESS:
        return False
    try:
        return ipaddress.ip_address(bind.split("%")[0]).is_loopback
    except ValueError:
        return False


def candidate_refusal(host: str, port: int, transport: str = "udp", loopback_allowed: bool = False) -> str | None:
    """Why the server will not send connectivity checks to a remote candidate, or None when it may.

    Refused: anything but a UDP candidate with a literal IP address (a name would make aioice resolve it, mDNS
    included) and a real port; unspecified, multicast and reserved IPv4 addresses; and loopback addresses unless
    the server itself listens only on loopback (`loopback_allowed`), because a remote client's loopback is the
    server's own: a client could otherwise make the server probe its local services.
    """
    if transport.lower() != "udp":
        return "not a UDP candidate"
    if not 1 <= port <= 65535:
        return f"invalid port {port}"
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_multicast:
        return "multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip.is_reserved:
        return "reserved address"
    if ip.is_loopback and not loopback_allowed:
        return "loopback address"
    return None


class RemoteCandidates:
    """One peer connection's remote candidates: which may be added (`candidate_refusal`) and how many."""

    def __init__(self, loopback_allowed: bool, limit: int = MAX_REMOTE_CANDIDATES) -> None:
        self.loopback_allowed = loopback_allowed
        self.limit = limit
        self.accepted: set[tuple[str, int, int]] = set()
        self.refused = 0

    def refusal(self, host: str, port: int, component: int = 1, transport: str = "udp") -> str | None:
        """Why this candidate would be refused now (nothing is recorded)."""
        reason = candidate_refusal(host, port, transport, self.loopback_allowed)
        if reason is None and (host, port, component) not in self.accepted and len(self.accepted) >= self.limit:
            reason = f"more than {self.limit} remote candidates"
        return reason

    def admit(self, candidate: Candidate) -> str | None:
        """Record a candidate about to be added; the reason when it is refused instead."""
        reason = self.refusal(candidate.host, candidate.port, candidate.component, candidate.transport)
        if reason is None:
            self.accepted.add((candidate.host, candidate.port, candidate.component))
        else:
            self.refused += 1
        return reason


def gathering_addresses(bind: str, found: list[str]) -> list[str]:
    """Where host candidates are bound: every address aioice found when `bind` is a wildcard, else `bind` alone
    (an operator who binds the server to one address does not want WebRTC ports opened on the others)."""
    return list(found) if bind in ANY_ADDRESS else [bind]


class PortRangeConnection(Connection):
    """An `aioice.Connection` whose host candidates use ports of `port_range` only, on `bind` only (unless it
    is a wildcard address)."""

    port_range: tuple[int, int] = (0, 0)
    bind: str = ""
    remote_policy: RemoteCandidates | None = None

    def __init__(
        self,
        *args: Any,
        port_range: tuple[int, int],
        bind: str = "",
        remote_policy: RemoteCandidates | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.port_range = port_range
        self.bind = bind
        self.remote_policy = remote_policy

    @classmethod
    def adopt(
        cls,
        connection: Connection,
        port_range: tuple[int, int],
        use_ipv6: bool,
        bind: str = "",
        remote_policy: RemoteCandidates | None = None,
    ) -> None:
        """Turn a not-yet-gathering `Connection` made by aiortc into a `PortRangeConnection`."""
        if connection.local_candidates:
            raise RuntimeError("ICE gathering already started")
        connection.__class__ = cls
        assert isinstance(connection, PortRangeConnection)
        connection.port_range = port_range
        connection.bind = bind
        connection.remote_policy = remote_policy
        connection._use_ipv6 = use_ipv6

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        # Every remote candidate passes here, from the SDP (aiortc's setRemoteDescription) or trickled.
        if remote_candidate is not None and self.remote_policy is not None:
            reason = self.remote_policy.admit(remote_candidate)
            if reason is not None:
                log.debug("ICE: remote candidate refused (%s)", reason)
                return
        await super().add_remote_candidate(remote_candidate)

    async def get_component_candidates(self, component: int, addresses: list[str], timeout: int = 5) -> list[Candidate]:
        if addresses:  # empty with the relay-only transport policy: nothing to bind
            addresses = gathering_addresses(self.bind, addresses)
        loop = asyncio.get_running_loop()
        candidates: list[Candidate] = []
        hosts: list[StunProtocol] = []
        for address in addresses:
            try:
                sock = bind_udp(address, self.port_range)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE)
                _, protocol = await loop.create_datagram_endpoint(lambda: StunProtocol(self), sock=sock)
            except OSError as exc:
                log.warning("ICE: cannot bind %s inside %s-%s: %s", address, *self.port_range, exc)
                continue
            host, port = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
            hosts.append(protocol)
        self._protocols += hosts

        # Server-reflexive candidates through the same (in-range) sockets; the TURN allocation is aioice's.
        tasks = []
        if self.stun_server:
            for protocol in hosts:
                if ipaddress.ip_address(protocol.local_candidate.host).version == 4:
                    tasks.append(asyncio.create_task(server_reflexive_candidate(protocol, self.stun_server)))
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in done:
                if task.exception() is None:
                    candidates.append(task.result()[0])
            for task in pending:
                task.cancel()
        if self.turn_server:
            candidates += await super().get_component_candidates(component, [], timeout)
        return candidates


def ice_connections(pc: RTCPeerConnection) -> list[Connection]:
    """The aioice connections of a peer connection's transports (BUNDLE usually makes it one)."""
    gatherers = [t.sender.transport.transport.iceGatherer for t in pc.getTransceivers()]
    if pc.sctp is not None:
        gatherers.append(pc.sctp.transport.transport.iceGatherer)
    seen: dict[int, Connection] = {}
    for gatherer in gatherers:
        seen.setdefault(id(gatherer), gatherer._connection)
    return list(seen.values())


def confine(
    pc: RTCPeerConnection,
    port_range: tuple[int, int],
    use_ipv6: bool,
    bind: str = "",
    remote_policy: RemoteCandidates | None = None,
) -> None:
    """Make every transport of `pc` that has not gathered yet bind inside `port_range` (on `bind` only), and
    accept remote candidates as `remote_policy` says."""
    for connection in ice_connections(pc):
        if not isinstance(connection, PortRangeConnection) and not connection.local_candidates:
            PortRangeConnection.adopt(connection, port_range, use_ipv6, bind, remote_policy)


def add_nat_candidates(sdp: str, public_ip: str) -> str:
    """1:1 NAT (Janus' `nat_1_1_mapping` with `keep_private_host`): after each host candidate of the public
    address' family, a server-reflexive candidate with the public IP and the same port."""
    public = ipaddress.ip_address(public_ip)
    lines = sdp.split("\r\n")
    out: list[str] = []
    for line in lines:
        out.append(line)
        if not line.startswith("a=candidate:"):
            continue
        fields = line[len("a=candidate:") :].split()
        if len(fields) < 8 or fields[6] != "typ" or fields[7] != "host" or fields[2].lower() != "udp":
            continue
        try:
            private = ipaddress.ip_address(fields[4])
        except ValueError:
            continue
        if private.version != public.version or private == public:
            continue
        component = int(fields[1])
        out.append(
            "a=candidate:{} {} udp {} {} {} typ srflx raddr {} rport {}".format(
                candidate_foundation("srflx", "udp", public_ip),
                component,
                candidate_priority(component, "srflx"),
                public_ip,
                fields[5],
                fields[4],
                fields[5],
            )
        )
    return "\r\n".join(out)
