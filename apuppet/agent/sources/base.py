"""The contract between the agent and a screen it streams and drives.

A source hands out either raw RGB frames (`grab`, encoded by the agent) or an H.264 byte stream of its own
(`encoded = True`, e.g. Android's screenrecord), and performs input given in *its own* pixels: mapping the
viewer's stream pixels to source pixels is the agent's job (`Geometry`), once, for every source.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # numpy is for the sources that grab frames; `apuppet serve` never loads it
    import numpy as np

#: aPuppet scales the stream so that its longest side is at most 800 pixels (spec §4.3).
MAX_STREAM_SIDE = 800


@dataclass(frozen=True, slots=True)
class Geometry:
    """Source size, stream size and the mapping between them (aPuppet's `video_scale`)."""

    source_width: int
    source_height: int
    width: int
    height: int
    scale: float

    @classmethod
    def fit(cls, source_width: int, source_height: int, max_side: int = MAX_STREAM_SIDE) -> Geometry:
        """aPuppet's rule: shrink to fit `max_side`, keep the ratio, round both sides down to even."""
        if source_width < 2 or source_height < 2:
            raise ValueError(f"screen size {source_width}x{source_height} is too small")
        ratio = max(source_width / max_side, source_height / max_side, 1.0)
        width, height = int(source_width / ratio), int(source_height / ratio)
        scale = width / source_width
        return cls(source_width, source_height, width - width % 2, height - height % 2, scale)

    def to_source(self, x: int, y: int) -> tuple[int, int]:
        sx = int(x / self.scale)
        sy = int(y / self.scale)
        return max(0, min(self.source_width - 1, sx)), max(0, min(self.source_height - 1, sy))


class Source:
    """Base class; subclasses override what they support and say so in their docstring."""

    name: ClassVar[str] = ""
    #: True when the source produces H.264 itself (`h264()`), False when the agent encodes `grab()` frames.
    encoded: ClassVar[bool] = False

    def __init__(self) -> None:
        self.width = 0
        self.height = 0
        #: Set by the agent: called with the text whenever the device's clipboard changes.
        self.on_clipboard: Callable[[str], None] | None = None

    async def start(self) -> None:
        """Connect to the screen; `width`/`height` are known afterwards."""

    async def stop(self) -> None:
        """Release everything `start` acquired; safe to call twice."""

    def grab(self, force: bool = False) -> np.ndarray | None:
        """An RGB frame (height, width, 3) if the screen changed since the last grab, or if `force`."""
        raise NotImplementedError

    def h264(self, width: int, height: int, bitrate: int) -> AsyncIterator[bytes]:
        """Annex-B access units at (width, height), for `encoded` sources."""
        raise NotImplementedError

    def request_keyframe(self) -> None:
        """A viewer joined: an `encoded` source should start a new keyframe soon."""

    async def tap(self, x: int, y: int, duration: int) -> None:
        raise NotImplementedError

    async def swipe(self, x1: int, y1: int, x2: int, y2: int, duration: int) -> None:
        raise NotImplementedError

    async def global_action(self, action: str) -> None:
        raise NotImplementedError

    async def key(self, key: str) -> None:
        raise NotImplementedError

    async def paste(self, text: str) -> None:
        raise NotImplementedError
