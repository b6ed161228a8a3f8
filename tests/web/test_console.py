"""The operator console in Chromium against a real server with its demo phone: log in with the admin secret, the
phone appears, a web-admin page in a second browser context connects and appears as a viewer without a reload,
"end session" (keyboard only) disconnects that page, which says an operator ended it; a recording (an H.264 MP4
made with PyAV) plays in the console's `<video>`; logging out brings the login back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from playwright.sync_api import Browser, Page

from .conftest import DemoProcess, open_page, screenshot, wait
from .screen import WHERE, login, wait_playing


def write_mp4(path: Path, seconds: float = 2.0, fps: int = 10) -> None:
    """A small H.264 MP4, as a recording is: a moving bar on a grey screen."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for n in range(int(seconds * fps)):
            image = np.full((240, 320, 3), 90, np.uint8)
            image[:, (n * 12) % 300 : (n * 12) % 300 + 20] = (250, 60, 40)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = n
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recordings")
    write_mp4(folder / f"{datetime(2026, 12, 6, 20, 34, tzinfo=UTC):%Y%m%dT%H%M%SZ}-4815162342.mp4")
    return folder


@pytest.fixture(scope="module")
def demo(recordings: Path) -> Iterator[DemoProcess]:
    proc = DemoProcess(with_agent=True, config={"recordings_dir": str(recordings), "record_sessions": True})
    yield proc
    proc.stop()


@pytest.fixture
def console(browser: Browser) -> Iterator[Page]:
    """The operator's page, beside the support person's (`page`)."""
    with open_page(browser, 1200, 900) as pg:
        yield pg


def log_in(console: Page, demo: DemoProcess, secret: str) -> None:
    console.fill("#secret", secret)
    console.press("#secret", "Enter")


def test_console_watches_and_ends_a_session(console: Page, page: Page, demo: DemoProcess) -> None:
    console.goto(f"{demo.base}console/")
    console.wait_for_selector("#login-view", state="visible")
    log_in(console, demo, "not-the-secret")
    console.wait_for_function("() => document.getElementById('login-message').textContent.includes('Refused')")
    assert console.is_hidden("#console-view")
    log_in(console, demo, f"admin-{demo.secret}")
    console.wait_for_selector("#console-view", state="visible")
    # The cookie is HttpOnly: the page's script cannot read it.
    assert "apuppet_console" not in console.evaluate("document.cookie")
    device = console.wait_for_selector("article.device h3")
    assert device.text_content() == "Demo phone"
    assert console.text_content("article.device .viewers-none") == "No viewer."

    login(page, demo)
    wait_playing(page)
    # The viewer appears in the console without a reload (the live stream).
    row = console.wait_for_selector("article.device tr[data-viewer]")
    cells = [c.text_content() for c in row.query_selector_all("td")]
    assert cells[0] == "Support" and cells[1] == "127.0.0.1" and cells[3] in ("WebSocket", "HTTP long poll")
    screenshot(console, "console-live")
    session_tag = row.get_attribute("data-viewer")
    assert session_tag and len(session_tag) == 8

    # End it with the keyboard: focus, Enter, and Enter again to confirm.
    button = f"button[data-key='end:{session_tag}']"
    console.focus(button)
    console.keyboard.press("Enter")
    console.wait_for_function(f"() => document.querySelector(\"{button}\")?.textContent === 'Press again to confirm'")
    console.focus(button)
    console.keyboard.press("Enter")
    console.wait_for_function("() => document.getElementById('notice').textContent.includes('ended')")

    page.wait_for_function("() => document.body.dataset.state === 'closed'", timeout=15_000)
    where = page.evaluate(WHERE)
    assert where["dialog"] == "An operator ended this session.", where
    assert page.text_content("#overlay-title") == "Session ended"
    assert page.evaluate("document.body.dataset.endReason") == "operator"
    # It stays ended (no automatic reconnect), and the console shows no viewer any more.
    console.wait_for_selector("article.device .viewers-none")
    page.wait_for_timeout(2000)
    assert page.evaluate("document.body.dataset.state") == "closed"


PLAYING = "() => { const v = document.getElementById('player'); return v.readyState >= 2 && v.videoWidth > 0; }"
PIXEL = """([x, y]) => { const v = document.getElementById('player'); const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight; const g = c.getContext('2d');
  g.drawImage(v, 0, 0); return Array.from(g.getImageData(x, y, 1, 1).data).slice(0, 3); }"""


def play(console: Page, name: str) -> None:
    button = console.wait_for_selector(f"#recordings-table button[data-play='{name}']")
    button.focus()
    console.keyboard.press("Enter")
    console.wait_for_function(PLAYING)
    assert console.evaluate("document.getElementById('player').error") is None


def test_recordings_play_in_the_console_and_logout_ends_the_login(console: Page, page: Page, demo: DemoProcess) -> None:
    console.goto(f"{demo.base}console/")
    log_in(console, demo, f"admin-{demo.secret}")
    made = "20261206T203400Z-4815162342.mp4"
    console.wait_for_selector(f"#recordings-table button[data-play='{made}']")
    listed = "rows => rows.map(r => r.dataset.recording)"
    before = set(console.eval_on_selector_all("#recordings-table tr[data-recording]", listed))

    # A support session on the demo phone, recorded by the server (record_sessions: true).
    login(page, demo)
    wait_playing(page)
    page.wait_for_timeout(3000)
    page.click("#disconnect")
    page.wait_for_selector("#login-view", state="visible")

    def recorded() -> list[str]:
        """The session's recording once it is complete (closed when the viewer left), clicking Refresh."""
        console.click("#recordings-refresh")
        console.wait_for_timeout(300)
        names = set(console.eval_on_selector_all("#recordings-table tr[data-recording]", listed)) - before
        return [n for n in names if n.split("-", 1)[1] == f"{demo.info['session']}.mp4"]

    # The newest (an earlier test's session on this phone may have completed meanwhile too).
    session = sorted(wait(recorded, timeout=20))[-1:]
    download = console.get_attribute(f"#recordings-table tr[data-recording='{session[0]}'] a", "href")
    assert download is not None and download.endswith("?download=1")

    # The recording of the session plays: the demo phone's picture, decoded by Chromium.
    play(console, session[0])
    width, height = console.evaluate("(v => [v.videoWidth, v.videoHeight])(document.getElementById('player'))")
    assert console.evaluate(PIXEL, [width // 2, height // 2]) != [0, 0, 0]

    # And an MP4 made here plays with the very pixels it holds (grey with a red bar).
    play(console, made)
    console.wait_for_function("() => document.getElementById('player').videoWidth === 320")
    colour = console.evaluate(PIXEL, [300, 200])
    assert all(abs(channel - 90) < 30 for channel in colour), colour

    screenshot(console, "console-recording")
    console.click("#logout")
    console.wait_for_selector("#login-view", state="visible")
    status = console.evaluate("fetch('/console/api/state').then(r => r.status)")
    assert status == 401
    wait(lambda: console.is_hidden("#console-view"))


def test_the_page_says_a_time_limit_ended_its_session(page: Page) -> None:
    # 15 s: the page must be playing before it strikes, also on a loaded machine.
    limited = DemoProcess(with_agent=True, config={"max_session_minutes": 0.25})
    try:
        login(page, limited)
        wait_playing(page)
        page.wait_for_function("() => document.body.dataset.state === 'closed'", timeout=30_000)
        where = page.evaluate(WHERE)
        assert where["dialog"] == "The session reached its time limit of 0.25 minutes.", where
        assert page.evaluate("document.body.dataset.endReason") == "time limit"
    finally:
        limited.stop()
