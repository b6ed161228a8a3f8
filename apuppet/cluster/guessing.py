"""Guessing limits that hold across a cluster, sans-I/O: the Redis key names and script, the message that tells
other nodes of a block, and `SharedThrottle`, the throttle the gateway (API secret) and the server (admin secret:
console logins and /metrics) count wrong secrets on. `guesses.py` moves the counts to and from Redis.

Each node counting on its own gave an address spreading its guesses over N nodes N times the tries. Here a wrong
secret is counted in Redis per client (`netaddr.client_key`: an IPv6 /64 is one), `apuppet:guess:<kind>:<client>`,
forgotten `forget_after` seconds after its last failure, with the single node's policy (a few free failures, then
a doubling delay). Whether an address is blocked is asked of nothing but this node's memory, so that a request
with the right secret never waits for Redis: the node that counted the failure which blocks an address learns it
from the script's answer and tells every other live node at once (one signed message, `BLOCKED`), and a node
starting, or finding Redis again, reads the blocks current then (`apuppet:blocked:<kind>`, a sorted set by end,
which expires with the last block it lists: nothing in Redis outlives the longest delay or `forget_after`).
Polling instead would cost every node a read per interval (growing with an attack's addresses) and leave other
nodes comparing guesses for up to that interval; a pushed block arrives within a pub/sub hop and costs nothing
while nobody guesses wrong.

The node's own `Throttle` keeps counting beside it: the answer is the longer of the two delays, so when Redis is
unreachable each node still limits the addresses it sees, as a single server does (never no limit), and a block
the cluster announced still runs out when its time is over (never everyone refused). The same local count
limits the clients a node does not report: at most `REPORTED_PER_SECOND` distinct ones per kind each second, so
that many addresses at once (an IPv6 /48 holds 65 536 /64s) cannot make a node fill Redis with counters as fast
as it answers wrong secrets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

from ..api.throttle import Throttle
from .directory import PREFIX

#: The secrets whose guessing the nodes count together: the API secret and the admin secret.
KINDS = ("api", "admin")
#: The message type a node sends the others when an address gets blocked.
BLOCKED = "guess.blocked"
#: Blocks per message at most (a burst of many addresses goes as several messages).
BLOCKS_PER_MESSAGE = 500
#: A client key longer than this is no address (`client_key` returns what it cannot parse as it is): such keys
#: count on the node only.
MAX_CLIENT = 64
#: Blocked addresses the sorted set keeps at most per kind (the soonest to end go first): what a starting node
#: reads at once.
MAX_LISTED = 100_000
#: Distinct clients a node reports per kind per second at most; the others count on the node only. Each counter
#: lives `forget_after` (10 min) after its last failure: at most 60 000 per node and kind (~6 MB of Redis), while
#: a node sees far fewer guessing addresses than this unless under an attack from many (which then gets each
#: node's limit rather than the cluster's beyond these).
REPORTED_PER_SECOND = 100

#: Count ARGV[1] more failures of one client. KEYS[1] its counter, KEYS[2] the kind's blocked set; ARGV: failures,
#: free failures, base delay and longest delay (ms), forget after (ms), the set's cap, the client. Returns the
#: delay now imposed (ms; 0: none), computed as `Throttle.failure` does, on Redis' clock (no node's). The set
#: expires the longest delay after its last addition (never sooner than it would: a node with a longer policy),
#: so that it goes once no block is left, though nobody blocks or starts again to prune it.
FAIL_SCRIPT = """
local failures = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
local over = failures - tonumber(ARGV[2])
local delay = 0
if over > 0 then
  delay = math.floor(math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ math.min(over - 1, 60)))
end
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[5]), delay))
if delay > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], now + delay, ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
  if extra > 0 then redis.call('ZPOPMIN', KEYS[2], extra) end
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4])) end
end
return delay
"""
#: The clients of a kind blocked now and the ms each has left: KEYS[1] the blocked set, ARGV[1] how many at most.
#: A flat list: client, ms, client, ms…
BLOCKED_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local found = redis.call('ZRANGEBYSCORE', KEYS[1], now + 1, '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
for i = 2, #found, 2 do
  found[i] = tostring(math.floor(tonumber(found[i]) - now))
end
return found
"""


def guess_key(kind: str, client: str) -> str:
    """A client's wrong secrets of one kind."""
    return f"{PREFIX}:guess:{kind}:{client}"


def blocked_key(kind: str) -> str:
    """The clients of one kind blocked now, scored by when (Redis' clock, ms) their block ends."""
    return f"{PREFIX}:blocked:{kind}"


def client_of(key: Hashable) -> str | None:
    """The client a local throttle key stands for: the key itself (the admin secret's, `client_key(remote)`) or
    its last item (the API secret's, `("apisecret", client_key(remote))`); None: count it on this node only."""
    if isinstance(key, tuple) and key:
        key = key[-1]
    return key if isinstance(key, str) and 0 < len(key) <= MAX_CLIENT else None


