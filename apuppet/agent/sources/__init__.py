"""Screens the agent can stream and drive: `demo` (a virtual phone), `x11` (an X display), `adb` (Android)."""

from __future__ import annotations

from typing import Any

from .base import Source

__all__ = ["Source", "create_source"]


def create_source(kind: str, **options: Any) -> Source:
    """Instantiate a source by name; imports lazily so that `demo` needs neither X11 nor adb modules."""
    if kind == "demo":
        from .demo import DemoSource

        return DemoSource(**options)
    if kind == "x11":
        from .x11 import X11Source

        return X11Source(**options)
    if kind == "adb":
        from .adb import AdbSource

        return AdbSource(**options)
    raise ValueError(f"unknown source {kind!r} (choose demo, x11 or adb)")
