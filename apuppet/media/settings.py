"""What the media layer needs to know about the server's setup, and nothing more.

`apuppet.media` (peer connections, RTP ingest) is handed this small frozen object instead of the whole `Config`:
media then depends on no configuration format, a test builds exactly the media it means to, and a media worker
of a scaled-out server can be given its settings without the API's secrets. The composition root
(`apuppet.server.app.media_settings`) builds it from `Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .latch import DEFAULT_GRACE


@dataclass(frozen=True)
class IceServer:
    """One entry of the server's own RTCConfiguration.iceServers (STUN, or TURN with static credentials)."""

    urls: tuple[str, ...]
    username: str = ""
    #: Kept out of repr: settings may end up in a log line or a test failure.
    credential: str = field(default="", repr=False)

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> IceServer:
        """From the RTCIceServer dictionary form (`urls` a string or a list), as configurations write it."""
        urls = entry.get("urls")
        listed = (urls,) if isinstance(urls, str) else tuple(urls or ())
        if not listed or not all(isinstance(u, str) and u for u in listed):
            raise ValueError("an ICE server needs urls: a non-empty string or list of strings")
        return cls(listed, str(entry.get("username") or ""), str(entry.get("credential") or ""))


@dataclass(frozen=True)
class MediaSettings:
    """Ports, addresses and caps of the server's media; the defaults are `Config`'s."""

    #: Address host candidates and RTP ingest sockets bind to (every interface for 0.0.0.0 or ::).
    bind: str = "0.0.0.0"
    #: UDP ports (inclusive) for ICE host candidates and mountpoints.
    port_range: tuple[int, int] = (10000, 10500)
    #: Also gather on IPv6, and let a 0.0.0.0 ingest socket listen on :: for agents that resolve to IPv6.
    use_ipv6: bool = True
    #: 1:1 NAT mapping: the public address added after each host candidate (empty: no NAT).
    public_ip: str = ""
    #: The server's own ICE servers; empty means none, so no public STUN server is ever waited for.
    ice_servers: tuple[IceServer, ...] = ()
    #: Peer connections per Janus session and per client address (0: no cap); see `peers.PeerBudget`.
    max_peers_per_session: int = 4
    max_peers_per_address: int = 16
    #: Seconds the RTP latch waits for the mountpoint's creator before taking another source (`latch.py`).
    rtp_latch_grace: float = DEFAULT_GRACE
    #: Where watched devices are recorded (`recording.Recordings`); None: nothing is recorded.
    recordings_dir: Path | None = None

    def __post_init__(self) -> None:
        low, high = self.port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"port_range must be two ports, low first, not {low}-{high}")
        if self.max_peers_per_session < 0 or self.max_peers_per_address < 0 or self.rtp_latch_grace < 0:
            raise ValueError("peer caps and rtp_latch_grace cannot be negative")
