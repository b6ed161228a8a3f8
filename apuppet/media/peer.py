"""One place where the server's RTCPeerConnections are made, for both plugins.

PROVISIONAL (foundation commit): plain aiortc with explicit ICE servers. The streaming work replaces the
internals (ICE ports confined to `rtp_port_range`, 1:1 NAT candidates) behind these two functions; callers
must not build RTCPeerConnections themselves.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from ..config import Config


def rtc_configuration(config: Config) -> RTCConfiguration:
    # An explicit (possibly empty) list: with None aiortc waits on Google's STUN server while gathering.
    servers = [RTCIceServer(**s) for s in config.ice_servers()]
    return RTCConfiguration(iceServers=servers)


def create_peer_connection(config: Config) -> RTCPeerConnection:
    return RTCPeerConnection(rtc_configuration(config))


def local_description(pc: RTCPeerConnection, config: Config) -> dict[str, Any]:
    """The JSEP dict the server sends (after setLocalDescription), with NAT candidates where configured."""
    desc = pc.localDescription
    return {"type": desc.type, "sdp": desc.sdp}
