"""One place where the server's RTCPeerConnections are made, for both plugins.

Every server candidate uses a UDP port inside `rtp_port_range` (`ice.PortRangeConnection`), ICE servers are
exactly those of the configuration (none by default: aiortc would otherwise wait on Google's STUN server), and
with `nat: true` the description sent to clients also carries the public IP (`local_description`). Callers
must not build RTCPeerConnections themselves.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from ..config import Config
from .ice import add_nat_candidates, confine


def rtc_configuration(config: Config) -> RTCConfiguration:
    # An explicit (possibly empty) list: with None aiortc waits on Google's STUN server while gathering.
    servers = [RTCIceServer(**s) for s in config.ice_servers()]
    return RTCConfiguration(iceServers=servers)


class ServerPeerConnection(RTCPeerConnection):
    """An `RTCPeerConnection` whose ICE transports gather inside the configured port range."""

    def __init__(self, config: Config) -> None:
        super().__init__(rtc_configuration(config))
        self._port_range = config.port_range
        self._use_ipv6 = config.use_ipv6

    async def setLocalDescription(self, sessionDescription: RTCSessionDescription | None = None) -> None:
        # aiortc gathers here, for transports created by addTransceiver/createDataChannel/setRemoteDescription.
        confine(self, self._port_range, self._use_ipv6)
        await super().setLocalDescription(sessionDescription)


def create_peer_connection(config: Config) -> RTCPeerConnection:
    return ServerPeerConnection(config)


def local_description(pc: RTCPeerConnection, config: Config) -> dict[str, Any]:
    """The JSEP dict the server sends (after setLocalDescription), with NAT candidates where configured."""
    desc = pc.localDescription
    sdp = desc.sdp
    if config.nat and config.public_ip:
        sdp = add_nat_candidates(sdp, config.public_ip)
    return {"type": desc.type, "sdp": sdp}
