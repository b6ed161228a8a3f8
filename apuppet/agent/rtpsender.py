"""Plain RTP over UDP to the mountpoint's `video_port` (no RTCP, as the Android agent): a thin socket adapter."""

from __future__ import annotations

import asyncio
import logging
import socket

log = logging.getLogger(__name__)


class RtpSender(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.packets = 0
        self.bytes = 0
        self.errors = 0

    @classmethod
    async def open(cls, host: str, port: int) -> RtpSender:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        # IPv4 first, as the Android agent's InetAddress.getByName does in practice: a server that listens for
        # RTP on IPv4 only would silently lose an IPv6 stream.
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        family, _, _, _, address = infos[0]
        remote = (str(address[0]), int(address[1]))
        _, protocol = await loop.create_datagram_endpoint(cls, remote_addr=remote, family=family)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the server restarts: count it, the agent notices the lost session itself.
        self.errors += 1

    def send(self, packets: list[bytes]) -> None:
        if self.transport is None:
            return
        for packet in packets:
            self.transport.sendto(packet)
            self.bytes += len(packet)
        self.packets += len(packets)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
