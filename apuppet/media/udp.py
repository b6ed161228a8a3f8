"""UDP sockets inside the configured port range: for a mountpoint's RTP ingest and for ICE host candidates.

Apart from `ice.py` because the ingest needs it without the WebRTC stack: a mountpoint and its RTP need no
aiortc, which is loaded with the first peer connection (`peers.py`).
"""

from __future__ import annotations

import errno
import ipaddress
import random
import socket


def bind_udp(
    host: str, port_range: tuple[int, int], rng: random.Random | None = None, dual_stack: bool = False
) -> socket.socket:
    """A non-blocking UDP socket bound to `host` on a free port of `port_range` (inclusive).

    Ports are tried from a random start and wrap around; `OSError(EADDRINUSE)` when the whole range is taken.
    An IPv6 socket is IPv6-only unless `dual_stack` (then "::" also receives IPv4).
    """
    low, high = port_range
    family = socket.AF_INET6 if ipaddress.ip_address(host.split("%")[0]).version == 6 else socket.AF_INET
    count = high - low + 1
    start = (rng or random).randrange(count)
    for i in range(count):
        port = low + (start + i) % count
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        sock.setblocking(False)
        return sock
    raise OSError(errno.EADDRINUSE, f"no free UDP port in {low}-{high} on {host}")
