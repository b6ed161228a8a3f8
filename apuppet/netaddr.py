"""Who a client is, for every per-address count: limits, guess throttles, peer caps and the RTP latch.

One function, so that every count agrees on it. An IPv4 address is itself ("::ffff:192.0.2.1", a dual-stack
socket's view, is 192.0.2.1). An IPv6 address stands for its /64: one device's connections leave from different
temporary addresses of its /64 (RFC 8981), and whoever holds a /64 can send from any of its 2^64 addresses, so
counting single IPv6 addresses would let one subscriber rotate past every limit.
"""

from __future__ import annotations

import ipaddress


def client_key(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
