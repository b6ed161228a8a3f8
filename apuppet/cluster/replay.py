"""Single use for the cluster bus' signed messages, sans-I/O.

A signature proves that a node of the cluster wrote a message, not that it is new: whoever reads Redis' pub/sub can
publish a message again while it is fresh (an "end session" or a relayed request done twice). So each message
carries a random id under its signature, and a receiver remembers the ids it accepted until their messages would
be refused as too old anyway; an id seen before is refused. The memory is each receiver's own, so a message also
names its destination channel under the signature and is refused on any other before it gets here (`bus.py`):
otherwise a message captured on its way to one node would be new to every other.

The memory is the process'. A node restarted under its name (a worker the supervisor restarts, a node with a fixed
`node_name`) listens on the same channel with an empty one, and would take again a message captured during the
previous incarnation's last minute. So the guard has a start too (`since`): Redis' pub/sub delivers only what is
published after the subscription, so a message stamped well before this process subscribed was published before,
and is either a capture published again or from a sender whose clock is behind. The bus sets `since` a little
before its subscription (`bus.START_SKEW`, 1 s) for the second case; what remains open is a message stamped within
that second before the subscription, which a restarted worker's predecessor cannot have received (a restart takes
longer: `workers.FIRST_BACKOFF` plus the start of Python).

The memory is capped (`CAP`). At the cap the id with the oldest stamp is forgotten and the window shortened to
match: from then on a message stamped no later than a forgotten id is refused as too old (`floor`). The other
choices were worse. Refusing new ids while the memory is full would let a burst (the cluster's own peak, or a node
gone wild) silence all messages to this node for up to a whole window: every call failing. Forgetting without
shortening would reopen replays. Shortening keeps what matters: no message is accepted twice by one process
whatever the load, and fresh messages keep flowing; only messages older than CAP / rate seconds are lost, and at
5 000 messages a second that is still 10 s, the time a caller waits for a reply (`router.CALL_TIMEOUT`). Without
the key the memory cannot be filled beyond the cluster's own traffic: an id is remembered only after its signature
and its destination checked out, so a captured message counts once, on the node it was sent to.
"""

from __future__ import annotations

import heapq
import math
from enum import Enum

#: Ids remembered at most (~200 bytes each: ~10 MB when full).
CAP = 50_000


class Verdict(Enum):
    FRESH = "fresh"
    #: Outside the window (too old, or from too far in the future), or older than an id forgotten at the cap.
    STALE = "stale"
    #: Stamped before the receiver's `since`: published again from before it started, or a sender's clock behind.
    EARLY = "early"
    REPLAYED = "replayed"


def fresh(stamp: float, now: float, window: float) -> bool:
    """Whether a message stamped `stamp` is within `window` seconds of `now` either way (nodes' clocks differ a
    little); NaN and infinities are not."""
    return now - window <= stamp <= now + window


class ReplayGuard:
    """One receiver's memory of the message ids it accepted within `window` seconds."""

    def __init__(self, window: float, cap: int = CAP, since: float = -math.inf) -> None:
        if not window > 0 or cap < 1:
            raise ValueError("the replay window must be positive and the cap at least 1")
        self.window = window
        self.cap = cap
        #: Messages stamped before this are refused: this memory holds nothing of what came before.
        self.since = since
        #: Messages stamped at or before this are refused: ids this old were forgotten at the cap. Evicting the
        #: oldest stamp first refuses them anyway while the clock goes forward; this holds when it steps back.
        self.floor = -math.inf
        #: Ids forgotten before their window ended (how often the cap was hit).
        self.forgotten = 0
        self._seen: set[str] = set()
        #: (stamp, id), a heap: the next id to expire or to forget is the oldest stamp, whoever sent it.
        self._order: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, nonce: str, stamp: float, now: float) -> Verdict:
        """Whether to act on the message with this id and stamp; a fresh one is remembered."""
        self._expire(now)
        if not fresh(stamp, now, self.window) or stamp <= self.floor:
            return Verdict.STALE
        if stamp < self.since:
            return Verdict.EARLY
        if nonce in self._seen:
            return Verdict.REPLAYED
        if len(self._seen) < self.cap:
            heapq.heappush(self._order, (stamp, nonce))
            self._seen.add(nonce)
            return Verdict.FRESH
        old_stamp, old = heapq.heappushpop(self._order, (stamp, nonce))
        self.floor = max(self.floor, old_stamp)
        if old == nonce:  # older than all it would displace: it is the one refused
            return Verdict.STALE
        self.forgotten += 1
        self._seen.discard(old)
        self._seen.add(nonce)
        return Verdict.FRESH

    def _expire(self, now: float) -> None:
        """Ids whose messages the window refuses now need no memory."""
        horizon = now - self.window
        order = self._order
        while order and order[0][0] < horizon:
            self._seen.discard(heapq.heappop(order)[1])
