"""Per-address and per-session caps, sans-I/O: what one client address may hold at once and how fast it may
create sessions, plus a limiter that keeps abusive clients from filling the log.

The defaults assume the worst legitimate case, hundreds of phones behind one carrier NAT (one public address):
each agent holds one session with two handles and one long poll, and they all reconnect at once after a network
flap. Viewers (browsers without the API secret) come from offices and homes, far fewer per address. See the
"Security model" section of docs/deployment.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    #: Sessions alive per creating address, trusted and viewer together.
    sessions_per_address: int = 1000
    #: Viewer sessions (no API secret) alive per address.
    viewer_sessions_per_address: int = 100
    #: Viewer session creation per address: a token bucket (sessions per second, burst).
    viewer_session_rate: float = 5.0
    viewer_session_burst: int = 50
    handles_per_session: int = 32
    #: Concurrent HTTP long polls.
    polls_per_session: int = 4
    polls_per_address: int = 1000
    websockets_per_address: int = 500
    #: Open TCP connections per address (every HTTP and WebSocket client).
    connections_per_address: int = 2000


class Slots:
    """Counts what each key holds at once (long polls, WebSockets, connections) against a cap."""

    def __init__(self) -> None:
        self._held: dict[Hashable, int] = {}

    def acquire(self, key: Hashable, cap: int) -> bool:
        held = self._held.get(key, 0)
        if held >= cap:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: Hashable) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def held(self, key: Hashable) -> int:
        return self._held.get(key, 0)

    def __len__(self) -> int:
        return len(self._held)

    def __bool__(self) -> bool:
        # An empty table is still a table: `slots or Slots()` must never replace it.
        return True


class TokenBucket:
    """Rate per key: `burst` at once, then `rate` per second. Full buckets are forgotten, so the table only holds
    keys that are busy right now."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def take(self, key: Hashable) -> bool:
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._purge(now)
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def _purge(self, now: float) -> None:
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)

    def __bool__(self) -> bool:
        return True


class LogLimiter:
    """At most `lines` log lines per key per `interval`; the rest are counted and the count rides on the next
    line let through, so an operator sees the volume without the disk filling up."""

    def __init__(
        self,
        lines: int = 5,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.lines = lines
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        #: key -> [window start, lines in window, suppressed since the last line]
        self._windows: dict[Hashable, list[float]] = {}

    def allow(self, key: Hashable) -> int | None:
        """None: drop this line. Otherwise log it, with the returned number of lines dropped before it."""
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.interval:
            suppressed = int(window[2]) if window is not None else 0
            if window is None and len(self._windows) >= self.max_keys:
                self._windows = {k: w for k, w in self._windows.items() if now - w[0] < self.interval}
                if len(self._windows) >= self.max_keys:
                    self._windows.clear()
            self._windows[key] = [now, 1.0, 0.0]
            return suppressed
        if window[1] < self.lines:
            window[1] += 1
            suppressed, window[2] = int(window[2]), 0.0
            return suppressed
        window[2] += 1
        return None

    def __len__(self) -> int:
        return len(self._windows)

    def __bool__(self) -> bool:
        return True
