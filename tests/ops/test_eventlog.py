from __future__ import annotations

import logging

import pytest

from apuppet.ops.eventlog import EventLog, format_event


def test_format_is_logfmt_and_drops_secrets() -> None:
    line = format_event(
        "viewer_joined",
        {"room": "12345678", "remote": "10.0.0.7", "pin": "4321", "secret": "s", "display": "Pixel 7", "x": None},
    )
    assert line == 'event=viewer_joined room=12345678 remote=10.0.0.7 display="Pixel 7"'
    assert "4321" not in line


def test_wrong_pins_log_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="apuppet.events")
    log = EventLog()
    log("wrong_pin", {"room": "r1", "remote": "6.6.6.6", "PIN": "0000"})
    log("session_created", {"session": 5})
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    assert "0000" not in caplog.text and "event=wrong_pin room=r1 remote=6.6.6.6" in caplog.text
