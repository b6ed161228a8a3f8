"""Real recordings for the tests: numbered pictures (tests/media/source.py) through libx264, the agent's RTP
packetizer and the relay into `SessionRecording`, and a reader that decodes a file back with PyAV."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from apuppet.media.encoder import H264Encoder
from apuppet.media.h264 import H264Packetizer
from apuppet.media.recording import SessionRecording
from apuppet.media.relay import StreamRelay

from .source import code_frame, read_code

SOURCE = ("192.0.2.20", 40000)
FPS = 30


class Stream:
    """One device's stream: `packets(i)` are frame i's RTP packets (keyframes every `FPS` frames)."""

    def __init__(self, size: tuple[int, int] = (320, 240), first_timestamp: int = 0xFFFF_0000) -> None:
        self.size = size
        self.encoder = H264Encoder(*size, fps=FPS, bitrate=600_000, keyframe_interval=1.0)
        self.packetizer = H264Packetizer(ssrc=0x5EED, sequence_number=65000)
        self.first_timestamp = first_timestamp

    def packets(self, index: int) -> list[bytes]:
        timestamp = (self.first_timestamp + index * 90_000 // FPS) & 0xFFFF_FFFF
        out: list[bytes] = []
        for unit in self.encoder.encode(code_frame(index, *self.size), timestamp):
            out += self.packetizer.packetize(unit.data, unit.timestamp)
        return out


def feed(relay: StreamRelay, stream: Stream, frames: Iterable[int]) -> None:
    for i in frames:
        for packet in stream.packets(i):
            relay.feed(packet, SOURCE)


async def make_recording(directory: Path, device: str = "4815162342", frames: int = 60) -> Path:
    """A complete recording of `frames` numbered pictures; returns its path."""
    relay = StreamRelay()
    recording = SessionRecording(relay, directory, device, "test")
    feed(relay, Stream(), range(frames))
    await recording.close()
    assert recording.path is not None and recording.path.exists()
    return recording.path


@dataclass
class Decoded:
    codes: list[int]
    #: Presentation times in seconds.
    times: list[float]
    keyframes: list[bool]
    pictures: list[np.ndarray]
    width: int
    height: int


def decode(path: Path) -> Decoded:
    """Every picture of a recording (demuxed by its content, whatever the name ends with), decoded; a torn last
    fragment up to its first incomplete picture."""
    out = Decoded([], [], [], [], 0, 0)
    with av.open(str(path), format="mp4") as container:
        stream = container.streams.video[0]
        out.width, out.height = stream.width, stream.height
        for packet in container.demux(stream):
            if packet.is_corrupt:
                break  # a torn last fragment (a killed writer): what a player stops at too
            for frame in packet.decode():
                rgb = frame.to_ndarray(format="rgb24")
                out.codes.append(read_code(rgb))
                out.times.append(float(frame.time or 0.0))
                out.keyframes.append(bool(frame.key_frame))
                out.pictures.append(rgb)
    return out


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two RGB pictures, 0-255."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
