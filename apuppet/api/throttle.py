"""Slowing down guessing: API secrets, room and mountpoint pins.

aPuppet's pins have 10^4 values and Janus never limits attempts. Here each key (an address, or an address and a
resource) gets a few free failures; after that every failure blocks the key for a doubling delay. A success
clears it. Memory stays bounded: forgotten keys are purged and the table has a ceiling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Entry:
    failures: int
    last: float
    until: float


class Throttle:
    def __init__(
        self,
        free: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        forget_after: float = 600.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_keys = max_keys
        self.clock = clock
        self._entries: dict[Hashable, _Entry] = {}

    def blocked_for(self, key: Hashable) -> float:
        """Seconds the key must still wait; 0 when it may try."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.until - self.clock())

    def failure(self, key: Hashable) -> float:
        """Count a failure; returns the delay now imposed on the key."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is None or now - entry.last > self.forget_after:
            if len(self._entries) >= self.max_keys:
                self._purge(now)
            entry = _Entry(0, now, now)
            self._entries[key] = entry
        entry.failures += 1
        entry.last = now
        over = entry.failures - self.free
        delay = 0.0 if over <= 0 else min(self.max_delay, self.base_delay * 2 ** (over - 1))
        entry.until = now + delay
        return delay

    def success(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _purge(self, now: float) -> None:
        stale = [k for k, e in self._entries.items() if now - e.last > self.forget_after and e.until <= now]
        for key in stale:
            del self._entries[key]
        if len(self._entries) >= self.max_keys:
            # Still full: drop the oldest half rather than grow without bound.
            oldest = sorted(self._entries, key=lambda k: self._entries[k].last)
            for key in oldest[: len(oldest) // 2]:
                del self._entries[key]
