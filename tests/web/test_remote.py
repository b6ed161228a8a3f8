"""The web-admin end to end in Chromium: the real server, a demo phone agent (it plays the Android device, which
cannot run here, speaking the aPuppet agent's protocol), WebRTC video decoded by the browser and read back from
the <video> through a canvas. Screenshots land in test-artifacts/web/."""

from __future__ import annotations

import colorsys
import io
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Route, WebSocketRoute

from apuppet.agent import phone

from .conftest import DemoProcess, screenshot, wait
from .screen import drag, frames, login, near, page_point, pixel, region, tap, wait_color, wait_playing

COUNTER_ICON = (phone.ICON_XS[0] + phone.ICON // 2, phone.ICON_Y + phone.ICON // 2)
NOTES_ICON = (phone.ICON_XS[1] + phone.ICON // 2, phone.ICON_Y + phone.ICON // 2)
LIST_ICON = (phone.ICON_XS[2] + phone.ICON // 2, phone.ICON_Y + phone.ICON // 2)
FIRST_BLOCK = (41, 461)  # the first "count" block of the Counter app
COUNTER_BG = (250, 240, 225)
NOTES_BG = (225, 245, 230)


def centre(box: tuple[int, int, int, int]) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


@pytest.fixture
def remote(page: Page, demo: DemoProcess) -> Iterator[Page]:
    """A page logged in to the demo phone, video playing, the phone back on its home screen."""
    login(page, demo)
    wait_playing(page)
    page.click("[data-command=home]")
    wait_color(page, *COUNTER_ICON, phone.APPS["counter"])
    yield page
    leave(page)


def leave(page: Page) -> None:
    """Leave the room before the browser context goes, so that the next test is not told the device is busy."""
    page.evaluate("() => window.apuppet && window.apuppet.remote.disconnect()")


def hue(color: tuple[int, int, int]) -> float:
    return colorsys.rgb_to_hsv(*(c / 255 for c in color))[0] * 360


def rows_scrolled(before: tuple[int, int, int], after: tuple[int, int, int]) -> int:
    """How many rows the list moved, from the swatch hues: row i has hue 37*i degrees (the demo phone)."""
    turn = (hue(after) - hue(before)) % 360
    return min(range(1, 12), key=lambda n: abs((37 * n) % 360 - turn))


def dark_pixels(page: Page, box: tuple[int, int, int, int]) -> int:
    x0, y0, x1, y1 = box
    return sum(1 for c in region(page, x0, y0, x1 - x0, y1 - y0) if sum(c) < 300)


def test_login_and_the_video_plays(remote: Page, demo: DemoProcess) -> None:
    size = remote.evaluate("() => [video.videoWidth, video.videoHeight]")
    assert size == [phone.WIDTH, phone.HEIGHT]
    first = frames(remote)
    wait(lambda: frames(remote) >= first + 2, timeout=15)  # the clock in the status bar ticks every second
    assert remote.inner_text("#device-name") == "Demo phone"
    wait(lambda: remote.inner_text("#st-rtt").endswith("ms"), timeout=10)
    wait(lambda: remote.inner_text("#st-resolution") == f"{phone.WIDTH}×{phone.HEIGHT}")
    wait(lambda: remote.inner_text("#st-fps") not in ("–", ""), timeout=10)
    assert remote.inner_text("#st-state") == "Connected"
    assert remote.inner_text("#st-transport") == "WebSocket"
    # The password left the address bar once read.
    assert "pin=" not in remote.url
    screenshot(remote, "remote-desktop")


def test_tap_and_long_press_change_the_picture(remote: Page) -> None:
    tap(remote, *COUNTER_ICON)
    wait_color(remote, 20, 200, COUNTER_BG)
    tap(remote, *phone.COUNTER_CENTER)
    wait_color(remote, *FIRST_BLOCK, (200, 90, 0))  # count >= 1: its first block is drawn
    screenshot(remote, "counter-after-tap")
    # Holding the button: the hold time goes to the device, which resets the count and shows its bubble.
    tap(remote, *phone.COUNTER_CENTER, hold_ms=900)
    wait_color(remote, *FIRST_BLOCK, COUNTER_BG)
    wait_color(remote, 305, 338, phone.BUBBLE)
    screenshot(remote, "counter-after-long-press")


def test_swipe_scrolls_the_list_and_back_returns(remote: Page) -> None:
    tap(remote, *LIST_ICON)
    wait_color(remote, 300, 40, phone.APPS["list"])  # the List title bar
    probe = (32, 300)
    before = wait_color(remote, *probe, lambda c: not near(c, phone.APPS["list"]))
    drag(remote, (200, 520), (200, 220))
    after = wait_color(remote, *probe, lambda c: not near(c, before, 25))
    screenshot(remote, "list-after-swipe")
    # A 300 px drag in video pixels scrolls the list by 300 px: 6.25 rows of 48 px.
    assert rows_scrolled(before, after) in (6, 7)
    remote.click("[data-command=back]")
    wait_color(remote, *COUNTER_ICON, phone.APPS["counter"])


def test_typed_and_pasted_text_appear_on_the_phone(remote: Page) -> None:
    tap(remote, *NOTES_ICON)
    wait_color(remote, 20, 500, NOTES_BG)
    tap(remote, *centre(phone.NOTES_CLEAR))
    line = (phone.NOTES_FIELD[0] + 8, phone.NOTES_FIELD[1] + 6, phone.NOTES_FIELD[2] - 8, phone.NOTES_FIELD[1] + 32)
    wait(lambda: dark_pixels(remote, line) < 40)
    empty = dark_pixels(remote, line)
    remote.focus("#stage")
    remote.keyboard.type("Hello, 100%")
    wait(lambda: dark_pixels(remote, line) > empty + 150)
    full = dark_pixels(remote, line)
    for _ in range(4):
        remote.keyboard.press("Backspace")
    wait(lambda: dark_pixels(remote, line) < full - 40)  # " 100%" lost four characters
    remote.keyboard.type(" 100%")
    wait(lambda: dark_pixels(remote, line) > full - 20)
    typed = dark_pixels(remote, line)
    remote.fill("#text-input", " a,b%c")
    remote.click("#text-form button")
    wait(lambda: dark_pixels(remote, line) > typed + 60)
    screenshot(remote, "notes-typed")


def test_device_clipboard_reaches_the_host(browser: Browser, demo: DemoProcess) -> None:
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=demo.base.rstrip("/"))
    page = context.new_page()
    try:
        login(page, demo)
        wait_playing(page)
        page.click("[data-command=home]")
        wait_color(page, *COUNTER_ICON, phone.APPS["counter"])
        tap(page, *NOTES_ICON)
        wait_color(page, 20, 500, NOTES_BG)
        tap(page, *centre(phone.NOTES_CLEAR))
        page.fill("#text-input", "copy me, 50%")
        page.click("#text-form button")
        page.focus("#stage")
        page.wait_for_timeout(300)
        tap(page, *centre(phone.NOTES_COPY))
        wait(lambda: page.evaluate("() => navigator.clipboard.readText()") == "copy me, 50%")
        leave(page)
    finally:
        context.close()


def test_notifications_button_and_ctrl_v_paste(remote: Page) -> None:
    remote.click("[data-command=notifications]")
    wait_color(remote, 300, 250, phone.SHADE_BG)
    remote.click("[data-command=back]")
    wait_color(remote, *COUNTER_ICON, phone.APPS["counter"])
    tap(remote, *NOTES_ICON)
    wait_color(remote, 20, 500, NOTES_BG)
    tap(remote, *centre(phone.NOTES_CLEAR))
    line = (phone.NOTES_FIELD[0] + 8, phone.NOTES_FIELD[1] + 6, phone.NOTES_FIELD[2] - 8, phone.NOTES_FIELD[1] + 32)
    wait(lambda: dark_pixels(remote, line) < 40)
    empty = dark_pixels(remote, line)
    # What the browser fires on Ctrl+V with the screen focused (a synthetic event: headless has no OS clipboard).
    remote.evaluate(
        """() => { const data = new DataTransfer(); data.setData('text/plain', 'pasted, 1%');
           const stage = document.getElementById('stage'); stage.focus();
           const paste = new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true });
           stage.dispatchEvent(paste); }"""
    )
    wait(lambda: dark_pixels(remote, line) > empty + 100)


def test_fullscreen_button(remote: Page) -> None:
    remote.click("#fullscreen")
    remote.wait_for_function("() => document.fullscreenElement && document.fullscreenElement.id === 'remote-view'")
    remote.click("#fullscreen")
    remote.wait_for_function("() => !document.fullscreenElement")


def test_screenshot_button_saves_the_frame_as_png(remote: Page) -> None:
    with remote.expect_download() as download:
        remote.click("#screenshot")
    data = download.value.path().read_bytes()
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == (phone.WIDTH, phone.HEIGHT)
    assert download.value.suggested_filename.endswith(".png")


def test_rotated_view_still_taps_the_right_pixel(remote: Page) -> None:
    remote.click("#rotate")
    wait(lambda: remote.evaluate("() => window.apuppet.layout().rotation") == 90)
    screenshot(remote, "rotated-view")
    tap(remote, *COUNTER_ICON)
    wait_color(remote, 20, 200, COUNTER_BG)


def test_mouse_wheel_scrolls(remote: Page) -> None:
    tap(remote, *LIST_ICON)
    wait_color(remote, 300, 40, phone.APPS["list"])
    probe = (32, 300)
    before = wait_color(remote, *probe, lambda c: not near(c, phone.APPS["list"]))
    x, y = page_point(remote, 200, 400)
    remote.mouse.move(x, y)
    remote.mouse.wheel(0, 150)
    wait_color(remote, *probe, lambda c: not near(c, before, 25))


def test_right_click_is_back(remote: Page) -> None:
    tap(remote, *LIST_ICON)
    wait_color(remote, 300, 40, phone.APPS["list"])
    box = remote.locator("#stage").bounding_box()
    assert box is not None
    remote.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, button="right")
    wait_color(remote, *COUNTER_ICON, phone.APPS["counter"])


def test_wrong_password_and_unknown_session_are_explained(page: Page, demo: DemoProcess) -> None:
    login(page, demo, password="not-it")
    page.wait_for_function("() => document.body.dataset.error")
    assert page.evaluate("() => document.body.dataset.error") == "wrong-password"
    assert "Wrong password" in page.inner_text("#login-message")
    screenshot(page, "wrong-password")
    page.fill("#session-id", "00000000")
    page.fill("#password", "1234")
    page.click("#connect")
    page.wait_for_function("() => document.body.dataset.error === 'unknown-session'")
    assert "no session 00000000" in page.inner_text("#login-message")


def test_unreachable_server_is_explained(page: Page) -> None:
    gone = DemoProcess(with_agent=False)
    page.goto(gone.url(session="12345678", pin="1234"))
    gone.stop()  # the page is loaded, then its server goes away
    page.click("#connect")
    page.wait_for_function("() => document.body.dataset.error === 'unreachable'", timeout=30_000)
    assert "cannot be reached" in page.inner_text("#login-message")
    screenshot(page, "unreachable")


def test_second_viewer_is_told_the_device_is_busy(remote: Page, browser: Browser, demo: DemoProcess) -> None:
    context = browser.new_context()
    other = context.new_page()
    try:
        login(other, demo)
        other.wait_for_function("() => document.body.dataset.error === 'busy'")
        assert "busy" in other.inner_text("#login-message")
        assert other.is_visible("#connect-anyway")
        screenshot(other, "busy")
        other.click("#connect-anyway")
        wait_playing(other)
        leave(other)
    finally:
        context.close()


def test_reconnects_after_a_network_hiccup(remote: Page, demo: DemoProcess) -> None:
    sessions = demo.metric("apuppet_sessions")
    # Drop the signalling connection under the page, as a flaky Wi-Fi would: the server destroys the session.
    remote.evaluate("() => window.apuppet.remote.link.janus.transport.ws.close()")
    remote.wait_for_function("() => document.body.dataset.state === 'reconnecting'")
    remote.wait_for_function("() => document.body.dataset.state === 'connected'", timeout=30_000)
    assert remote.evaluate("() => window.apuppet.remote.reconnects") >= 1
    wait_playing(remote)
    tap(remote, *COUNTER_ICON)
    wait_color(remote, 20, 200, COUNTER_BG)
    first = frames(remote)
    wait(lambda: frames(remote) >= first + 2, timeout=15)
    wait(lambda: demo.metric("apuppet_sessions") <= sessions)  # the old session is gone, not leaked


def test_keeps_retrying_while_the_server_is_unreachable(remote: Page, demo: DemoProcess) -> None:
    blocked: list[str] = []

    def refuse_socket(ws: WebSocketRoute) -> None:
        blocked.append(ws.url)
        ws.close()

    def refuse_http(route: Route) -> None:
        blocked.append(route.request.url)
        route.abort()

    remote.route_web_socket("**/janus", refuse_socket)
    remote.route("**/janus**", refuse_http)
    remote.evaluate("() => window.apuppet.remote.link.janus.transport.ws.close()")
    remote.wait_for_function("() => window.apuppet.remote.reconnects >= 3", timeout=30_000)
    assert remote.evaluate("() => document.body.dataset.state") == "reconnecting"
    assert "attempt" in remote.inner_text("#overlay-text")
    screenshot(remote, "reconnecting")
    remote.unroute_all()
    remote.route_web_socket("**/janus", lambda ws: ws.connect_to_server())
    remote.wait_for_function("() => document.body.dataset.state === 'connected'", timeout=30_000)
    wait_playing(remote)
    tap(remote, *COUNTER_ICON)
    wait_color(remote, 20, 200, COUNTER_BG)
    assert blocked


def test_disconnect_returns_to_the_login_and_frees_the_session(remote: Page, demo: DemoProcess) -> None:
    sessions = demo.metric("apuppet_sessions")
    remote.click("#disconnect")
    remote.wait_for_selector("#login-view", state="visible")
    wait(lambda: demo.metric("apuppet_sessions") <= sessions - 1)


def test_phone_layout(browser: Browser, demo: DemoProcess) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(demo.url(session=demo.info["session"], pin=demo.info["password"]))
        screenshot(page, "phone-login")
        page.click("#connect")
        wait_playing(page)
        # The picture stays where it is when the status bar's figures arrive, a second or two in (a bar that
        # wrapped then shrank it, and a finger aimed before landed 11 px lower after: the bubble missed the probe).
        box = page.locator("#stage").bounding_box()
        figures = ("#st-rtt", "#st-bitrate", "#st-fps")
        wait(lambda: all(page.inner_text(f) not in ("–", "") for f in figures), timeout=10)
        assert page.locator("#stage").bounding_box() == box
        page.click("[data-command=home]")
        wait_color(page, *COUNTER_ICON, phone.APPS["counter"])
        # A finger tap: touch events, not a mouse.
        page.touchscreen.tap(*page_point(page, *COUNTER_ICON))
        wait_color(page, 20, 200, COUNTER_BG)
        # A finger held on the button: a long press (the count resets), and not Back (we stay in the app).
        cx, cy = page_point(page, *phone.COUNTER_CENTER)
        page.touchscreen.tap(cx, cy)
        wait_color(page, *FIRST_BLOCK, (200, 90, 0))
        cdp = context.new_cdp_session(page)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": cx, "y": cy}]})
        page.wait_for_timeout(900)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        wait_color(page, *FIRST_BLOCK, COUNTER_BG)
        wait_color(page, 305, 338, phone.BUBBLE)
        assert near(pixel(page, 20, 200), COUNTER_BG)
        box = page.locator("#stage").bounding_box()
        assert box is not None and box["width"] <= 390
        screenshot(page, "phone-remote")
        leave(page)
    finally:
        context.close()


def test_session_closed_when_the_device_goes_away(browser: Browser) -> None:
    own = DemoProcess(with_agent=True)
    context = browser.new_context()
    page = context.new_page()
    try:
        login(page, own)
        wait_playing(page)
        before = own.metric("apuppet_sessions")
        own.stop_phone()  # the phone disconnects; the server stays up
        page.wait_for_function("() => ['closed', 'device-left'].includes(document.body.dataset.state)", timeout=30_000)
        assert page.is_visible("#overlay")
        title = page.inner_text("#overlay-title")
        assert title in ("Session closed", "The device left the session")
        screenshot(page, "session-ended")
        # Nothing of the page's is left on the server either.
        wait(lambda: own.metric("apuppet_sessions") <= before - 2)
        page.click("#overlay-retry")  # the session is really gone: say so
        page.wait_for_function("() => document.getElementById('overlay-title').textContent === 'Could not connect'")
        assert "There is no session" in page.inner_text("#overlay-text")
    finally:
        context.close()
        own.stop()


def test_long_poll_transport_drives_the_phone_too(page: Page, demo: DemoProcess) -> None:
    login(page, demo, transport="http")
    wait_playing(page)
    assert page.inner_text("#st-transport") == "HTTP long poll"
    page.click("[data-command=home]")
    wait_color(page, *COUNTER_ICON, phone.APPS["counter"])
    tap(page, *COUNTER_ICON)
    wait_color(page, 20, 200, COUNTER_BG)
    leave(page)


def test_the_link_printed_by_apuppet_demo_opens_ready_to_connect(page: Page) -> None:
    """The newcomer's path: `apuppet demo`, open the printed link, press Connect."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "apuppet", "demo", "--json", "--no-qr"], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, "apuppet demo printed nothing"
        info = json.loads(line)
        page.goto(info["url"])
        assert page.input_value("#session-id") == info["session"]
        page.click("#connect")
        wait_playing(page)
        assert page.evaluate("() => video.videoWidth") == phone.WIDTH
        leave(page)
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()


def test_controls_have_labels_and_take_keyboard_focus(page: Page, demo: DemoProcess) -> None:
    page.goto(demo.url())
    page.get_by_label("Session ID").fill(demo.info["session"])
    page.get_by_label("Password", exact=True).fill(demo.info["password"])
    page.get_by_label("Password", exact=True).press("Enter")
    wait_playing(page)
    for name in ("Back", "Home", "Recent apps", "Notifications", "Rotate the view", "Save a screenshot"):
        assert page.get_by_role("button", name=name).is_visible()
    assert page.get_by_role("application").is_visible()  # the screen, with its instructions as its name
    # Tab reaches the screen and the device buttons; keys typed on a button are not sent to the device.
    page.get_by_role("button", name="Disconnect").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "stage"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.dataset.command") == "notifications"
    leave(page)


def test_connect_disconnect_cycles_leave_nothing_behind(page: Page, demo: DemoProcess) -> None:
    # Count the page's peer connections that were never closed.
    page.add_init_script(
        """(() => { const Base = window.RTCPeerConnection; window.__openPeers = 0;
           window.RTCPeerConnection = class extends Base {
             constructor(...a) { super(...a); window.__openPeers++; this.__open = true; }
             close() { if (this.__open) { this.__open = false; window.__openPeers--; } super.close(); } }; })()"""
    )
    page.goto(demo.url())
    baseline = demo.metric("apuppet_sessions")
    for _ in range(10):
        page.evaluate(
            "async ([s, p]) => { const r = window.apuppet.remote; await r.connect(s, p); await r.disconnect(); }",
            [demo.info["session"], demo.info["password"]],
        )
    assert page.evaluate("() => window.__openPeers") == 0
    wait(lambda: demo.metric("apuppet_sessions") <= baseline)
    # And the device still serves the next viewer.
    login(page, demo)
    wait_playing(page)
    leave(page)


def test_long_poll_page_recovers_when_its_session_is_lost(page: Page, demo: DemoProcess) -> None:
    """Over HTTP the server may drop the session (a laptop that slept past the session timeout): the page's
    next poll learns it and the page builds a new one."""
    login(page, demo, transport="http")
    wait_playing(page)
    session_id = page.evaluate("() => window.apuppet.remote.link.janus.id")
    body = json.dumps({"janus": "destroy", "transaction": "t1", "apisecret": demo.secret}).encode()
    request = urllib.request.Request(
        f"{demo.base}janus/{session_id}", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["janus"] == "success"
    page.wait_for_function(
        f"() => document.body.dataset.state === 'connected' && window.apuppet.remote.link.janus.id !== {session_id}",
        timeout=30_000,
    )
    wait_playing(page)
    page.click("[data-command=home]")
    wait_color(page, *COUNTER_ICON, phone.APPS["counter"])
    leave(page)


@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_closing_the_tab_ends_the_session_at_once(browser: Browser, demo: DemoProcess, transport: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        login(page, demo, transport=transport)
        wait_playing(page)
        during = demo.metric("apuppet_sessions")
        page.close()  # pagehide: a closing socket, or a sendBeacon `destroy` over HTTP
        wait(lambda: demo.metric("apuppet_sessions") <= during - 1, timeout=5)  # not the 60 s session timeout
    finally:
        context.close()


def test_device_left_when_the_phone_drops_off(browser: Browser) -> None:
    own = DemoProcess(with_agent=True)
    context = browser.new_context()
    page = context.new_page()
    try:
        login(page, own)
        wait_playing(page)
        own.cut_phone()  # the phone's peer connection dies; the room stays
        page.wait_for_function("() => document.body.dataset.state === 'device-left'", timeout=30_000)
        assert page.inner_text("#overlay-title") == "The device left the session"
        screenshot(page, "device-left")
        # The dialog sits on the picture: its buttons work by mouse and keyboard, not as gestures or keys.
        assert page.evaluate("() => document.activeElement.id") == "overlay-retry"
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        page.wait_for_selector("#login-view", state="visible")
    finally:
        context.close()
        own.stop()


def test_janus_slowlink_is_shown(page: Page, demo: DemoProcess) -> None:
    """Real Janus reports video packet loss as `slowlink` (apuppet's server may not): the page says so."""
    sockets: list[WebSocketRoute] = []

    def relay(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket("**/janus", relay)
    login(page, demo)
    wait_playing(page)
    handle = page.evaluate("() => window.apuppet.remote.link.streaming.id")
    session = page.evaluate("() => window.apuppet.remote.link.janus.id")
    slowlink = {"janus": "slowlink", "session_id": session, "sender": handle, "uplink": False, "lost": 42}
    sockets[-1].send(json.dumps(slowlink))
    page.wait_for_selector(".toast.warn")
    assert "video packets are being lost (42)" in page.inner_text(".toast.warn")
    leave(page)


def test_page_needs_no_api_secret_and_a_wrong_one_is_explained(page: Page, demo: DemoProcess) -> None:
    # The Android app's link carries no API secret, and the page needs none: it is a viewer session, which
    # reaches this device with its password and can do nothing else.
    page.goto(f"{demo.base}web-admin/?session={demo.info['session']}&pin={demo.info['password']}")
    page.click("#connect")
    wait_playing(page)
    leave(page)
    # A wrong secret is still refused (403) and the page says where to fix it.
    page.goto(demo.url(session=demo.info["session"], pin=demo.info["password"]) + "&apisecret=wrong")
    page.click("#connect")
    page.wait_for_function("() => document.body.dataset.error === 'secret'")
    assert page.evaluate("() => document.getElementById('advanced').open")
    assert page.evaluate("() => document.activeElement.id") == "api-secret"
    page.keyboard.type(demo.secret)
    page.keyboard.press("Enter")
    wait_playing(page)
    leave(page)
