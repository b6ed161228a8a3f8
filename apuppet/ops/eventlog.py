"""One structured log line per operator event (logfmt: ``event=viewer_joined room=… remote=…``).

Events come from the Janus core and the plugins (`Plugin.emit`). Keys that could carry a secret are dropped
here, whatever a caller passes, so that no pin or secret reaches a log file.
"""

from __future__ import annotations

import json
import logging
from typing import Any

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

    WARNINGS = frozenset({"unauthorized", "wrong_pin", "ingest_foreign_source"})

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        level = logging.WARNING if event in self.WARNINGS else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "%s", format_event(event, fields))
