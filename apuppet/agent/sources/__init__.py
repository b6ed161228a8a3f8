"""Screens the agent can stream and drive: `demo` (a virtual phone), `x11` (an X display), `adb` (Android)."""

from __future__ import annotations

from .base import Source, create_source

__all__ = ["Source", "create_source"]
