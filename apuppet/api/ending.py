"""Ending sessions on purpose, sans-I/O: an operator's "end session" and the session time limits.

Ending differs from destroying in that the client is told why first. Each plugin gets `Plugin.evict` for the
session's handles (a viewer is kicked from its room with the reason and its video stops; a device's room and
mountpoint go), and the session itself is destroyed `grace` seconds later, when the kick on the data channel and
the event on the long poll have had time to arrive. A page that hears it hangs up and destroys its session itself,
which ends the grace early.

`sweep` runs in the server's housekeeping, next to `Gateway.expire`: it destroys the sessions whose grace is over
and ends the viewer sessions over `max_session_minutes` or idle past `viewer_idle_minutes`. Agents (sessions
with the API secret) are never limited: a phone stays reachable for as long as it shares.
"""

from __future__ import annotations

from .gateway import Gateway
from .idtag import tag
from .session import Session

#: Seconds an ended session lives on after its client was told why.
GRACE = 3.0
#: Why a session was ended: the short code clients get as `reason` (the audit log's end reason too).
OPERATOR, TIME_LIMIT, IDLE = "operator", "time limit", "idle"
OPERATOR_MESSAGE = "An operator ended this session."
DEVICE_MESSAGE = "An operator closed the device's session."


def minutes(seconds: float) -> str:
    """A limit as the configuration states it: "30 minutes", "1 minute", "0.05 minutes"."""
    value = seconds / 60
    return "1 minute" if value == 1 else f"{value:g} minutes"


class Endings:
    """The gateway's sessions ended on purpose, and the viewer limits (seconds; 0: none)."""

    def __init__(
        self, gateway: Gateway, *, max_viewer_session: float = 0.0, viewer_idle: float = 0.0, grace: float = GRACE
    ) -> None:
        self.gateway = gateway
        self.max_viewer_session = max_viewer_session
        self.viewer_idle = viewer_idle
        self.grace = grace

    def find(self, session_tag: str) -> Session | None:
        """The live session tagged `session_tag` (the console names sessions by tag, never by id); None when no
        session, or more than one, has that tag."""
        found = [s for s in self.gateway.sessions.values() if tag(s.id) == session_tag]
        return found[0] if len(found) == 1 else None

    def end(self, session: Session, reason: str, message: str) -> bool:
        """Tell the session's client why and release what its handles hold now; the session goes after `grace`.
        False when the session is already gone or ending."""
        if session.destroyed or session.ending is not None:
            return False
        session.ending = (self.gateway.clock() + self.grace, reason)
        fields = {"session": tag(session.id), "reason": reason, "remote": session.remote}
        for observer in self.gateway.observers:
            observer("session_ended", fields)
        for handle in list(session.handles.values()):
            try:
                handle.plugin.evict(handle, reason, message)
            except Exception as exc:
                self.gateway.log_unexpected(exc, f"evict from {handle.plugin.name}", session.remote)
        return True

    def sweep(self) -> list[Session]:
        """Destroy the ended sessions whose grace is over, then end the viewer sessions over a limit; returns the
        sessions ended by a limit now."""
        now = self.gateway.clock()
        for session in list(self.gateway.sessions.values()):
            if session.ending is not None and session.ending[0] <= now:
                self.gateway.destroy_session(session, reason=session.ending[1])
        if not (self.max_viewer_session or self.viewer_idle):
            return []
        ended: list[Session] = []
        for session in [s for s in self.gateway.sessions.values() if not s.trusted and s.ending is None]:
            over = self._over_limit(session, now)
            if over is not None and self.end(session, *over):
                ended.append(session)
        return ended

    def _over_limit(self, session: Session, now: float) -> tuple[str, str] | None:
        if self.max_viewer_session and now - session.created >= self.max_viewer_session:
            return TIME_LIMIT, f"The session reached its time limit of {minutes(self.max_viewer_session)}."
        if self.viewer_idle:
            inputs = [h.plugin.last_input(h) for h in session.handles.values()]
            last = max([session.created, *(t for t in inputs if t is not None)])
            if now - last >= self.viewer_idle:
                return IDLE, f"Disconnected after {minutes(self.viewer_idle)} without input."
        return None
