"""An Android device over ADB: `screenrecord` for the picture, `adb shell input` for touches and keys.

The device encodes: `adb exec-out screenrecord --output-format=h264 -` writes a raw Annex-B stream, which is
cut into access units here and sent as RTP without re-encoding. screenrecord stops at its time limit (180 s
on most versions), so it is restarted; a restart also starts with a keyframe, which is how a joining viewer
gets one (there is no other way to ask screenrecord for an IDR).

Checked here only against a fake `adb` script (no device on the build machine): the command lines, the
parsing of `wm size`, the cutting of a real libx264 stream into access units and the restarts. Not checked
against a real device: screenrecord's exact output framing on each Android version, `input` on old releases
(`input swipe` with a duration needs Android 4.4+), `cmd statusbar` (Android 7+). Not supported: clipboard
(`copy`) and non-ASCII text, which `input text` cannot type; rotation after start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import time
from collections.abc import AsyncIterator

from .base import Source

log = logging.getLogger(__name__)

KEYCODES = {
    "Backspace": "KEYCODE_DEL",
    "Delete": "KEYCODE_FORWARD_DEL",
    "Enter": "KEYCODE_ENTER",
    "ArrowLeft": "KEYCODE_DPAD_LEFT",
    "ArrowRight": "KEYCODE_DPAD_RIGHT",
    "Home": "KEYCODE_MOVE_HOME",
    "End": "KEYCODE_MOVE_END",
}
GLOBAL_ACTIONS = {
    "back": ["input", "keyevent", "KEYCODE_BACK"],
    "home": ["input", "keyevent", "KEYCODE_HOME"],
    "recents": ["input", "keyevent", "KEYCODE_APP_SWITCH"],
    "notifications": ["cmd", "statusbar", "expand-notifications"],
}
#: screenrecord's own maximum on most Android versions.
TIME_LIMIT = 180
#: Seconds without output after which the buffered frame is sent (screenrecord writes whole frames).
IDLE_FLUSH = 0.03
#: A joining viewer restarts screenrecord for a keyframe, but not more often than this.
MIN_RESTART_INTERVAL = 1.0


class AdbCommands:
    """Command lines, sans-I/O. `adb shell` hands one string to the device's `sh`, hence the quoting."""

    def __init__(self, adb: str = "adb", serial: str | None = None) -> None:
        self.adb = adb
        self.serial = serial

    def base(self) -> list[str]:
        return [self.adb, "-s", self.serial] if self.serial else [self.adb]

    def shell(self, *args: str) -> list[str]:
        return [*self.base(), "shell", shlex.join(args)]

    def wm_size(self) -> list[str]:
        return self.shell("wm", "size")

    def screenrecord(self, width: int, height: int, bitrate: int, time_limit: int = TIME_LIMIT) -> list[str]:
        return [
            *self.base(),
            "exec-out",
            "screenrecord",
            "--output-format=h264",
            f"--size={width}x{height}",
            f"--bit-rate={bitrate}",
            f"--time-limit={time_limit}",
            "-",
        ]

    def tap(self, x: int, y: int, duration: int) -> list[str]:
        # `input tap` has no duration; a swipe that does not move is a press of the given length.
        return self.shell("input", "swipe", str(x), str(y), str(x), str(y), str(max(1, duration)))

    def swipe(self, x1: int, y1: int, x2: int, y2: int, duration: int) -> list[str]:
        return self.shell("input", "swipe", str(x1), str(y1), str(x2), str(y2), str(max(1, duration)))

    def global_action(self, action: str) -> list[str]:
        return self.shell(*GLOBAL_ACTIONS[action])

    def key(self, key: str) -> list[str]:
        if key in KEYCODES:
            return self.shell("input", "keyevent", KEYCODES[key])
        return self.text(key)[0]

    def text(self, text: str) -> list[list[str]]:
        """`input text` per line (it types no newline: Enter between lines); `%s` is its code for a space."""
        out: list[list[str]] = []
        for i, line in enumerate(text.split("\n")):
            if i:
                out.append(self.shell("input", "keyevent", "KEYCODE_ENTER"))
            if line:
                out.append(self.shell("input", "text", line.replace(" ", "%s")))
        return out


def parse_wm_size(output: str) -> tuple[int, int]:
    """`wm size` prints `Physical size: WxH` and, when changed, `Override size: WxH`, which is what is shown."""
    sizes = dict(re.findall(r"(Physical|Override) size:\s*(\d+x\d+)", output))
    size = sizes.get("Override") or sizes.get("Physical")
    if not size:
        raise ValueError(f"cannot read the screen size from `wm size`: {output.strip()[:80]!r}")
    width, height = (int(v) for v in size.split("x"))
    return width, height


