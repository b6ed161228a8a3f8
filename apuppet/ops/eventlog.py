"""One structured log line per operator event (logfmt: ``event=viewer_joined room=… remote=…``).

Events come from the Janus core and the plugins (`Plugin.emit`). Keys that could carry a secret are dropped
here, whatever a caller passes, so that no pin or secret reaches a log file; session and handle ids arrive as
tags (`api.idtag`). Each event name gets a few lines per client address and minute: one address creating
sessions in a loop writes a handful of lines and a count (`suppressed=`), not one line per session.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..api.limits import LogLimiter

log = logging.getLogger("apuppet.events")

SECRET_KEYS = frozenset(
    {"pin", "secret", "apisecret", "api_secret", "admin_secret", "password", "token", "credential", "jsep", "sdp"}
)


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    if text and all(c.isalnum() or c in "-_.:/@[]" for c in text):
        return text
    return json.dumps(text)


def format_event(event: str, fields: dict[str, Any]) -> str:
    parts = [f"event={_value(event)}"]
    for key, value in fields.items():
        if key.lower() in SECRET_KEYS or value is None:
            continue
        parts.append(f"{key}={_value(value)}")
    return " ".join(parts)


class EventLog:
    """Gateway observer writing the line at INFO (wrong secrets and pins at WARNING)."""

    WARNINGS = frozenset({"unauthorized", "wrong_pin", "ingest_foreign_source", "limit_reached"})

    def __init__(self, limiter: LogLimiter | None = None) -> None:
        self.limiter = LogLimiter(lines=20, interval=60.0) if limiter is None else limiter

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        level = logging.WARNING if event in self.WARNINGS else logging.INFO
        if not log.isEnabledFor(level):
            return
        suppressed = self.limiter.allow((event, fields.get("remote")))
        if suppressed is None:
            return
        line = format_event(event, fields)
        if suppressed:
            line += f" suppressed={suppressed}"
        log.log(level, "%s", line)
