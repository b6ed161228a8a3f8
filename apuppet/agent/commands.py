"""The remote-control command grammar carried in TextRoom ``message.text`` (aPuppet spec §5).

Every command is one line of comma-separated fields; the verb is case-insensitive. Coordinates are integer
pixels of the *streamed* video frame (origin top-left), durations integer milliseconds.

========================================  ===============  ====================================================
Text                                      Direction        Meaning
========================================  ===============  ====================================================
``tap,X,Y,D``                             viewer → device  touch (X,Y) for D ms; D >= 500 is a long press
``swipe,X1,Y1,X2,Y2,D``                   viewer → device  straight stroke from (X1,Y1) to (X2,Y2) over D ms
``back`` ``home`` ``recents``             viewer → device  global actions (the Android navigation buttons)
``notifications``                         viewer → device  pull the notification shade down
``key,K``                                 viewer → device  K is one character or one of Backspace, Delete,
                                                           Enter, ArrowLeft, ArrowRight, Home, End
``paste,TEXT``                            viewer → device  put TEXT on the device clipboard and paste it
``copy,TEXT``                             device → viewer  the device clipboard changed to TEXT
``ping,TS``                               viewer → device  liveness probe, TS opaque (the browser's ms clock)
``pong,TS``                               device → viewer  answer to ``ping``, TS echoed unchanged
``streamingVideoResolution,W,H[,R]``      device → viewer  stream size (even pixels); R = rotation in degrees
========================================  ===============  ====================================================

Escaping (``key``, ``paste``, ``copy``): the payload is everything after the first comma, with ``%`` written
``%25`` and ``,`` written ``%2C`` -- *every* occurrence. Decoding scans once and turns only ``%25`` and
``%2C`` (any case) back, leaving every other ``%`` and ``,`` as it is. That also decodes what aPuppet's
web-admin sends, which escapes only the *first* ``%`` and the first ``,``: the later raw commas are still
part of the payload because it runs to the end of the line.

Nothing here does I/O: `parse` turns text into a command object (or raises `CommandError`), `str(command)`
gives the text back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

#: Key names besides single characters that aPuppet's web-admin forwards (``W/keyboard.js``).
NAMED_KEYS = frozenset({"Backspace", "Delete", "Enter", "ArrowLeft", "ArrowRight", "Home", "End"})
GLOBAL_ACTIONS = ("back", "home", "recents", "notifications")
#: Bounds that keep a malformed or hostile command from asking for absurd work (a week-long press).
MAX_COORDINATE = 100_000
MAX_DURATION_MS = 60_000
MAX_TEXT = 64 * 1024

_UNESCAPE = re.compile(r"%(25|2[cC])")


class CommandError(ValueError):
    """The text is not a valid command; the message says why, for a log line."""


def escape(text: str) -> str:
    return text.replace("%", "%25").replace(",", "%2C")


def unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: "%" if m.group(1) == "25" else ",", text)


def _int(field: str, name: str, low: int, high: int) -> int:
    field = field.strip()
    if not re.fullmatch(r"[+-]?\d{1,9}", field):
        raise CommandError(f"{name} must be an integer, got {field[:20]!r}")
    value = int(field)
    if not low <= value <= high:
        raise CommandError(f"{name} {value} is out of range {low}..{high}")
    return value


def _coord(field: str, name: str) -> int:
    return _int(field, name, -MAX_COORDINATE, MAX_COORDINATE)


def _duration(field: str) -> int:
    return _int(field, "duration", 0, MAX_DURATION_MS)


@dataclass(frozen=True, slots=True)
class Tap:
    x: int
    y: int
    duration: int = 50
    verb: ClassVar[str] = "tap"

    def __str__(self) -> str:
        return f"tap,{self.x},{self.y},{self.duration}"


@dataclass(frozen=True, slots=True)
class Swipe:
    x1: int
    y1: int
    x2: int
    y2: int
    duration: int = 300
    verb: ClassVar[str] = "swipe"

    def __str__(self) -> str:
        return f"swipe,{self.x1},{self.y1},{self.x2},{self.y2},{self.duration}"


@dataclass(frozen=True, slots=True)
class GlobalAction:
    """``back``, ``home``, ``recents`` or ``notifications``."""

    action: str

    def __post_init__(self) -> None:
        if self.action not in GLOBAL_ACTIONS:
            raise CommandError(f"unknown global action {self.action!r}")

    def __str__(self) -> str:
        return self.action


@dataclass(frozen=True, slots=True)
class Key:
    key: str
    verb: ClassVar[str] = "key"

    def __post_init__(self) -> None:
        if len(self.key) != 1 and self.key not in NAMED_KEYS:
            raise CommandError(f"unknown key {self.key[:20]!r}")

    def __str__(self) -> str:
        return f"key,{escape(self.key)}"


@dataclass(frozen=True, slots=True)
class Paste:
    text: str
    verb: ClassVar[str] = "paste"

    def __str__(self) -> str:
        return f"paste,{escape(self.text)}"


@dataclass(frozen=True, slots=True)
class Copy:
    text: str
    verb: ClassVar[str] = "copy"

    def __str__(self) -> str:
        return f"copy,{escape(self.text)}"


@dataclass(frozen=True, slots=True)
class Ping:
    timestamp: str
    verb: ClassVar[str] = "ping"

    def __str__(self) -> str:
        return f"ping,{self.timestamp}"


@dataclass(frozen=True, slots=True)
class Pong:
    timestamp: str
    verb: ClassVar[str] = "pong"

    def __str__(self) -> str:
        return f"pong,{self.timestamp}"


@dataclass(frozen=True, slots=True)
class Resolution:
    width: int
    height: int
    rotation: int | None = None
    verb: ClassVar[str] = "streamingVideoResolution"

    def __str__(self) -> str:
        text = f"streamingVideoResolution,{self.width},{self.height}"
        return text if self.rotation is None else f"{text},{self.rotation}"


Command = Tap | Swipe | GlobalAction | Key | Paste | Copy | Ping | Pong | Resolution


def parse(text: str) -> Command:
    """Parse one command; raises `CommandError` for anything malformed, unknown or out of range."""
    if not isinstance(text, str):
        raise CommandError("a command must be a string")
    if len(text) > MAX_TEXT:
        raise CommandError(f"command of {len(text)} characters is too long")
    verb, sep, rest = text.partition(",")
    verb = verb.strip().lower()
    if verb in GLOBAL_ACTIONS:
        if sep:
            raise CommandError(f"{verb} takes no arguments")
        return GlobalAction(verb)
    if not sep:
        raise CommandError(f"unknown command {text[:40]!r}")
    if verb in ("key", "paste", "copy"):
        payload = unescape(rest)
        if verb == "key":
            return Key(payload)
        if verb == "paste":
            return Paste(payload)
        return Copy(payload)
    if verb in ("ping", "pong"):
        # The timestamp is echoed verbatim, so keep it short and free of separators.
        if not re.fullmatch(r"[0-9A-Za-z.:_-]{1,32}", rest):
            raise CommandError(f"bad {verb} timestamp {rest[:40]!r}")
        return Ping(rest) if verb == "ping" else Pong(rest)
    fields = rest.split(",")
    if verb == "tap":
        if len(fields) != 3:
            raise CommandError(f"tap needs X,Y,D, got {len(fields)} fields")
        return Tap(_coord(fields[0], "x"), _coord(fields[1], "y"), _duration(fields[2]))
    if verb == "swipe":
        if len(fields) != 5:
            raise CommandError(f"swipe needs X1,Y1,X2,Y2,D, got {len(fields)} fields")
        x1, y1, x2, y2 = (_coord(f, n) for f, n in zip(fields[:4], ("x1", "y1", "x2", "y2"), strict=True))
        return Swipe(x1, y1, x2, y2, _duration(fields[4]))
    if verb == "streamingvideoresolution":
        if len(fields) not in (2, 3):
            raise CommandError("streamingVideoResolution needs W,H[,rotation]")
        width = _int(fields[0], "width", 1, MAX_COORDINATE)
        height = _int(fields[1], "height", 1, MAX_COORDINATE)
        rotation = _int(fields[2], "rotation", 0, 359) if len(fields) == 3 else None
        return Resolution(width, height, rotation)
    raise CommandError(f"unknown command {verb[:40]!r}")
