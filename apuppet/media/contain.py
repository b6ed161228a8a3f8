"""Keeping our exceptions out of aiortc's loops.

aiortc calls our event handlers (a data channel's `message`, a connection's state change…) from inside its own
receive loops, through pyee, which re-raises whatever a handler raises. An exception there ends the loop that
called it: a data channel's SCTP/DTLS loop stops, the channel still reads as open, and every later request on it
goes unanswered. A client's input must never be able to do that, and neither may a bug of ours. So every callback
handed to aiortc (by `datachannel` and `viewer`, which call the plugins' callbacks from there) goes through
`contained`, which swallows the exception, logs one short line (no traceback: the line is the same for every
failure of a kind, and the input that caused it may carry secrets) and lets the caller answer the request that
failed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

#: At most one log line per place per this many seconds: a client sending garbage in a loop must not flood the log.
LOG_INTERVAL = 10.0

#: A close that cannot finish (a peer that cannot say goodbye, an offer still gathering) is not waited for
#: longer than this, so that a shutdown ends.
CLOSE_TIMEOUT = 5.0

_last_logged: dict[str, float] = {}
_tasks: set[asyncio.Future[Any]] = set()
_suppressed: dict[str, int] = {}
#: Failures by place since start, for tests and /metrics-style inspection.
failures: dict[str, int] = {}


def report_failure(where: str, exc: BaseException) -> None:
    """Count a contained exception and log it, rate-limited per place, as one line: its type and innermost frame.

    The message of the exception is left out on purpose: it may quote the client's input (a pin, a secret)."""
    failures[where] = failures.get(where, 0) + 1
    now = time.monotonic()
    if now - _last_logged.get(where, -LOG_INTERVAL) < LOG_INTERVAL:
        _suppressed[where] = _suppressed.get(where, 0) + 1
        return
    _last_logged[where] = now
    skipped = _suppressed.pop(where, 0)
    frames = traceback.extract_tb(exc.__traceback__)
    origin = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    more = f" ({skipped} more since the last line)" if skipped else ""
    log.warning("%s failed: %s%s; contained%s", where, type(exc).__name__, origin, more)


def contained(
    callback: Callable[..., Any], where: str, on_error: Callable[[Exception], None] | None = None
) -> Callable[..., None]:
    """`callback`, made safe to register with aiortc: an exception (or a failed coroutine) is reported and then
    handed to `on_error` (to answer the request that failed), never raised into the caller."""

    def failed(exc: Exception) -> None:
        report_failure(where, exc)
        if on_error is not None:
            try:
                on_error(exc)
            except Exception as again:  # the error answer itself failed: nothing more to do but say so
                report_failure(f"{where} (error answer)", again)

    def done(task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and isinstance(task.exception(), Exception):
            failed(task.exception())  # type: ignore[arg-type]

    def run(*args: Any) -> None:
        try:
            result = callback(*args)
        except Exception as exc:
            failed(exc)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
            task.add_done_callback(done)

    return run


def spawn_owned(coro: Coroutine[Any, Any, Any], where: str, owner: set[asyncio.Task[Any]]) -> asyncio.Task[Any]:
    """Run `coro` in a task kept in `owner` until it ends (so that a shutdown can await it) and whose failure is
    reported under `where`: a close that must outlive the handle which started it."""
    task = asyncio.get_running_loop().create_task(coro, name=where)
    owner.add(task)
    task.add_done_callback(owner.discard)

    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            report_failure(where, task.exception())  # type: ignore[arg-type]

    task.add_done_callback(done)
    return task
