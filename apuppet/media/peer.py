"""The server's RTCPeerConnection (`ServerPeerConnection`), made for both plugins by `peers.Peers.create` only.

Every server candidate uses a UDP port inside `rtp_port_range` (`ice.PortRangeConnection`), ICE servers are
exactly those of the settings (none by default: aiortc would otherwise wait on Google's STUN server), and
with NAT mapping the description sent to clients also carries the public IP (`ServerPeerConnection.jsep`).
Callers must not build RTCPeerConnections themselves. A client's candidates (answer SDP and trickle, in
whichever order they come) go through `ServerPeerConnection.accept_answer` and `trickle`, which check each one
(`add_remote_candidate`). Each connection holds a `peers.PeerLease` and gives it back when it is closed, whatever
closed it.

This module is the WebRTC stack's door: importing it imports aiortc, aioice, pyOpenSSL and pylibsrtp, which
`peers.Peers` does only when the first connection is needed.

The DTLS certificate is the server's, not each connection's (`ServerCertificate`, as Janus has one per process):
aiortc would make a key pair, a certificate and an OpenSSL context per connection, ~30 KB each kept for the
connection's life, for a fingerprint that no client checks against anything but the SDP it came in. A new one is
made every `CERTIFICATE_LIFETIME`; connections keep the one they started with.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCCertificate, SRTPProtectionProfile
from aiortc.sdp import candidate_from_sdp
from OpenSSL import SSL

from .ice import RemoteCandidates, add_nat_candidates, confine, loopback_only
from .peers import PeerLease
from .settings import MediaSettings

log = logging.getLogger(__name__)

#: Trickled candidates kept until the answer arrives (janus.js trickles as soon as it has answered, and may do so
#: before the server has processed the answer).
MAX_EARLY_CANDIDATES = 64
#: Seconds one DTLS certificate serves new connections (aiortc's are valid for 30 days from their creation).
CERTIFICATE_LIFETIME = 24 * 3600.0
#: Where aiortc 1.16 keeps a connection's certificates (name-mangled private attribute; `shares_certificates`).
_CERTIFICATES = "_RTCPeerConnection__certificates"


class ServerCertificate(RTCCertificate):
    """One DTLS certificate and key for all the server's connections, with one OpenSSL context per SRTP profile
    list instead of one per connection.

    The shared context caches no sessions (a client must not resume one connection's DTLS session in another;
    browsers never try) and releases a connection's record buffers while it is idle (a viewer's DTLS only carries
    the handshake: its media goes through SRTP)."""

    def __init__(self, key: Any, cert: Any) -> None:
        super().__init__(key, cert)
        self.created = time.monotonic()
        self._contexts: dict[tuple[bytes, ...], SSL.Context] = {}

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        key = tuple(profile.openssl_profile for profile in srtp_profiles)
        context = self._contexts.get(key)
        if context is None:
            context = super()._create_ssl_context(srtp_profiles)
            context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
            context.set_mode(SSL.MODE_RELEASE_BUFFERS)
            self._contexts[key] = context
        return context


def shares_certificates() -> bool:
    """Whether this aiortc keeps a connection's certificates where `ServerPeerConnection` replaces them; if not
    (a later aiortc), every connection keeps its own, as aiortc makes it: more memory, nothing broken."""
    pc = RTCPeerConnection()
    certificates = getattr(pc, _CERTIFICATES, None)
    shared = isinstance(certificates, list) and all(isinstance(c, RTCCertificate) for c in certificates)
    shared = shared and callable(getattr(RTCCertificate, "_create_ssl_context", None))
    return shared


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

    def __init__(
        self,
        settings: MediaSettings,
        lease: PeerLease | None = None,
        name: str = "peer",
        certificate: ServerCertificate | None = None,
    ) -> None:
        super().__init__(rtc_configuration(settings))
        if certificate is not None:
            # Before any transport exists: each takes the connection's certificate when it is made.
            setattr(self, _CERTIFICATES, [certificate])
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
