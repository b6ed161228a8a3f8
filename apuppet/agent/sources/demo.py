"""The virtual phone (`phone.Phone`) as a source: frames when its picture changes, input with real durations."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from ..phone import Phone
from .base import Source


class DemoSource(Source):
    name = "demo"

    def __init__(self, phone: Phone | None = None) -> None:
        super().__init__()
        self.phone = phone or Phone()
        self.width, self.height = self.phone.width, self.phone.height
        self._key: tuple[object, ...] | None = None
        self.phone.on_clipboard = self._clipboard

    def _clipboard(self, text: str) -> None:
        if self.on_clipboard is not None:
            self.on_clipboard(text)

    def grab(self, force: bool = False) -> np.ndarray | None:
        now = time.time()
        key = self.phone.frame_key(now)
        if not force and key == self._key:
            return None
        self._key = key
        return self.phone.render(now)

    async def tap(self, x: int, y: int, duration: int) -> None:
        # A finger stays down for `duration`: the effect lands at the release, as on a touch screen.
        await asyncio.sleep(duration / 1000)
        self.phone.tap(x, y, duration)

    async def swipe(self, x1: int, y1: int, x2: int, y2: int, duration: int) -> None:
        await asyncio.sleep(duration / 1000)
        self.phone.swipe(x1, y1, x2, y2, duration)

    async def global_action(self, action: str) -> None:
        self.phone.global_action(action)

    async def key(self, key: str) -> None:
        self.phone.key(key)

    async def paste(self, text: str) -> None:
        self.phone.paste(text)