def blocks_messages(blocks: dict[str, list[tuple[str, int]]]) -> list[dict[str, Any]]:
    """The messages telling another node of new blocks: kind → [(client, ms left)]."""
    flat = [(kind, client, ms) for kind, found in blocks.items() for client, ms in found]
    messages = []
    for start in range(0, len(flat), BLOCKS_PER_MESSAGE):
        grouped: dict[str, list[list[Any]]] = {}
        for kind, client, ms in flat[start : start + BLOCKS_PER_MESSAGE]:
            grouped.setdefault(kind, []).append([client, ms])
        messages.append({"type": BLOCKED, "blocks": grouped})
    return messages


def parse_blocks(message: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(kind, client, seconds left) of each well-formed block a message names; anything else is skipped (a node
    of another version, a bug: a wrong entry must not block an address, nor stop the others)."""
    blocks = message.get("blocks")
    if not isinstance(blocks, dict):
        return []
    found = []
    for kind, entries in blocks.items():
        if kind not in KINDS or not isinstance(entries, list):
            continue
        for entry in entries[:BLOCKS_PER_MESSAGE]:
            if not (isinstance(entry, list) and len(entry) == 2):
                continue
            client, ms = entry
            if client_of(client) is None or isinstance(ms, bool) or not isinstance(ms, int | float):
                continue
            if math.isfinite(ms) and ms > 0:
                found.append((kind, client, ms / 1000))
    return found


class SharedThrottle(Throttle):
    """A `Throttle` that also counts its failures for the cluster and obeys the blocks the cluster announces.

    `blocked_for` reads memory only (the local count and the blocks learnt); `failure` counts locally and queues
    the client for `guesses.py`, which reports the queue to Redis and hands the answers back to `learn`."""

    def __init__(
        self,
        kind: str,
        *,
        client: Callable[[Hashable], str | None] = client_of,
        reported_per_second: int = REPORTED_PER_SECOND,
        **policy: Any,
    ) -> None:
        super().__init__(**policy)
        if kind not in KINDS:
            raise ValueError(f"unknown guessing kind {kind!r}")
        self.kind = kind
        self.client = client
        self.reported_per_second = reported_per_second
        #: The clients queued since `_second` began (this node's clock).
        self._reported: set[str] = set()
        self._second = -math.inf
        #: Client → when (this node's clock) the cluster's block on it ends.
        self.blocks: dict[str, float] = {}
        #: Client → failures not reported to Redis yet.
        self.pending: dict[str, int] = {}
        #: Called after each failure queued (the adapter wakes its reporter).
        self.on_failure: Callable[[], None] | None = None

    @classmethod
    def like(cls, kind: str, local: Throttle) -> SharedThrottle:
        """One with the policy (and clock) of a node's own throttle."""
        return cls(
            kind,
            free=local.free,
            base_delay=local.base_delay,
            max_delay=local.max_delay,
            forget_after=local.forget_after,
            max_keys=local.max_keys,
            clock=local.clock,
        )

    def blocked_for(self, key: Hashable) -> float:
        local = super().blocked_for(key)
        client = self.client(key)
        if client is None or (until := self.blocks.get(client)) is None:
            return local
        left = until - self.clock()
        if left <= 0:
            del self.blocks[client]
            return local
        return max(local, left)

    def failure(self, key: Hashable) -> float:
        delay = super().failure(key)
        client = self.client(key)
        if client is not None and self._reportable(client):
            self.pending[client] = self.pending.get(client, 0) + 1
            if self.on_failure is not None:
                self.on_failure()
        return delay

    def _reportable(self, client: str) -> bool:
        """Whether to queue a failure of `client` for Redis: one already queued, or in this second, always; a new
        one while the queue (Redis slow or gone) and this second's share have room."""
        if client in self.pending:
            return True
        if len(self.pending) >= self.max_keys:
            return False
        now = self.clock()
        if now - self._second >= 1.0:
            self._second, self._reported = now, set()
        if client not in self._reported:
            if len(self._reported) >= self.reported_per_second:
                return False
            self._reported.add(client)
        return True

    def take(self) -> dict[str, int]:
        """The failures to report (and forget here: one that cannot be reported stays counted locally only)."""
        pending, self.pending = self.pending, {}
        return pending

    def learn(self, client: str, seconds: float) -> None:
        """The cluster's word: `client` is blocked for `seconds` from now. Never longer than this policy's longest
        delay, and never shortens a block known already."""
        if seconds <= 0 or client_of(client) is None:
            return
        until = self.clock() + min(seconds, self.max_delay)
        if client not in self.blocks and len(self.blocks) >= self.max_keys:
            self._purge_blocks()
        if until > self.blocks.get(client, -math.inf):
            self.blocks[client] = until

    def _purge_blocks(self) -> None:
        now = self.clock()
        self.blocks = {c: until for c, until in self.blocks.items() if until > now}
        if len(self.blocks) >= self.max_keys:
            # Still full: keep the half that ends last (the local count still limits the others).
            kept = sorted(self.blocks.items(), key=lambda item: item[1])[len(self.blocks) // 2 :]
            self.blocks = dict(kept)
