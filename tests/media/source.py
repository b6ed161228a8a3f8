"""A real RTP/H.264 sender for the tests: PyAV's libx264, RFC 6184 packets, UDP.

Each picture carries its frame number as 16 black/white blocks along the top edge, so that a viewer that
decodes the video can read back exactly which frames it got.
"""

from __future__ import annotations

import asyncio
import socket

import numpy as np

from apuppet.media.encoder import H264Encoder
from apuppet.media.h264 import NAL_STAP_A, H264Packetizer
from apuppet.media.rtp import RtpPacket

BITS = 16


def code_frame(index: int, width: int = 320, height: int = 240) -> np.ndarray:
    img = np.full((height, width, 3), 70, np.uint8)
    x = (index * 6) % (width - 40)
    img[height // 2 : height // 2 + 40, x : x + 40] = (230, 120, 30)
    block = width // BITS
    for bit in range(BITS):
        value = 255 if (index >> bit) & 1 else 0
        img[0:block, bit * block : (bit + 1) * block] = value
    return img


def read_code(rgb: np.ndarray) -> int:
    width = rgb.shape[1]
    block = width // BITS
    code = 0
    for bit in range(BITS):
        if rgb[block // 2, bit * block + block // 2].mean() > 128:
            code |= 1 << bit
    return code


class RtpSource:
    """Encodes numbered pictures at `fps` and sends them to `port`, like the Android agent (PT 96).

    `agent_markers=True` also sets the marker on the SPS/PPS STAP-A, as the real agent does (spec §4.3).
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        fps: int = 30,
        keyframe_interval: float = 1.0,
        size: tuple[int, int] = (320, 240),
        bitrate: int = 600_000,
        agent_markers: bool = False,
    ) -> None:
        self.addr = (host, port)
        self.fps = fps
        self.size = size
        self.encoder = H264Encoder(size[0], size[1], fps=fps, bitrate=bitrate, keyframe_interval=keyframe_interval)
        self.packetizer = H264Packetizer(ssrc=0x5EED, payload_type=96, sequence_number=32)
        self.agent_markers = agent_markers
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.index = 0

    def send_frame(self) -> None:
        img = code_frame(self.index, *self.size)
        for unit in self.encoder.encode(img):
            packets = self.packetizer.packetize(unit.data, unit.timestamp)
            if self.agent_markers and packets[0][12] & 0x1F == NAL_STAP_A:
                first = RtpPacket.parse(packets[0])
                first.marker = True
                packets[0] = first.serialize()
            for packet in packets:
                self.sock.sendto(packet, self.addr)
        self.index += 1

    async def run(self, frames: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while frames is None or sent < frames:
            self.send_frame()
            sent += 1
            delay = start + sent / self.fps - loop.time()
            await asyncio.sleep(max(0.0, delay))

    def close(self) -> None:
        self.sock.close()
