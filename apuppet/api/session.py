"""Janus sessions and plugin handles: the owners of every resource a client creates.

Nothing here touches a socket. A session queues the events meant for its client; a transport adapter drains
the queue (HTTP long poll) or installs a `sink` that receives each event at once (WebSocket).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from .idtag import tag

if TYPE_CHECKING:
    from .plugin import Plugin

JSON = dict[str, Any]
log = logging.getLogger(__name__)

#: Events kept for a client that does not poll; older ones are dropped first so that a vanished client
#: cannot grow the server's memory without bound.
MAX_QUEUED_EVENTS = 1000


class Connection(Protocol):
    """A transport connection that receives its sessions' events as they happen (a WebSocket)."""

    def send(self, event: JSON) -> None: ...


class Session:
    def __init__(self, session_id: int, now: float, remote: str = "", connection: Connection | None = None) -> None:
        self.id = session_id
        self.handles: dict[int, Handle] = {}
        #: When the session was created, on the gateway's clock: `max_session_minutes` counts from here.
        self.created = now
        self.last_activity = now
        #: Set by `api.ending.Endings.end`: (when the session is destroyed, why). Its client has been told and
        #: gets until then to hear it.
        self.ending: tuple[float, str] | None = None
        #: Address of the client's latest request; plugins key their guess throttles on it.
        self.remote = remote
        #: Address the session was created from: per-address limits count it there, and a viewer session
        #: answers only there.
        self.creator = remote
        #: The transport connection that created the session (a WebSocket), or None for HTTP.
        self.connection: Connection | None = None
        self.events: deque[JSON] = deque(maxlen=MAX_QUEUED_EVENTS)
        self.sink: Callable[[JSON], None] | None = None
        if connection is not None:
            self.bind(connection)
        self._listeners: set[Callable[[], None]] = set()
        self.destroyed = False
        self.dropped_events = 0
        #: Created with the API secret (an agent, an operator). Untrusted sessions are viewers: plugins let them
        #: reach a device with its password and nothing else.
        self.trusted = True
        #: Counted against the per-address session caps where it lives; a cluster node's guest of another node's
        #: session is not (its client is counted on that node).
        self.counted = True

    @property
    def peer_cap_address(self) -> str:
        """The address whose peer-connection cap this session counts against; "" for none.

        A viewer's: one browser must not take every port of the UDP range. A trusted session (the API secret: an
        agent) is capped per session only, since hundreds of phones may share one carrier-NAT address."""
        return "" if self.trusted else self.remote

    def bind(self, connection: Connection) -> None:
        """Deliver events straight to `connection` from now on, starting with those already queued."""
        self.connection = connection
        self.sink = connection.send
        while self.events:
            connection.send(self.events.popleft())

    def touch(self, now: float, remote: str | None = None) -> None:
        self.last_activity = now
        if remote:
            self.remote = remote

    def push(self, event: JSON) -> None:
        if self.destroyed:
            return
        if self.sink is not None:
            self.sink(event)
            return
        if len(self.events) == self.events.maxlen:
            self.dropped_events += 1
        self.events.append(event)
        for listener in list(self._listeners):
            listener()

    def pop_events(self, limit: int) -> list[JSON]:
        out: list[JSON] = []
        while self.events and len(out) < limit:
            out.append(self.events.popleft())
        return out

    def add_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.discard(listener)

    def wake_listeners(self) -> None:
        for listener in list(self._listeners):
            listener()


class Handle:
    """A plugin handle. Plugins keep their per-handle state in their own maps keyed by the handle (typed there,
    not an `Any` slot here) and start background work with `spawn`, so that detaching the handle cancels it."""

    def __init__(self, handle_id: int, session: Session, plugin: Plugin, opaque_id: str | None = None) -> None:
        self.id = handle_id
        self.session = session
        self.plugin = plugin
        self.opaque_id = opaque_id
        self.tasks: set[asyncio.Task[Any]] = set()
        self.detached = False

    # -- events towards the client -------------------------------------------------------------------------
    def push_event(self, data: JSON, jsep: JSON | None = None, transaction: str | None = None) -> None:
        event: JSON = {
            "janus": "event",
            "session_id": self.session.id,
            "sender": self.id,
            "plugindata": {"plugin": self.plugin.name, "data": data},
        }
        if transaction is not None:
            event["transaction"] = transaction
        if jsep is not None:
            event["jsep"] = jsep
        self._push(event)

    def push_webrtcup(self) -> None:
        self._push({"janus": "webrtcup", "session_id": self.session.id, "sender": self.id})

    def push_media(self, kind: str, receiving: bool) -> None:
        self._push(
            {"janus": "media", "session_id": self.session.id, "sender": self.id, "type": kind, "receiving": receiving}
        )

    def push_hangup(self, reason: str = "Close PC") -> None:
        self._push({"janus": "hangup", "session_id": self.session.id, "sender": self.id, "reason": reason})

    def push_slowlink(self, uplink: bool, lost: int) -> None:
        self._push(
            {"janus": "slowlink", "session_id": self.session.id, "sender": self.id, "uplink": uplink, "lost": lost}
        )

    def _push(self, event: JSON) -> None:
        if not self.detached:
            self.session.push(event)

    # -- owned background work -----------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run `coro` as a task owned by this handle: cancelled on detach, its errors logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handle %s: background task %s failed", tag(self.id), task.get_name(), exc_info=task.exception())

    def cancel_tasks(self) -> None:
        for task in list(self.tasks):
            task.cancel()
