"""A real X display: screen capture with mss, input through the XTest extension (python-xlib).

Tested under Xvfb with a real X client. X has no Android navigation, so the global actions become keys:
back = Escape, home = Super, recents = Alt+Tab; `notifications` has no equivalent and is ignored. `paste`
types the text (no X selection is taken); a character the keymap lacks borrows a spare keycode for one
press. The CLIPBOARD selection is polled (X has no change notification without the XFixes extension) and a
change is reported as `copy`."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import numpy as np

from .base import Source

log = logging.getLogger(__name__)

NAMED_KEYSYMS = {
    "Backspace": "BackSpace",
    "Delete": "Delete",
    "Enter": "Return",
    "ArrowLeft": "Left",
    "ArrowRight": "Right",
    "Home": "Home",
    "End": "End",
}
GLOBAL_KEYS = {"back": ["Escape"], "home": ["Super_L"], "recents": ["Alt_L", "Tab"]}
#: How often the CLIPBOARD selection is read.
CLIPBOARD_POLL = 0.5
#: How long a keycode lent to a keysym the keymap lacks stays mapped after its last press.
GIVE_BACK_AFTER = 0.5
#: Clipboard text beyond this is cut, like any command (see `commands.MAX_TEXT`).
MAX_CLIPBOARD = 60_000
#: A swipe is played as this many pointer moves per second, so that applications see a drag.
SWIPE_STEPS_PER_SECOND = 60


class X11Source(Source):
    name = "x11"

    def __init__(self, display: str | None = None) -> None:
        super().__init__()
        self.display_name = display or os.environ.get("DISPLAY", "")
        self._display: Any = None
        self._sct: Any = None
        self._last: bytes | None = None
        self._monitor: dict[str, int] = {}
        self._clipboard: asyncio.Task[None] | None = None
        #: Keysyms typed through a borrowed spare keycode → that keycode, until `_give_back`.
        self._borrowed: dict[int, int] = {}
        self._give_back_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        if not self.display_name:
            raise RuntimeError("no X display: set DISPLAY or pass --display")
        import mss
        from Xlib import display as xdisplay
        from Xlib.error import DisplayError

        try:
            self._display = xdisplay.Display(self.display_name)
        except DisplayError as exc:
            raise RuntimeError(f"cannot open X display {self.display_name}: {exc}") from None
        if not self._display.has_extension("XTEST"):
            self._display.close()
            raise RuntimeError(f"X display {self.display_name} has no XTEST extension")
        screen = self._display.screen()
        self.width, self.height = screen.width_in_pixels, screen.height_in_pixels
        factory = getattr(mss, "MSS", None) or mss.mss  # mss 10.2 renamed the entry point
        self._sct = factory(display=self.display_name)
        self._monitor = {"left": 0, "top": 0, "width": self.width, "height": self.height}
        self._clipboard = asyncio.get_running_loop().create_task(self._watch_clipboard(), name="x11-clipboard")

    async def stop(self) -> None:
        if self._give_back_timer is not None:
            self._give_back_timer.cancel()
        if self._display is not None:
            self._give_back()
        if self._clipboard is not None:
            self._clipboard.cancel()
            await asyncio.gather(self._clipboard, return_exceptions=True)
            self._clipboard = None
        if self._sct is not None:
            self._sct.close()
            self._sct = None
        if self._display is not None:
            self._display.close()
            self._display = None

    async def _watch_clipboard(self) -> None:
        """Poll CLIPBOARD as UTF8_STRING on a connection of its own (its events must not mix with XTest's)."""
        from Xlib import X
        from Xlib import display as xdisplay

        display = xdisplay.Display(self.display_name)
        try:
            window = display.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
            clipboard = display.intern_atom("CLIPBOARD")
            utf8 = display.intern_atom("UTF8_STRING")
            target = display.intern_atom("APUPPET_CLIPBOARD")
            # What is on the clipboard when sharing starts is not a change; an empty one counts as "".
            last = await self._read_selection(display, window, clipboard, utf8, target) or ""
            while True:
                await asyncio.sleep(CLIPBOARD_POLL)
                text = await self._read_selection(display, window, clipboard, utf8, target)
                if text is not None and text != last:
                    last = text
                    if self.on_clipboard is not None:
                        self.on_clipboard(text)
        finally:
            display.close()

    @staticmethod
    async def _read_selection(display: Any, window: Any, selection: int, kind: int, target: int) -> str | None:
        from Xlib import X

        if display.get_selection_owner(selection) == X.NONE:
            return None
        window.convert_selection(selection, kind, target, X.CurrentTime)
        display.flush()
        for _ in range(50):  # the owner answers through the server: up to a second
            while display.pending_events():
                event = display.next_event()
                if event.type == X.SelectionNotify and event.selection == selection:
                    if event.property == X.NONE:
                        return None
                    prop = window.get_full_property(target, X.AnyPropertyType, sizehint=MAX_CLIPBOARD)
                    window.delete_property(target)
                    if prop is None:
                        return None
                    value = prop.value if isinstance(prop.value, bytes) else bytes(prop.value)
                    return value[:MAX_CLIPBOARD].decode("utf-8", "replace")
            await asyncio.sleep(0.02)
        return None

    def grab(self, force: bool = False) -> np.ndarray | None:
        shot = self._sct.grab(self._monitor)
        raw = bytes(shot.raw)
        if not force and raw == self._last:
            return None
        self._last = raw
        bgra = np.frombuffer(raw, dtype=np.uint8).reshape(shot.height, shot.width, 4)
        return np.ascontiguousarray(bgra[:, :, 2::-1])

    # -- input ------------------------------------------------------------------------------------------------
    def _fake(self, event: int, detail: int = 0, x: int | None = None, y: int | None = None) -> None:
        from Xlib.ext import xtest

        if x is None:
            xtest.fake_input(self._display, event, detail)
        else:
            xtest.fake_input(self._display, event, x=x, y=y)
        self._display.sync()

    async def tap(self, x: int, y: int, duration: int) -> None:
        from Xlib import X

        self._fake(X.MotionNotify, x=x, y=y)
        self._fake(X.ButtonPress, 1)
        await asyncio.sleep(duration / 1000)
        self._fake(X.ButtonRelease, 1)

    async def swipe(self, x1: int, y1: int, x2: int, y2: int, duration: int) -> None:
        from Xlib import X

        steps = max(2, duration * SWIPE_STEPS_PER_SECOND // 1000)
        self._fake(X.MotionNotify, x=x1, y=y1)
        self._fake(X.ButtonPress, 1)
        for i in range(1, steps + 1):
            await asyncio.sleep(duration / 1000 / steps)
            self._fake(X.MotionNotify, x=x1 + (x2 - x1) * i // steps, y=y1 + (y2 - y1) * i // steps)
        self._fake(X.ButtonRelease, 1)

    def _keycode(self, keysym: int) -> tuple[int, bool]:
        """The keycode for `keysym` and whether Shift is needed; keycode 0 if the keymap lacks it."""
        code = self._display.keysym_to_keycode(keysym)
        if not code:
            return 0, False
        return code, self._display.keycode_to_keysym(code, 0) != keysym

    def _press(self, keysyms: list[int]) -> bool:
        from Xlib import XK, X

        codes: list[int] = []
        for keysym in keysyms:
            code, shift = self._keycode(keysym)
            if not code:
                return False
            if shift:
                codes.append(self._display.keysym_to_keycode(XK.string_to_keysym("Shift_L")))
            codes.append(code)
        for code in codes:
            self._fake(X.KeyPress, code)
        for code in reversed(codes):
            self._fake(X.KeyRelease, code)
        return True

    def _type(self, char: str) -> None:
        keysym = ord(char) if ord(char) < 0x100 else 0x01000000 + ord(char)
        if char == "\n":
            keysym = self._named("Return")
        if not self._press([keysym]) and not self._press_remapped(keysym):
            log.warning("the X keymap has no key for U+%04X and no spare keycode; skipped", ord(char))

    def _press_remapped(self, keysym: int) -> bool:
        """Type a keysym the keymap lacks by lending it an unused keycode (what xdotool does).

        The loan outlives the key press by `GIVE_BACK_AFTER`: X clients look the keycode up when they *handle* the
        event, some time later, and one that found the keycode already given back would read nothing."""
        from Xlib import X

        d = self._display
        code = self._borrowed.get(keysym)
        if code is None:
            first = d.display.info.min_keycode
            count = d.display.info.max_keycode - first + 1
            mapping = d.get_keyboard_mapping(first, count)
            lent = set(self._borrowed.values())
            code = next((first + i for i, syms in enumerate(mapping) if not any(syms) and first + i not in lent), None)
            if code is None:
                return False
            d.change_keyboard_mapping(code, [(keysym,) * len(mapping[0])])
            d.sync()
            self._borrowed[keysym] = code
        self._fake(X.KeyPress, code)
        self._fake(X.KeyRelease, code)
        if self._give_back_timer is not None:
            self._give_back_timer.cancel()
        self._give_back_timer = asyncio.get_running_loop().call_later(GIVE_BACK_AFTER, self._give_back)
        return True

    def _give_back(self) -> None:
        """Return the borrowed keycodes to the keymap as they were (unmapped)."""
        self._give_back_timer = None
        if not self._borrowed or self._display is None:
            return
        d = self._display
        width = len(d.get_keyboard_mapping(d.display.info.min_keycode, 1)[0])
        for code in self._borrowed.values():
            d.change_keyboard_mapping(code, [(0,) * width])
        d.sync()
        self._borrowed.clear()

    @staticmethod
    def _named(name: str) -> int:
        from Xlib import XK

        return XK.string_to_keysym(name)

    async def global_action(self, action: str) -> None:
        names = GLOBAL_KEYS.get(action)
        if names is None:
            log.info("%s has no X11 equivalent; ignored", action)
            return
        if not self._press([self._named(n) for n in names]):
            log.warning("the X keymap lacks keys for %s", action)

    async def key(self, key: str) -> None:
        if key in NAMED_KEYSYMS:
            self._press([self._named(NAMED_KEYSYMS[key])])
        else:
            self._type(key)

    async def paste(self, text: str) -> None:
        for char in text:
            self._type(char)
            await asyncio.sleep(0)
