"""Screen → H.264 → RTP, while someone watches.

A frame is encoded when the screen changed, plus one every `refresh` seconds when it did not, so that the
picture never goes stale and a viewer that lost packets recovers (the Android agent sends nothing while the
screen is still, hence its "flashing dot"). Keyframes follow the clock, not a frame count, because frames are
irregular: one at least every `keyframe_interval` seconds, and one at once when a viewer joins.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..media.h264 import H264Packetizer, split_annexb
from ..media.rtp import VIDEO_CLOCK_RATE
from .rtpsender import RtpSender
from .sources.base import Geometry, Source

if TYPE_CHECKING:  # PyAV and numpy load when the agent encodes, not with `apuppet serve`'s argument parser
    import numpy as np

log = logging.getLogger(__name__)


@dataclass(slots=True)
class VideoSettings:
    """Defaults well above aPuppet's 256 kbit/s at 10 fps: a screen with text needs the bits."""

    fps: int = 30
    bitrate: int = 1_000_000
    keyframe_interval: float = 2.0
    refresh: float = 1.0


class VideoStreamer:
    def __init__(self, source: Source, geometry: Geometry, sender: RtpSender, settings: VideoSettings) -> None:
        self.source = source
        self.geometry = geometry
        self.sender = sender
        self.settings = settings
        self.packetizer = H264Packetizer(ssrc=secrets.randbits(32), sequence_number=secrets.randbits(16))
        self.frames = 0
        self.keyframes = 0
        self._keyframe_wanted = True
        self._task: asyncio.Task[None] | None = None
        self._clock_base = secrets.randbits(32)
        self._started = 0.0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._keyframe_wanted = True
        self._started = time.monotonic()
        body = self._encoded() if self.source.encoded else self._frames()
        self._task = asyncio.get_running_loop().create_task(body, name="video")
        self._task.add_done_callback(self._done)

    def cancel(self) -> None:
        """Stop at once without waiting (from a callback); a `start()` right after begins a fresh stream."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def request_keyframe(self) -> None:
        self._keyframe_wanted = True
        self.source.request_keyframe()

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("video stream failed", exc_info=task.exception())

    def _timestamp(self) -> int:
        return (self._clock_base + int((time.monotonic() - self._started) * VIDEO_CLOCK_RATE)) & 0xFFFFFFFF

    def _send(self, access_unit: bytes, timestamp: int) -> None:
        self.sender.send(self.packetizer.packetize(access_unit, timestamp))

    async def _frames(self) -> None:
        s = self.settings
        g = self.geometry
        from ..media.encoder import H264Encoder

        encoder = H264Encoder(g.width, g.height, fps=s.fps, bitrate=s.bitrate, keyframe_interval=s.keyframe_interval)
        period = 1 / s.fps
        last_frame = last_key = float("-inf")
        last_rgb: np.ndarray | None = None
        trailing = False
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            now = loop.time()
            rgb = self.source.grab(last_rgb is None)
            if rgb is not None:
                last_rgb = rgb
                # Receivers that cut frames by timestamp (aiortc's jitter buffer) release a frame only when
                # the next one starts: follow a change with one repeat, or it would wait for the refresh.
                trailing = True
            elif last_rgb is not None and (trailing or self._keyframe_wanted or now - last_frame >= s.refresh):
                rgb = last_rgb
                trailing = False
            if rgb is not None:
                if self._keyframe_wanted or now - last_key >= s.keyframe_interval:
                    encoder.force_keyframe()
                    self._keyframe_wanted = False
                    last_key = now
                timestamp = self._timestamp()
                # libx264 runs outside the event loop: the server may share this process (`apuppet demo`).
                units = await asyncio.to_thread(encoder.encode, rgb, timestamp)
                for unit in units:
                    self._send(unit.data, unit.timestamp)
                    self.frames += 1
                    self.keyframes += unit.keyframe
                last_frame = now
            next_tick = max(next_tick + period, loop.time())
            await asyncio.sleep(next_tick - loop.time())

    async def _encoded(self) -> None:
        g = self.geometry
        async for unit in self.source.h264(g.width, g.height, self.settings.bitrate):
            self._send(unit, self._timestamp())
            self.frames += 1
            self.keyframes += any(n[0] & 0x1F == 5 for n in split_annexb(unit))
