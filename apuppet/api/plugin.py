"""The contract between the Janus API core and a plugin.

A plugin sees handles, never transports: it answers a `message` either at once (`PluginResult`, sent as a
Janus `success` with `plugindata`) or with `None`, which the core turns into an `ack`; later results travel
as events pushed on the handle. This mirrors Janus' own plugin API, so a request keeps the same sync/async
shape that janus.js and the aPuppet agent expect.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..config import Config
    from .session import Handle

JSON = dict[str, Any]


@dataclass(slots=True)
class PluginResult:
    """A synchronous reply: `data` becomes `plugindata.data` of a Janus `success`."""

    data: JSON
    jsep: JSON | None = None


class Intents:
    """Requests under way that a later request may take back: a `setup` or `watch` waiting for the WebRTC stack
    (`Peers.ready`) must make nothing once a hangup, stop or detach came meanwhile, nor once a newer one of its
    kind replaced it. Keyed by handle (or its id)."""

    def __init__(self) -> None:
        self._current: dict[Hashable, object] = {}

    def begin(self, key: Hashable) -> object:
        token = self._current[key] = object()
        return token

    def take_back(self, key: Hashable) -> None:
        self._current.pop(key, None)

    def end(self, key: Hashable, token: object) -> bool:
        """The request `token` is done waiting: whether it is still wanted."""
        if self._current.get(key) is not token:
            return False
        del self._current[key]
        return True

    def __len__(self) -> int:
        return len(self._current)


class Plugin:
    """Base class of the plugins (streaming, textroom); the core calls these hooks, never the transports."""

    #: Janus package name, e.g. ``janus.plugin.streaming``.
    name: ClassVar[str] = ""
    #: Values for `info` (Janus' `server_info.plugins`).
    version: ClassVar[int] = 1
    version_string: ClassVar[str] = "0.0.1"
    description: ClassVar[str] = ""

    #: Set by the Gateway: the operators' event stream (structured log, audit, metrics).
    observer: Callable[[str, JSON], None] | None = None
    #: Set by the Gateway: seconds since a session's last request or poll (None: the session is gone).
    idle_for: Callable[[int], float | None] | None = None
    #: A creator silent for this long has lost its connection (a live client polls every second or so).
    RECLAIM_AFTER = 10.0
    #: Set by a cluster node (apuppet.cluster): told (kind, key, present) when this plugin starts or stops holding
    #: a resource that clients name by id, so that the other nodes send its viewers here.
    placement: Callable[[str, str, bool], None] | None = None

    def __init__(self, config: Config) -> None:
        self.config = config

    def emit(self, event: str, **fields: Any) -> None:
        """Report something an operator cares about (a viewer joined, a wrong pin…). Never pass a pin or secret:
        the event stream is logged. Not for the media path: call it per request, never per packet."""
        if self.observer is not None:
            self.observer(event, fields)

    def owner_gone(self, session_id: int) -> bool:
        """Whether the session that created a resource is gone or silent past `RECLAIM_AFTER`.

        The aPuppet agent reconnects with the *same* room and mountpoint ids after a network loss; its old
        session, whose destroy never arrived, would hold them until it times out and the agent would fail with
        418. A trusted client that presents the resource's pin may take over a resource whose creator is gone."""
        if self.idle_for is None:
            return False
        idle = self.idle_for(session_id)
        return idle is None or idle > self.RECLAIM_AFTER

    def placed(self, kind: str, key: str, present: bool) -> None:
        if self.placement is not None:
            self.placement(kind, key, present)

    def locate(self, body: JSON) -> tuple[str, str] | None:
        """The resource a message names, as (kind, key) like `placed` reports it, or None. A cluster node sends a
        fresh handle whose first message names a resource held by another node to that node (the media must flow
        where the resource is); a plugin without named resources keeps the default."""
        return None

    def abandon(self, kind: str, key: str) -> bool:
        """Another cluster node made this resource anew (an agent that came back through another node): let ours
        go if its creator is gone, so that clients are sent to the new one. True: it went."""
        return False

    def metrics(self) -> dict[str, float]:
        """Counters and gauges for /metrics, e.g. ``{"rtp_packets_total": 123}``; names without a prefix."""
        return {}

    def snapshot(self) -> JSON:
        """What the plugin holds now, for the operator console: session ids as tags (`api.idtag`), times as UNIX
        seconds, never a pin or secret."""
        return {}

    def last_input(self, handle: Handle) -> float | None:
        """When (`time.monotonic()`, the gateway's clock) the handle's client last sent input a person made, not a
        heartbeat; None when the plugin takes no such input. `viewer_idle_minutes` is measured on it."""
        return None

    def evict(self, handle: Handle, reason: str, message: str) -> None:
        """The handle's session is being ended by an operator or a session limit: tell its client why (`reason`,
        a short code; `message`, a sentence for people) while it can still hear, and release what the handle
        holds. The session itself is destroyed a moment later (`api.ending.Endings`)."""

    def attach(self, handle: Handle) -> None:
        """A handle was created for this plugin."""

    def message(self, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> PluginResult | None:
        """Handle a `message`; return a synchronous result or `None` for an `ack` (events follow)."""
        raise NotImplementedError

    def trickle(self, handle: Handle, candidates: list[JSON]) -> None:
        """Remote ICE candidates; ``{"completed": true}`` marks the end of gathering."""

    def hangup(self, handle: Handle) -> None:
        """Tear down the handle's PeerConnection; the handle itself stays."""

    def detach(self, handle: Handle) -> None:
        """The handle is going away (detach, session destroy or timeout): release all it owns."""

    async def close(self) -> None:
        """Server shutdown: release everything left."""
