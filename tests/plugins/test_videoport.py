"""Issue 17 #10: a `videoport` outside `rtp_port_range` was bound (999, 24500, 28500 on a 20000-20100 range).
Replayed against a real server over HTTP on loopback: refused with 454, and nothing is bound."""

from __future__ import annotations

import socket

from apuppet.server import Server
from tests.plugins import test_access_attacks
from tests.plugins.test_access_attacks import WEAK_PIN, Janus, connect, mountpoint
from tests.server.conftest import SECRET

# A real server with a free port range of its own, and the clients closed after each test.
server, clients = test_access_attacks.server, test_access_attacks.clients


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_a_videoport_outside_the_range_is_refused(server: Server, clients: list[Janus]) -> None:
    agent = await connect(server, clients, "127.0.0.1", SECRET)
    low, high = server.config.port_range
    outside = [999, low - 1, high + 1, 65535]
    free = [port for port in outside if bindable(port)]  # (a neighbour of the range may be another test's)
    for i, port in enumerate(outside):
        data = await agent.request({**mountpoint(f"mp{i}", WEAK_PIN), "videoport": port})
        assert data["error_code"] == 454 and f"videoport should be 0 or {low} to {high}" in data["error"], data
    assert free and all(bindable(port) for port in free), "a refused port was bound anyway"
    streaming = next(p for p in server.plugins if p.name == "janus.plugin.streaming")
    assert streaming.mountpoints.mountpoints == {} and streaming.ingests == {}
    # Inside the range (its edges included) the port asked for is the port bound.
    for i, port in enumerate((low, high)):
        data = await agent.request({**mountpoint(f"in{i}", WEAK_PIN), "videoport": port})
        assert data["stream"]["video_port"] == port and not bindable(port)