class AccessUnitSplitter:
    """An Annex-B byte stream, in arbitrary chunks → complete access units (sans-I/O).

    A new access unit starts at an AUD, SPS, PPS or SEI after a picture, or at a slice whose
    `first_mb_in_slice` is 0 (its first bit is 1) after a picture.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._unit: list[bytes] = []
        self._has_picture = False

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        start = self._buffer.find(b"\x00\x00\x01")
        if start < 0:
            return out
        while True:
            nxt = self._buffer.find(b"\x00\x00\x01", start + 3)
            if nxt < 0:
                break
            end = nxt
            while end > start + 3 and self._buffer[end - 1] == 0:
                end -= 1
            nal = bytes(self._buffer[start + 3 : end])
            if nal:
                out.extend(self._nal(nal))
            start = nxt
        del self._buffer[:start]
        return out

    def flush(self) -> list[bytes]:
        out: list[bytes] = []
        if self._buffer.startswith(b"\x00\x00\x01") or self._buffer.startswith(b"\x00\x00\x00\x01"):
            nal = bytes(self._buffer[self._buffer.find(b"\x00\x00\x01") + 3 :]).rstrip(b"\x00")
            if nal:
                out.extend(self._nal(nal))
        self._buffer.clear()
        if self._unit and self._has_picture:
            out.append(self._emit())
        self._unit, self._has_picture = [], False
        return out

    def _nal(self, nal: bytes) -> list[bytes]:
        kind = nal[0] & 0x1F
        picture = kind in (1, 5)
        starts_unit = kind in (6, 7, 8, 9) or (picture and len(nal) > 1 and nal[1] & 0x80)
        out = []
        if starts_unit and self._has_picture:
            out.append(self._emit())
        self._unit.append(nal)
        self._has_picture = self._has_picture or picture
        return out

    def _emit(self) -> bytes:
        data = b"".join(b"\x00\x00\x00\x01" + n for n in self._unit)
        self._unit, self._has_picture = [], False
        return data


class AdbSource(Source):
    name = "adb"
    encoded = True

    def __init__(self, adb: str = "adb", serial: str | None = None, command_timeout: float = 10.0) -> None:
        super().__init__()
        self.commands = AdbCommands(adb, serial)
        self.command_timeout = command_timeout
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._last_start = 0.0

    async def _run(self, argv: list[str]) -> str:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
        )
        try:
            async with asyncio.timeout(self.command_timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv[:4])}… failed: {err.decode(errors='replace').strip()[:200]}")
        return out.decode(errors="replace")

    async def start(self) -> None:
        self.width, self.height = parse_wm_size(await self._run(self.commands.wm_size()))

    async def stop(self) -> None:
        await self._kill()

    async def _kill(self) -> None:
        proc, self._process = self._process, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    def request_keyframe(self) -> None:
        proc = self._process
        if proc is not None and proc.returncode is None and time.monotonic() - self._last_start > MIN_RESTART_INTERVAL:
            proc.kill()

    async def h264(self, width: int, height: int, bitrate: int) -> AsyncIterator[bytes]:
        argv = self.commands.screenrecord(width, height, bitrate)
        try:
            while True:
                self._last_start = time.monotonic()
                self._process = proc = await asyncio.create_subprocess_exec(
                    *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
                )
                self.restarts += 1
                splitter = AccessUnitSplitter()
                assert proc.stdout is not None
                produced = False
                while True:
                    try:
                        chunk = await asyncio.wait_for(proc.stdout.read(65536), IDLE_FLUSH)
                    except TimeoutError:
                        # screenrecord writes a frame only when the screen changes, and a frame ends only
                        # where the next one starts: after a quiet moment, take what is there as complete.
                        units = splitter.flush()
                    else:
                        if not chunk:
                            break
                        units = splitter.feed(chunk)
                    for unit in units:
                        produced = True
                        yield unit
                for unit in splitter.flush():
                    produced = True
                    yield unit
                await proc.wait()
                if not produced:
                    log.warning("screenrecord produced nothing (exit %s); retrying in 1 s", proc.returncode)
                    await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(ProcessLookupError):
                await self._kill()

    async def _input(self, argv: list[str]) -> None:
        try:
            await self._run(argv)
        except (RuntimeError, OSError, TimeoutError) as exc:
            log.warning("adb input failed: %s", exc)

    async def tap(self, x: int, y: int, duration: int) -> None:
        await self._input(self.commands.tap(x, y, duration))

    async def swipe(self, x1: int, y1: int, x2: int, y2: int, duration: int) -> None:
        await self._input(self.commands.swipe(x1, y1, x2, y2, duration))

    async def global_action(self, action: str) -> None:
        await self._input(self.commands.global_action(action))

    async def key(self, key: str) -> None:
        if not key.isascii():
            log.warning("adb cannot type non-ASCII keys")
            return
        await self._input(self.commands.key(key))

    async def paste(self, text: str) -> None:
        if not text.isascii():
            log.warning("adb cannot type non-ASCII text; pasting only its ASCII characters")
            text = text.encode("ascii", "ignore").decode()
        for argv in self.commands.text(text):
            await self._input(argv)
