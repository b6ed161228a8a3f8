"""One place where the server's RTCPeerConnections are made, for both plugins (`Peers.create`).

Every server candidate uses a UDP port inside `rtp_port_range` (`ice.PortRangeConnection`), ICE servers are
exactly those of the settings (none by default: aiortc would otherwise wait on Google's STUN server), and
with NAT mapping the description sent to clients also carries the public IP (`ServerPeerConnection.jsep`).
Callers must not build RTCPeerConnections themselves. A client's candidates (answer SDP and trickle, in
whichever order they come) go through `ServerPeerConnection.accept_answer` and `trickle`, which check each one
(`add_remote_candidate`).

Each peer connection holds UDP ports of `rtp_port_range` (one per host candidate), a shared and small resource:
a client that could open peer connections at will would leave none for real viewers. So every connection
made for a client counts against its Janus session and its address (`PeerBudget`, `max_peers_per_session`,
`max_peers_per_address`), and the count is given back when the connection is closed, whatever closed it.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from typing import Any

from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from ..netaddr import client_key
from .ice import RemoteCandidates, add_nat_candidates, confine, loopback_only
from .settings import MediaSettings

log = logging.getLogger(__name__)

#: Trickled candidates kept until the answer arrives (janus.js trickles as soon as it has answered, and may do so
#: before the server has processed the answer).
MAX_EARLY_CANDIDATES = 64


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
        key = client_key(address) if address else ""
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


class Peers:
    """Makes the server's peer connections from one `MediaSettings`, all counted against one `PeerBudget`.

    One per server, handed to both plugins by the composition root: a client's textroom and streaming
    connections count together."""

    def __init__(self, settings: MediaSettings) -> None:
        self.settings = settings
        self.budget = PeerBudget(settings.max_peers_per_session, settings.max_peers_per_address)

    def create(self, session: Any = None, address: str = "", name: str = "peer") -> ServerPeerConnection:
        """A server peer connection; with `session` (a Janus session id) it counts against that session's and
        `address`'s caps and raises `TooManyPeerConnections` past them. `name` prefixes its log lines."""
        lease = None if session is None else self.budget.acquire(session, address)
        try:
            return ServerPeerConnection(self.settings, lease, name)
        except BaseException:
            # No connection, so nothing would ever give the count back.
            if lease is not None:
                lease.release()
            raise


def rtc_configuration(settings: MediaSettings) -> RTCConfiguration:
    # An explicit (possibly empty) list: with None aiortc waits on Google's STUN server while gathering.
    servers = [
        RTCIceServer(urls=list(s.urls), username=s.username or None, credential=s.credential or None)
        for s in settings.ice_servers
    ]
    return RTCConfiguration(iceServers=servers)


def parse_candidate(candidate: dict[str, Any]) -> RTCIceCandidate | None:
    """A trickled janus.js candidate, or None for what is ignored.

    Ignored: `{"completed": true}` (signalling end-of-candidates would let ICE give up before the client's own
    checks reveal its address, which is how candidate-less clients connect), mDNS `.local` host names (the
    browser's checks reveal the address behind them anyway) and anything unparsable.
    """
    text = candidate.get("candidate")
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = candidate_from_sdp(text.removeprefix("candidate:"))
    except (AssertionError, ValueError, IndexError):
        return None
    if parsed.ip.endswith(".local"):
        return None
    mid, index = candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
    parsed.sdpMid = mid if isinstance(mid, str) else None
    # The server's offers have one m-line: a candidate naming neither belongs to it.
    parsed.sdpMLineIndex = index if isinstance(index, int) and not isinstance(index, bool) else 0
    return parsed


class ServerPeerConnection(RTCPeerConnection):
    """An `RTCPeerConnection` whose ICE transports gather inside the configured port range, on the configured
    `bind` address only (all addresses for 0.0.0.0 or ::), and which checks every candidate a client gives it."""

    def __init__(self, settings: MediaSettings, lease: PeerLease | None = None, name: str = "peer") -> None:
        super().__init__(rtc_configuration(settings))
        self.settings = settings
        self.name = name
        self._lease = lease
        #: Shared by the connection's ICE transports: which remote candidates they accept, and how many.
        self.remote_candidates = RemoteCandidates(loopback_allowed=loopback_only(settings.bind))
        #: Candidates trickled before the answer, added once it is set.
        self.early_candidates: list[RTCIceCandidate] = []
        self._closed = False
        if lease is not None:
            # A connection dropped without close() (a bug elsewhere) still gives its count back.
            weakref.finalize(self, lease.release)

    async def setLocalDescription(self, sessionDescription: RTCSessionDescription | None = None) -> None:
        # aiortc gathers here, for transports created by addTransceiver/createDataChannel/setRemoteDescription.
        s = self.settings
        confine(self, s.port_range, s.use_ipv6, s.bind, self.remote_candidates)
        await super().setLocalDescription(sessionDescription)

    def jsep(self) -> dict[str, Any]:
        """The JSEP dict the server sends (after setLocalDescription), with NAT candidates where configured."""
        desc = self.localDescription
        sdp = desc.sdp
        if self.settings.public_ip:
            sdp = add_nat_candidates(sdp, self.settings.public_ip)
        return {"type": desc.type, "sdp": sdp}

    async def accept_answer(self, sdp: str) -> None:
        """The client's answer to our offer, then the candidates it trickled before it (aiortc raises several
        types on a bad SDP; the callers tell the client, whatever the type)."""
        await self.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        early, self.early_candidates = self.early_candidates, []
        await self._add(early)

    async def trickle(self, candidates: list[dict[str, Any]]) -> None:
        """Candidates the client trickled (janus.js form): kept until the answer is set, then each checked and
        added. Without them a client whose checks cannot reach the server never connects."""
        parsed = [c for c in map(parse_candidate, candidates) if c is not None]
        remote: RTCSessionDescription | None = self.remoteDescription  # None until set, whatever aiortc's hint says
        if remote is None:
            room = MAX_EARLY_CANDIDATES - len(self.early_candidates)
            self.early_candidates += parsed[: max(room, 0)]
            return
        await self._add(parsed)

    async def _add(self, candidates: list[RTCIceCandidate]) -> None:
        for candidate in candidates:
            if self._closed:
                return
            try:
                # Checked first: loopback, multicast or unspecified addresses, and too many (media/ice.py).
                refused = await add_remote_candidate(self, candidate)
            except Exception as exc:  # a candidate for a transport already gone; the others may still help
                refused = type(exc).__name__
            if refused is not None:
                log.debug("%s: remote candidate refused: %s", self.name, refused)

    async def close(self) -> None:
        self._closed = True
        self.early_candidates.clear()
        try:
            await super().close()
        finally:
            if self._lease is not None:
                self._lease.release()


async def add_remote_candidate(pc: RTCPeerConnection, candidate: RTCIceCandidate) -> str | None:
    """Add a client's trickled candidate to a server peer connection; the reason it was refused, or None.

    `ServerPeerConnection.trickle` calls this (candidates in an answer SDP go through the same check inside
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
