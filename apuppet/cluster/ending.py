"""Sessions ended on purpose across nodes (`api.ending.Endings` for a cluster node).

A viewer's Janus session lives on the node its client reached (its *origin*), while its handles run in a *guest*
session on the device's node (router.py). Ending either one ends the other: an operator who ends the viewer
shown with the device's node ends the guest there (the page is told why by the plugins, through the guest's
events) and the origin's session with it; a time limit judged at the origin ends the guest as well, so that the
viewer leaves the room and its video stops at once, not only when the origin's session goes.

Idle time is judged where the viewer's input arrives: on the guest's node. The origin's plugins never see that
input, so the origin does not end a session whose handles run elsewhere for being idle.
"""

from __future__ import annotations

import math
from typing import Any

from ..api.ending import IDLE, Endings
from ..api.gateway import Gateway, parse_id
from ..api.session import Session
from .router import Router

JSON = dict[str, Any]


class ClusterEndings(Endings):
    def __init__(self, gateway: Gateway, router: Router, **limits: float) -> None:
        super().__init__(gateway, **limits)
        self.router = router
        router.handlers["end"] = self._ended_there

    def end(self, session: Session, reason: str, message: str) -> bool:
        if not super().end(session, reason, message):
            return False
        if session.id in self.router.directory.guests:
            # A guest goes with its origin's session (the origin's drops release it, router.py), not on a timer of
            # its own: gone first, it would leave the origin's handles pointing at nothing.
            session.ending = (math.inf, reason)
        for node in self._counterparts(session.id):
            notice = {"type": "end", "sid": session.id, "reason": reason, "message": message}
            self.router.bus.send(node, {**notice, "from": self.router.bus.name})
        return True

    def _counterparts(self, sid: int) -> set[str]:
        """The nodes sharing the session: its origin (for a guest), or where its handles run (for an origin)."""
        directory = self.router.directory
        origin = directory.guests.get(sid)
        if origin is not None:
            return {origin}
        return {node for (s, _), node in directory.bound.items() if s == sid}

    def _ended_there(self, message: JSON) -> None:
        """The other half of a session was ended on its node; only that node may end this half."""
        sid = parse_id(message.get("sid"))
        session = self.gateway.sessions.get(sid) if sid is not None else None
        if session is None or str(message.get("from")) not in self._counterparts(session.id):
            return
        self.end(session, str(message.get("reason"))[:64], str(message.get("message"))[:300])

    def _over_limit(self, session: Session, now: float) -> tuple[str, str] | None:
        over = super()._over_limit(session, now)
        if over is not None and over[0] == IDLE and self.router.directory.affinity(session.id) is not None:
            return None  # its input goes to the node running its handles, which judges it there
        return over
