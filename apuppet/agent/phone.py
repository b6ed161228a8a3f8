"""A virtual phone: the device that the demo agent streams and that tests drive.

It stands in for an Android screen so that the whole system can be tried, and tested, without a phone. Every
command of the grammar has a visible effect in large flat colours, so that a test can check it in *decoded*
video (after lossy H.264) by sampling colours rather than by reading text:

* home screen: three app icons (Counter orange, Notes green, List purple) on a dark blue wallpaper;
* Counter: a big round button; a tap adds one, a long press resets to zero; the count also shows as a row
  of blocks, so a change is visible without OCR;
* Notes: a text field (typed keys and pasted text) and a Copy button that puts the text on the clipboard;
* List: a hundred coloured rows that scroll with vertical swipes;
* Back / Home / Recents (cards of the apps used) / Notifications (a shade over the screen);
* a long press anywhere opens a yellow context bubble; every touch leaves a red ring for a second;
* a key or paste with no text field on screen shows a grey toast at the bottom.

The model is plain state plus `render`; nothing here sleeps or touches I/O. `frame_key` tells a caller
whether a new `render` would differ (state, clock second, touch marks), so it can skip unchanged frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 360, 640
STATUS_BAR = 24
NAV_BAR = 48
LONG_PRESS_MS = 500
MARK_SECONDS = 1.0
TOAST_SECONDS = 1.5

APPS: dict[str, tuple[int, int, int]] = {
    "counter": (243, 156, 18),
    "notes": (39, 174, 96),
    "list": (142, 68, 173),
}
WALLPAPER = (21, 42, 96)
RECENTS_BG = (70, 70, 70)
SHADE_BG = (30, 30, 30)
BUBBLE = (250, 215, 30)
MARK = (230, 30, 30)
TOAST = (50, 50, 50)
LIST_ROWS = 100
ROW_HEIGHT = 48
ICON = 72
ICON_Y = 120
ICON_XS = (36, 144, 252)
COUNTER_CENTER = (180, 330)
COUNTER_RADIUS = 90
NOTES_FIELD = (16, 72, 344, 300)
NOTES_COPY = (16, 316, 170, 364)
NOTES_CLEAR = (190, 316, 344, 364)
SHADE_HEIGHT = 300


@cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font: no dependency on fonts installed on the machine.
    return ImageFont.load_default(size=size)


def row_color(index: int) -> tuple[int, int, int]:
    """A distinct colour per list row, so that scrolling changes what a fixed pixel shows."""
    hue = (index * 37) % 360
    img = Image.new("HSV", (1, 1), (int(hue * 255 / 360), 170, 230)).convert("RGB")
    r, g, b = img.getpixel((0, 0))  # type: ignore[misc]
    return (r, g, b)


@dataclass(slots=True)
class TouchMark:
    x: int
    y: int
    x0: int
    y0: int
    at: float


class Phone:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.width = WIDTH
        self.height = HEIGHT
        self.clock = clock
        self.screen = "home"
        self.overlay: str | None = None  # "recents" | "notifications"
        self.bubble: tuple[int, int] | None = None
        self.recents: list[str] = []
        self.counter = 0
        self.text = ""
        self.caret = 0
        self.scroll = 0
        self.selected_row: int | None = None
        self.clipboard = ""
        self.commands = 0
        self.marks: list[TouchMark] = []
        self.toast: tuple[str, float] | None = None
        self.version = 0
        #: Called with the new text when the phone's own clipboard changes (Copy button), not on paste.
        self.on_clipboard: Callable[[str], None] | None = None

    # -- input ------------------------------------------------------------------------------------------------
    def tap(self, x: int, y: int, duration: int = 50) -> None:
        x, y = self._clamp(x, y)
        self._mark(x, y, x, y)
        if duration >= LONG_PRESS_MS:
            self._long_press(x, y)
            return
        if self.bubble is not None:
            self.bubble = None
            return
        if y >= self.height - NAV_BAR:
            third = self.width // 3
            self.global_action(("back", "home", "recents")[min(2, x // third)])
            return
        if self.overlay == "notifications":
            if y > SHADE_HEIGHT:
                self.overlay = None
            return
        if self.overlay == "recents":
            self._tap_recents(x, y)
            return
        if self.screen == "home":
            for app, icon_x in zip(APPS, ICON_XS, strict=True):
                if icon_x <= x < icon_x + ICON and ICON_Y <= y < ICON_Y + ICON:
                    self._open(app)
        elif self.screen == "counter":
            cx, cy = COUNTER_CENTER
            if (x - cx) ** 2 + (y - cy) ** 2 <= COUNTER_RADIUS**2:
                self.counter += 1
        elif self.screen == "notes":
            if _inside(x, y, NOTES_COPY) and self.text:
                self._set_clipboard(self.text)
            elif _inside(x, y, NOTES_CLEAR):
                self.text, self.caret = "", 0
        elif self.screen == "list":
            top = STATUS_BAR + 48
            if y >= top:
                self.selected_row = (y - top + self.scroll) // ROW_HEIGHT

    def swipe(self, x1: int, y1: int, x2: int, y2: int, duration: int = 300) -> None:
        x1, y1 = self._clamp(x1, y1)
        x2, y2 = self._clamp(x2, y2)
        self._mark(x2, y2, x1, y1)
        self.bubble = None
        dy = y2 - y1
        if self.overlay is None and y1 <= STATUS_BAR + 16 and dy > 40:
            self.overlay = "notifications"
        elif self.overlay == "notifications" and dy < -40:
            self.overlay = None
        elif self.overlay is None and self.screen == "list":
            self.scroll = max(0, min(self._max_scroll(), self.scroll - dy))

    def global_action(self, action: str) -> None:
        self.commands += 1
        self.bubble = None
        if action == "back":
            if self.overlay is not None:
                self.overlay = None
            elif self.screen != "home":
                self.screen = "home"
        elif action == "home":
            self.overlay = None
            self.screen = "home"
        elif action == "recents":
            self.overlay = None if self.overlay == "recents" else "recents"
        elif action == "notifications":
            self.overlay = "notifications"
        self.version += 1

    def key(self, key: str) -> None:
        """Keys edit the Notes field when it is on screen, as a soft keyboard would; elsewhere they do nothing."""
        self.commands += 1
        self.version += 1
        if self.screen != "notes" or self.overlay is not None:
            self._toast(f"Key: {key}")
            return
        if len(key) == 1:
            self._insert(key)
        elif key == "Enter":
            self._insert("\n")
        elif key == "Backspace" and self.caret > 0:
            self.text = self.text[: self.caret - 1] + self.text[self.caret :]
            self.caret -= 1
        elif key == "Delete":
            self.text = self.text[: self.caret] + self.text[self.caret + 1 :]
        elif key == "ArrowLeft":
            self.caret = max(0, self.caret - 1)
        elif key == "ArrowRight":
            self.caret = min(len(self.text), self.caret + 1)
        elif key == "Home":
            self.caret = 0
        elif key == "End":
            self.caret = len(self.text)

    def paste(self, text: str) -> None:
        """The viewer's clipboard arrives: it becomes the phone's clipboard and goes into the focused field."""
        self.commands += 1
        self.clipboard = text
        if self.screen == "notes" and self.overlay is None:
            self._insert(text)
        else:
            self._toast("Clipboard received")
        self.version += 1

    # -- output -----------------------------------------------------------------------------------------------
    def frame_key(self, now: float | None = None) -> tuple[object, ...]:
        now = self.clock() if now is None else now
        marks = tuple(id(m) for m in self.marks if now - m.at < MARK_SECONDS)
        toast = self.toast is not None and now - self.toast[1] < TOAST_SECONDS
        return (self.version, int(now), marks, toast)

    def render(self, now: float | None = None) -> np.ndarray:
        """The screen as an RGB array of shape (height, width, 3)."""
        now = self.clock() if now is None else now
        self.marks = [m for m in self.marks if now - m.at < MARK_SECONDS]
        img = Image.new("RGB", (self.width, self.height), WALLPAPER)
        draw = ImageDraw.Draw(img)
        getattr(self, f"_draw_{self.screen}")(draw)
        if self.overlay == "recents":
            self._draw_recents(draw)
        elif self.overlay == "notifications":
            self._draw_shade(draw, now)
        self._draw_status(draw, now)
        self._draw_nav(draw)
        if self.toast is not None and now - self.toast[1] < TOAST_SECONDS:
            text = self.toast[0][:28]
            width = draw.textlength(text, font=font(16))
            top = self.height - NAV_BAR - 56
            draw.rounded_rectangle(
                ((self.width - width) / 2 - 14, top, (self.width + width) / 2 + 14, top + 32), 16, fill=TOAST
            )
            draw.text(((self.width - width) / 2, top + 7), text, fill=(255, 255, 255), font=font(16))
        if self.bubble is not None:
            bx, by = self.bubble
            bx, by = min(bx, self.width - 150), min(by, self.height - NAV_BAR - 60)
            draw.rounded_rectangle((bx, by, bx + 140, by + 56), 8, fill=BUBBLE)
            draw.text((bx + 12, by + 16), "Long press", fill=(0, 0, 0), font=font(18))
        for m in self.marks:
            if (m.x0, m.y0) != (m.x, m.y):
                draw.line((m.x0, m.y0, m.x, m.y), fill=MARK, width=6)
            draw.ellipse((m.x - 16, m.y - 16, m.x + 16, m.y + 16), outline=(255, 255, 255), width=7)
            draw.ellipse((m.x - 13, m.y - 13, m.x + 13, m.y + 13), outline=MARK, width=5)
        return np.asarray(img)

    # -- internals --------------------------------------------------------------------------------------------
    def _clamp(self, x: int, y: int) -> tuple[int, int]:
        return max(0, min(self.width - 1, x)), max(0, min(self.height - 1, y))

    def _mark(self, x: int, y: int, x0: int, y0: int) -> None:
        self.commands += 1
        self.marks.append(TouchMark(x, y, x0, y0, self.clock()))
        del self.marks[:-8]
        self.version += 1

    def _long_press(self, x: int, y: int) -> None:
        self.bubble = (x, y)
        if self.overlay is None and self.screen == "counter":
            self.counter = 0

    def _open(self, app: str) -> None:
        self.screen = app
        self.overlay = None
        if app in self.recents:
            self.recents.remove(app)
        self.recents.insert(0, app)

    def _tap_recents(self, x: int, y: int) -> None:
        for i, app in enumerate(self.recents):
            top = 80 + i * 150
            if 30 <= x < self.width - 30 and top <= y < top + 130:
                self._open(app)
                return
        self.overlay = None
        self.screen = "home"

    def _toast(self, text: str) -> None:
        """A short message at the bottom, like Android's toasts: input with no field to go to stays visible."""
        self.toast = (text, self.clock())

    def _insert(self, text: str) -> None:
        self.text = self.text[: self.caret] + text + self.text[self.caret :]
        self.caret += len(text)

    def _set_clipboard(self, text: str) -> None:
        self.clipboard = text
        if self.on_clipboard is not None:
            self.on_clipboard(text)

    def _max_scroll(self) -> int:
        visible = self.height - NAV_BAR - STATUS_BAR - 48
        return max(0, LIST_ROWS * ROW_HEIGHT - visible)

    # -- drawing ----------------------------------------------------------------------------------------------
    def _title(self, draw: ImageDraw.ImageDraw, title: str, color: tuple[int, int, int]) -> None:
        draw.rectangle((0, STATUS_BAR, self.width, STATUS_BAR + 48), fill=color)
        draw.text((16, STATUS_BAR + 12), title, fill=(255, 255, 255), font=font(22))

    def _draw_home(self, draw: ImageDraw.ImageDraw) -> None:
        draw.text((16, 48), "apuppet demo phone", fill=(200, 210, 240), font=font(20))
        for (app, color), x in zip(APPS.items(), ICON_XS, strict=True):
            draw.rounded_rectangle((x, ICON_Y, x + ICON, ICON_Y + ICON), 16, fill=color)
            label = app.capitalize()
            width = draw.textlength(label, font=font(16))
            draw.text((x + (ICON - width) / 2, ICON_Y + ICON + 8), label, fill=(255, 255, 255), font=font(16))

    def _draw_counter(self, draw: ImageDraw.ImageDraw) -> None:
        draw.rectangle((0, 0, self.width, self.height), fill=(250, 240, 225))
        self._title(draw, "Counter", APPS["counter"])
        text = str(self.counter)
        width = draw.textlength(text, font=font(56))
        draw.text(((self.width - width) / 2, 100), text, fill=(60, 40, 10), font=font(56))
        cx, cy = COUNTER_CENTER
        r = COUNTER_RADIUS
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=APPS["counter"])
        draw.text((cx - 14, cy - 30), "+", fill=(255, 255, 255), font=font(56))
        # The count in unary blocks (ten per row): visible in decoded video without reading digits.
        for i in range(min(self.counter, 40)):
            x = 30 + (i % 10) * 30
            y = 450 + (i // 10) * 30
            draw.rectangle((x, y, x + 22, y + 22), fill=(200, 90, 0))

    def _draw_notes(self, draw: ImageDraw.ImageDraw) -> None:
        draw.rectangle((0, 0, self.width, self.height), fill=(225, 245, 230))
        self._title(draw, "Notes", APPS["notes"])
        draw.rectangle(NOTES_FIELD, fill=(255, 255, 255), outline=(39, 174, 96), width=2)
        shown = self.text[: self.caret] + "|" + self.text[self.caret :]
        lines = _wrap(shown, 26)[-9:]
        for i, line in enumerate(lines):
            draw.text((NOTES_FIELD[0] + 10, NOTES_FIELD[1] + 8 + i * 24), line, fill=(0, 0, 0), font=font(20))
        for box, label in ((NOTES_COPY, "Copy"), (NOTES_CLEAR, "Clear")):
            draw.rounded_rectangle(box, 8, fill=APPS["notes"])
            draw.text((box[0] + 50, box[1] + 12), label, fill=(255, 255, 255), font=font(20))
        if self.clipboard:
            draw.text((16, 380), f"Clipboard: {self.clipboard[:24]}", fill=(60, 60, 60), font=font(16))

    def _draw_list(self, draw: ImageDraw.ImageDraw) -> None:
        draw.rectangle((0, 0, self.width, self.height), fill=(245, 240, 250))
        top = STATUS_BAR + 48
        first = self.scroll // ROW_HEIGHT
        for index in range(first, min(LIST_ROWS, first + (self.height - top) // ROW_HEIGHT + 2)):
            y = top + index * ROW_HEIGHT - self.scroll
            fill = (255, 255, 200) if index == self.selected_row else (245, 240, 250)
            draw.rectangle((0, y, self.width, y + ROW_HEIGHT - 1), fill=fill)
            draw.rectangle((0, y, 64, y + ROW_HEIGHT - 2), fill=row_color(index))
            draw.text((80, y + 12), f"Item {index + 1}", fill=(40, 20, 60), font=font(20))
        self._title(draw, "List", APPS["list"])

    def _draw_recents(self, draw: ImageDraw.ImageDraw) -> None:
        draw.rectangle((0, 0, self.width, self.height), fill=RECENTS_BG)
        if not self.recents:
            draw.text((90, 300), "No recent items", fill=(230, 230, 230), font=font(20))
        for i, app in enumerate(self.recents):
            top = 80 + i * 150
            draw.rounded_rectangle((30, top, self.width - 30, top + 130), 12, fill=APPS[app])
            draw.text((50, top + 50), app.capitalize(), fill=(255, 255, 255), font=font(24))

    def _draw_shade(self, draw: ImageDraw.ImageDraw, now: float) -> None:
        draw.rectangle((0, 0, self.width, SHADE_HEIGHT), fill=SHADE_BG)
        draw.text((16, 40), time.strftime("%A %d %B", time.localtime(now)), fill=(220, 220, 220), font=font(18))
        draw.rounded_rectangle((12, 80, self.width - 12, 180), 10, fill=(60, 60, 60))
        draw.text((28, 96), "apuppet demo", fill=(255, 255, 255), font=font(20))
        draw.text((28, 128), f"{self.commands} commands received", fill=(200, 200, 200), font=font(16))

    def _draw_status(self, draw: ImageDraw.ImageDraw, now: float) -> None:
        draw.rectangle((0, 0, self.width, STATUS_BAR - 1), fill=(0, 0, 0))
        draw.text((8, 3), time.strftime("%H:%M:%S", time.localtime(now)), fill=(255, 255, 255), font=font(16))
        draw.rectangle((self.width - 40, 6, self.width - 12, 18), outline=(255, 255, 255), width=2)
        draw.rectangle((self.width - 36, 9, self.width - 20, 15), fill=(255, 255, 255))

    def _draw_nav(self, draw: ImageDraw.ImageDraw) -> None:
        top = self.height - NAV_BAR
        draw.rectangle((0, top, self.width, self.height), fill=(0, 0, 0))
        third = self.width // 3
        cy = top + NAV_BAR // 2
        cx = third // 2
        draw.polygon([(cx + 10, cy - 12), (cx + 10, cy + 12), (cx - 12, cy)], outline=(255, 255, 255), width=3)
        cx += third
        draw.ellipse((cx - 12, cy - 12, cx + 12, cy + 12), outline=(255, 255, 255), width=3)
        cx += third
        draw.rectangle((cx - 11, cy - 11, cx + 11, cy + 11), outline=(255, 255, 255), width=3)


def _inside(x: int, y: int, box: tuple[int, int, int, int]) -> bool:
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        while len(paragraph) > width:
            lines.append(paragraph[:width])
            paragraph = paragraph[width:]
        lines.append(paragraph)
    return lines
