"""Fixtures shared by the plugin tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import ModuleType

import pytest

from apuppet.media import peers as peers_module


@pytest.fixture
def held_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The WebRTC stack's import (media/peers.py, a worker thread on a fresh server) held until the test sets the
    event: the window in which a first `setup` or `watch` waits for it. Fault injection: the real import is quicker
    than a test can aim at."""
    gate = threading.Event()
    real = peers_module.import_stack

    def held() -> ModuleType:
        gate.wait(10)
        return real()

    monkeypatch.setattr(peers_module, "import_stack", held)
    yield gate
    gate.set()  # a test that failed before letting it go
