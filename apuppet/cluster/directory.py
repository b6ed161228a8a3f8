"""Who holds what in a cluster, sans-I/O: the Redis key names and scripts, the live nodes, and where a request or
a handle goes. `bus.py` moves these keys to and from Redis; `router.py` acts on the answers.

Every session, mountpoint and room lives on one node. Redis maps each to its node (`apuppet:own:<kind>:<id>`)
with an expiry the owner's heartbeat refreshes, and each node announces itself (`apuppet:node:<name>`) with a
shorter one. An entry whose node is not alive counts as gone, so a dead node's sessions answer "no such
session" within `NODE_TTL` seconds while its entries are still expiring.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

PREFIX = "apuppet"
#: Seconds a node's announcement lives; its heartbeat renews it every `HEARTBEAT` seconds.
NODE_TTL = 3
HEARTBEAT = 1.0
#: Seconds an ownership entry lives without the owner's heartbeat.
OWN_TTL = 10
#: The set of node names ever announced (each one's liveness is its own key).
NODES = f"{PREFIX}:nodes"
KINDS = {"session": "s", "mountpoint": "m", "room": "r"}

#: Claim ownership entries (KEYS) for ARGV[1] for ARGV[2] seconds, unless another node that is alive holds
#: one; returns the keys held by such another node. A dead node's entries are taken over at once (an agent that
#: comes back on another node re-creates its mountpoint there).
CLAIM_SCRIPT = """
local lost = {}
for _, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == false or holder == ARGV[1] or redis.call('EXISTS', ARGV[3] .. holder) == 0 then
    redis.call('SET', key, ARGV[1], 'EX', tonumber(ARGV[2]))
  else
    table.insert(lost, key)
  end
end
return lost
"""
#: Delete the ownership entries (KEYS) that ARGV[1] holds, and only those.
RELEASE_SCRIPT = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
"""


class ClusterUnavailable(Exception):
    """Redis cannot be reached (at start: the node refuses to start; later: a request that needs another node)."""


def node_key(name: str) -> str:
    return f"{PREFIX}:node:{name}"


def own_key(kind: str, key: str | int) -> str:
    return f"{PREFIX}:own:{KINDS[kind]}:{key}"


def channel(name: str) -> str:
    """The pub/sub channel a node receives its calls, replies and events on."""
    return f"{PREFIX}:rpc:{name}"


@dataclass
class Directory:
    """This node's view of the cluster: the live nodes (as of the last heartbeat), the handles of local sessions
    that were sent to another node, and the guests this node keeps for other nodes' sessions."""

    me: str
    #: Live node name → its incarnation (a random id per start: a worker restarted under its name is another
    #: node, whose predecessor's guests, bindings and calls must go).
    live: dict[str, str] = field(default_factory=dict)
    #: This node's own incarnation.
    incarnation: str = ""
    #: (session id, handle id) of a local session → the node its handle was sent to.
    bound: dict[tuple[int, int], str] = field(default_factory=dict)
    #: Local handles that already spoke to a local plugin: they stay here.
    used: set[tuple[int, int]] = field(default_factory=set)
    #: Guest session id → the node whose session it stands for.
    guests: dict[int, str] = field(default_factory=dict)

    def holder(self, value: str | None) -> str | None:
        """The node an ownership entry names, if it is another node that is alive; None: held here or by nobody
        (a dead node's entry is as good as expired)."""
        if value is None or value == self.me or value not in self.live:
            return None
        return value

    def unknown(self, value: str | None) -> bool:
        """Whether an ownership entry names a node missing from the live nodes of the last heartbeat: one that
        died, or one that joined since (its key is worth one look before its entries count as gone)."""
        return value is not None and value != self.me and value not in self.live

    def update_live(self, nodes: dict[str, str]) -> set[str]:
        """The heartbeat's live nodes and their incarnations; returns the nodes that have died since the last one,
        counting one whose incarnation changed (it died and came back: gone, then joined)."""
        nodes = {**nodes, self.me: self.incarnation}
        gone = {name for name, inc in self.live.items() if nodes.get(name) != inc}
        self.live = nodes
        return gone

    def stale_guests(self, sessions: Container[int]) -> list[int]:
        """Guest entries whose session is no longer here (it went by itself: timed out, destroyed)."""
        return [sid for sid in self.guests if sid not in sessions]

    def fresh(self, session_id: int, handle_id: int) -> bool:
        """Whether a handle has not been placed yet: neither sent to a node nor used here."""
        key = (session_id, handle_id)
        return key not in self.bound and key not in self.used

    def affinity(self, session_id: int) -> str | None:
        """Where a session's handles were sent: a fresh handle whose message names no resource follows them (a
        viewer that watches first and then sets up its data channel without a room)."""
        for (sid, _), node in self.bound.items():
            if sid == session_id and node in self.live:
                return node
        return None

    def bindings_to(self, nodes: set[str]) -> list[tuple[int, int]]:
        return [key for key, node in self.bound.items() if node in nodes]

    def guests_of(self, nodes: set[str]) -> list[int]:
        return [sid for sid, origin in self.guests.items() if origin in nodes]

    def forget_handle(self, session_id: int, handle_id: int) -> str | None:
        """A local handle is gone; returns the node it was sent to, if any."""
        self.used.discard((session_id, handle_id))
        return self.bound.pop((session_id, handle_id), None)
