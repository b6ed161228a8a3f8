"""Reading and driving the remote screen of a logged-in page: pixels come from the <video> through a canvas
(what the browser decoded, not what the phone drew), input goes through real mouse/touch events at the place
where the page shows a given video pixel."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from .conftest import DemoProcess

Color = tuple[int, int, int]

READ = """([x, y, w, h]) => {
  const v = document.getElementById('video');
  if (!v.videoWidth) return null;
  const c = window.__probe || (window.__probe = document.createElement('canvas'));
  c.width = v.videoWidth; c.height = v.videoHeight;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(v, 0, 0);
  return Array.from(ctx.getImageData(x, y, w, h).data);
}"""

WHERE = """() => ({
  state: document.body.dataset.state, error: document.body.dataset.error,
  login: document.getElementById('login-view').hidden ? null : document.getElementById('login-message').textContent,
  dialog: document.getElementById('overlay').hidden ? null : document.getElementById('overlay-text').textContent,
})"""

STAGE_POINT = """async ([x, y]) => {
  const g = await import('./js/geometry.js');
  const l = window.apuppet.layout();
  const r = window.apuppet.ui.stage.getBoundingClientRect();
  const p = g.toStage(l, x, y);
  return [r.left + p.x, r.top + p.y];
}"""


def login(page: Page, demo: DemoProcess, password: str | None = None, **params: str) -> None:
    pin = demo.info["password"] if password is None else password
    page.goto(demo.url(session=demo.info["session"], pin=pin, **params))
    page.click("#connect")


def wait_playing(page: Page, timeout: float = 30_000) -> None:
    """On a timeout, the failure says where the page stood (a refused login, a dialog), not only how long."""
    try:
        page.wait_for_selector("#remote-view", state="visible", timeout=timeout)
        page.wait_for_function(
            "() => { const v = document.getElementById('video'); return v.videoWidth > 0 && v.readyState >= 2; }",
            timeout=timeout,
        )
    except PlaywrightTimeoutError as exc:
        raise AssertionError(f"no picture in {timeout / 1000:.0f} s; the page: {page.evaluate(WHERE)}") from exc


def region(page: Page, x: int, y: int, w: int = 1, h: int = 1) -> list[Color]:
    data = page.evaluate(READ, [x, y, w, h])
    assert data is not None, "no video"
    return [tuple(data[i : i + 3]) for i in range(0, len(data), 4)]  # type: ignore[misc]


def pixel(page: Page, x: int, y: int) -> Color:
    """The mean colour of the 5x5 block around (x, y): robust to H.264 ringing at edges."""
    data = page.evaluate(READ, [max(0, x - 2), max(0, y - 2), 5, 5])
    assert data is not None, "no video"
    return mean_color(data)


def mean_color(data: list[int]) -> Color:
    """The mean of RGBA pixels read from the video."""
    block = [data[i : i + 3] for i in range(0, len(data), 4)]
    return tuple(round(sum(c[i] for c in block) / len(block)) for i in range(3))  # type: ignore[return-value]


def near(color: Color, reference: Color, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(color, reference, strict=True))


def wait_color(page: Page, x: int, y: int, want: Any, timeout: float = 15.0) -> Color:
    """Poll the video until the pixel satisfies `want` (a colour to be near, or a predicate)."""
    check = want if callable(want) else (lambda c: near(c, want))
    deadline = time.monotonic() + timeout
    color = None
    while True:
        # After a reconnect the new track has no frame for a moment (and the video may reset between two calls
        # into the page): keep polling.
        data = page.evaluate(READ, [max(0, x - 2), max(0, y - 2), 5, 5])
        if data is not None:
            color = mean_color(data)
            if check(color):
                return color
        if time.monotonic() > deadline:
            raise AssertionError(f"pixel ({x},{y}) is {color}, wanted {want}")
        time.sleep(0.05)


def page_point(page: Page, x: int, y: int) -> tuple[float, float]:
    px, py = page.evaluate(STAGE_POINT, [x, y])
    return px, py


def tap(page: Page, x: int, y: int, hold_ms: int = 0) -> None:
    px, py = page_point(page, x, y)
    page.mouse.move(px, py)
    page.mouse.down()
    if hold_ms:
        page.wait_for_timeout(hold_ms)
    page.mouse.up()


def drag(page: Page, start: tuple[int, int], end: tuple[int, int], steps: int = 12) -> None:
    x1, y1 = page_point(page, *start)
    x2, y2 = page_point(page, *end)
    page.mouse.move(x1, y1)
    page.mouse.down()
    page.mouse.move(x2, y2, steps=steps)
    page.mouse.up()


def frames(page: Page) -> int:
    return int(page.evaluate("() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames"))
