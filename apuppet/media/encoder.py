"""H.264 encoding with PyAV's libx264, tuned for a live screen: RGB frames in, Annex-B access units out.

Facts this rests on (docs/media-path-facts): the codec time base is 1/fps (libx264's rate control reads the
time base as the frame rate; 1/90000 gives 12-byte skip frames), the RTP timestamp is converted to 90 kHz
separately, and without the global-header flag libx264 repeats SPS/PPS before every IDR, which a viewer that
joins mid-stream needs.
"""

from __future__ import annotations

import fractions
from collections import deque
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType

from .h264 import AccessUnit, nal_type, split_annexb
from .rtp import VIDEO_CLOCK_RATE

NAL_IDR = 5


class H264Encoder:
    """libx264 with ultrafast / zerolatency / baseline; one `encode()` call per captured frame.

    `keyframe_interval` is in seconds (the Android agent uses 1 s). Sizes are rounded down to even numbers,
    as 4:2:0 needs; callers pass frames of the size given here.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: int = 30,
        bitrate: int = 1_500_000,
        keyframe_interval: float = 1.0,
        preset: str = "ultrafast",
    ) -> None:
        if width < 2 or height < 2:
            raise ValueError("frame size must be at least 2x2")
        if fps <= 0 or bitrate <= 0 or keyframe_interval <= 0:
            raise ValueError("fps, bitrate and keyframe_interval must be positive")
        self.width = width & ~1
        self.height = height & ~1
        self.fps = int(fps)
        self.bitrate = int(bitrate)
        self.gop = max(1, round(keyframe_interval * self.fps))
        codec = av.CodecContext.create("libx264", "w")
        codec.width = self.width
        codec.height = self.height
        codec.pix_fmt = "yuv420p"
        codec.time_base = fractions.Fraction(1, self.fps)
        codec.framerate = fractions.Fraction(self.fps, 1)
        codec.bit_rate = self.bitrate
        codec.gop_size = self.gop
        codec.max_b_frames = 0
        codec.options = {
            "preset": preset,
            "tune": "zerolatency",
            "profile": "baseline",
            "forced-idr": "1",
            # VBV capped at one second of the target rate: keeps a static screen cheap and a busy one bounded.
            "x264-params": f"keyint={self.gop}:min-keyint={self.gop}:scenecut=0:vbv-maxrate={self.bitrate // 1000}"
            f":vbv-bufsize={self.bitrate // 1000}",
        }
        codec.open()
        self.codec = codec
        self._index = 0
        self._force_keyframe = False
        #: 90 kHz timestamps of the frames handed to the codec and not yet out of it.
        self._timestamps: deque[int] = deque()

    def force_keyframe(self) -> None:
        """Make the next encoded frame an IDR (with SPS/PPS), e.g. on a viewer's PLI."""
        self._force_keyframe = True

    def encode(self, rgb: np.ndarray, timestamp: int | None = None) -> list[AccessUnit]:
        """Encode one H×W×3 uint8 RGB frame; `timestamp` (90 kHz) defaults to frame index × 90000 / fps.

        Returns the access units that came out (with zerolatency: exactly the one for this frame).
        """
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if frame.width != self.width or frame.height != self.height:
            frame = frame.reformat(width=self.width, height=self.height)
        frame.pts = self._index
        if timestamp is None:
            timestamp = self._index * VIDEO_CLOCK_RATE // self.fps
        self._timestamps.append(timestamp & 0xFFFFFFFF)
        self._index += 1
        if self._force_keyframe:
            frame.pict_type = PictureType.I
            self._force_keyframe = False
        return self._collect(self.codec.encode(frame))

    def flush(self) -> list[AccessUnit]:
        return self._collect(self.codec.encode(None))

    def _collect(self, packets: list[av.Packet[Any]]) -> list[AccessUnit]:
        out = []
        for packet in packets:
            data = bytes(packet)
            if not data:
                continue
            ts = self._timestamps.popleft() if self._timestamps else 0
            keyframe = any(nal_type(n) == NAL_IDR for n in split_annexb(data))
            out.append(AccessUnit(ts, data, keyframe))
        return out
