"""One place where the server's RTCPeerConnections are made, for both plugins.

Every server candidate uses a UDP port inside `rtp_port_range` (`ice.PortRangeConnection`), ICE servers are
exactly those of the configuration (none by default: aiortc would otherwise wait on Google's STUN server), and
with `nat: true` the description sent to clients also carries the public IP (`local_description`). Callers
must not build RTCPeerConnections themselves.

Each peer connection holds UDP ports of `rtp_port_range` (one per host candidate), a shared and small resource:
a client that could open peer connections at will would leave none for real viewers. So every connection
made for a client counts against its Janus session and its address (`PeerBudget`, `max_peers_per_session`,
`max_peers_per_address`), and the count is given back when the connection is closed, whatever closed it.
"""

from __future__ import annotations

import weakref
from collections import Counter
from typing import Any

from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from ..config import Config
from .ice import RemoteCandidates, add_nat_candidates, confine, loopback_only
from .latch import ip_key


class TooManyPeerConnections(Exception):
    """A client reached its peer connection cap; the message is meant for the client."""


class PeerBudget:
    """How many peer connections each Janus session and each client address holds (sans-I/O counters)."""

    def __init__(self, per_session: int, per_address: int) -> None:
        self.per_session = per_session
        self.per_address = per_address
        self.sessions: Counter[Any] = Counter()
        self.addresses: Counter[str] = Counter()

    def acquire(self, session: Any, address: str) -> PeerLease:
        """Count one more connection; `TooManyPeerConnections` when a cap is reached (0: no cap)."""
        key = ip_key(address) if address else ""
        if self.per_session and self.sessions[session] >= self.per_session:
            raise TooManyPeerConnections(f"Too many peer connections ({self.per_session} per session)")
        if key and self.per_address and self.addresses[key] >= self.per_address:
            raise TooManyPeerConnections(f"Too many peer connections ({self.per_address} per address)")
        self.sessions[session] += 1
        if key:
            self.addresses[key] += 1
        return PeerLease(self, session, key)

    def _give_back(self, session: Any, key: str) -> None:
        for counter, name in ((self.sessions, session), (self.addresses, key)):
            if name in counter:
                counter[name] -= 1
                if counter[name] <= 0:
                    del counter[name]


class PeerLease:
    """One counted connection; `release()` may be called any number of times, it gives back once."""

    def __init__(self, budget: PeerBudget, session: Any, key: str) -> None:
        self._budget: PeerBudget | None = budget
        self._session = session
        self._key = key

    def release(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._give_back(self._session, self._key)


#: One budget per configuration object: the server hands the same `Config` to both plugins, so a client's
#: textroom and streaming connections count together. Keyed by id, dropped when the config is collected.
_budgets: dict[int, PeerBudget] = {}


def peer_budget(config: Config) -> PeerBudget:
    budget = _budgets.get(id(config))
    if budget is None:
        budget = _budgets[id(config)] = PeerBudget(config.max_peers_per_session, config.max_peers_per_address)
        weakref.finalize(config, _budgets.pop, id(config), None)
    return budget


def rtc_configuration(config: Config) -> RTCConfiguration:
    # An explicit (possibly empty) list: with None aiortc waits on Google's STUN server while gathering.
    servers = [RTCIceServer(**s) for s in config.ice_servers()]
    return RTCConfiguration(iceServers=servers)


class ServerPeerConnection(RTCPeerConnection):
    """An `RTCPeerConnection` whose ICE transports gather inside the configured port range, on the configured
    `bind` address only (all addresses for 0.0.0.0 or ::)."""

    def __init__(self, config: Config, lease: PeerLease | None = None) -> None:
        super().__init__(rtc_configuration(config))
        self._port_range = config.port_range
        self._use_ipv6 = config.use_ipv6
        self._bind = config.bind
        self._lease = lease
        #: Shared by the connection's ICE transports: which remote candidates they accept, and how many.
        self.remote_candidates = RemoteCandidates(loopback_allowed=loopback_only(config.bind))
        if lease is not None:
            # A connection dropped without close() (a bug elsewhere) still gives its count back.
            weakref.finalize(self, lease.release)

    async def setLocalDescription(self, sessionDescription: RTCSessionDescription | None = None) -> None:
        # aiortc gathers here, for transports created by addTransceiver/createDataChannel/setRemoteDescription.
        confine(self, self._port_range, self._use_ipv6, self._bind, self.remote_candidates)
        await super().setLocalDescription(sessionDescription)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self._lease is not None:
                self._lease.release()


def create_peer_connection(config: Config, session: Any = None, address: str = "") -> RTCPeerConnection:
    """A server peer connection; with `session` (a Janus session id) it counts against that session's and
    `address`'s caps and raises `TooManyPeerConnections` past them."""
    lease = None if session is None else peer_budget(config).acquire(session, address)
    return ServerPeerConnection(config, lease)


def local_description(pc: RTCPeerConnection, config: Config) -> dict[str, Any]:
    """The JSEP dict the server sends (after setLocalDescription), with NAT candidates where configured."""
    desc = pc.localDescription
    sdp = desc.sdp
    if config.nat and config.public_ip:
        sdp = add_nat_candidates(sdp, config.public_ip)
    return {"type": desc.type, "sdp": sdp}


async def add_remote_candidate(pc: RTCPeerConnection, candidate: RTCIceCandidate) -> str | None:
    """Add a client's trickled candidate to a server peer connection; the reason it was refused, or None.

    Both plugins call this for trickled candidates (candidates in an answer SDP go through the same check inside
    the ICE connection, `ice.PortRangeConnection.add_remote_candidate`, which also enforces it for any caller
    that adds candidates another way). The rule is `ice.candidate_refusal` plus at most
    `ice.MAX_REMOTE_CANDIDATES` per peer connection.
    """
    policy = getattr(pc, "remote_candidates", None)
    if isinstance(policy, RemoteCandidates):
        reason = policy.refusal(candidate.ip, candidate.port, candidate.component, candidate.protocol)
        if reason is not None:
            policy.refused += 1
            return reason
    await pc.addIceCandidate(candidate)
    return None
