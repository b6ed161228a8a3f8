"""Freed heap memory handed back to the kernel every few seconds (glibc's `malloc_trim`).

The relay makes a payload for every RTP packet (~1.1 KB: above Python's small-object allocator, so glibc's
malloc) and keeps it about a second (the GOP, the viewers' NACK histories). glibc's `free` gives memory back to the
kernel only from the top of the heap, so the pages between payloads still alive stay resident once the payloads on
them are gone, and RSS holds the high-water mark of every GOP's swing and of every session that has come and gone.
`malloc_trim(0)` releases the free pages anywhere in the heap (bench/memory.py, docs/benchmarks.md: a few MB at
100 watched devices and after hundreds of sessions; 1-4 ms a call). It runs in a worker thread: ctypes lets go of
the GIL for it, and the loop's allocations wait on glibc's arena lock only while it walks that arena.

Where the C library has no `malloc_trim` (musl), nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import time
from collections.abc import Callable

#: Seconds between two trims.
TRIM_INTERVAL = 10.0


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None without it."""
    try:
        function = ctypes.CDLL(None).malloc_trim  # the symbols the process already has: its C library's
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


class HeapTrimmer:
    """Trims at most every `interval` seconds, when the server's housekeeping asks."""

    def __init__(self, interval: float = TRIM_INTERVAL) -> None:
        self.interval = interval
        self._trim = malloc_trim()
        self._last = time.monotonic()
        #: Trims done (the tests watch the housekeeping through it).
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> bool:
        """Trim now, in the calling thread; whether memory was given back."""
        if self._trim is None:
            return False
        self.trims += 1
        return bool(self._trim(0))

    async def maybe_trim(self) -> None:
        now = time.monotonic()
        if self._trim is None or now - self._last < self.interval:
            return
        self._last = now
        await asyncio.to_thread(self.trim)
