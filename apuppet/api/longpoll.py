"""The wait of a Janus long poll (GET /janus/<session>), apart from any transport: the HTTP transport runs it for
its own sessions, and a cluster node runs it for a poll that another node received for a session held here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .errors import ErrorCode
from .gateway import error_reply
from .session import Session

#: How often a waiting poll looks whether its client is still there.
CHECK_EVERY = 1.0


async def wait_events(
    session: Session,
    maxev: int | None,
    timeout: float,
    *,
    closed: Callable[[], bool],
    touch: Callable[[], None],
) -> tuple[int, Any] | None:
    """(HTTP status, JSON payload) once events are queued, the session is gone or `timeout` passed (a keepalive);
    None when `closed()` says the client went away first, its events left queued for its next poll. Without
    `maxev` one event object (the Android agent crashes on arrays), with it an array of up to `maxev`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if closed():
            return None
        # Events first: a session that timed out still hands over its `timeout` event.
        if session.events:
            events = session.pop_events(maxev or 1)
            return 200, events if maxev is not None else events[0]
        if session.destroyed:
            return 404, error_reply(ErrorCode.SESSION_NOT_FOUND, f"No such session {session.id}")
        remaining = deadline - loop.time()
        if remaining <= 0:
            return 200, {"janus": "keepalive"}
        waiter = loop.create_future()

        def wake(w: asyncio.Future[None] = waiter) -> None:
            if not w.done():
                w.set_result(None)

        session.add_listener(wake)
        try:
            await asyncio.wait_for(waiter, timeout=min(remaining, CHECK_EVERY))
        except TimeoutError:
            pass
        finally:
            session.remove_listener(wake)
        # A waiting poll is a keepalive, however short the configured session timeout.
        touch()
