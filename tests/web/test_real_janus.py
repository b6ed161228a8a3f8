"""The page against the real Janus gateway (Debian's `janus` 1.x, configured as aPuppet's Ansible does: HTTP
transport, textroom and streaming with string ids), with the demo phone agent connected to that Janus.

This is the compatibility check from the other side: the page must work with an aPuppet server, which is
unmodified Janus. The page is served to the browser by Playwright on Janus' own origin (Janus does not serve
files), so the page's same-origin `/janus` calls reach Janus; Janus' HTTP port has no WebSocket, so the page
also shows its fallback to long poll here.
"""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route

from apuppet.agent import phone

from .conftest import DemoProcess, free_port, screenshot
from .modules import STATIC
from .screen import tap, wait_color, wait_playing

JANUS = shutil.which("janus")
LIBS = sorted(glob.glob("/usr/lib/*/janus"))
pytestmark = pytest.mark.skipif(not (JANUS and LIBS), reason="the Janus gateway is not installed")
SECRET = "janus-web-secret"
COUNTER_ICON = (phone.ICON_XS[0] + phone.ICON // 2, phone.ICON_Y + phone.ICON // 2)


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("janus")
    port = free_port()
    lib = LIBS[0]
    keep = {"libjanus_textroom.so", "libjanus_streaming.so"}
    plugins = ",".join(sorted({Path(p).name for p in glob.glob(f"{lib}/plugins/*.so")} - keep))
    transports = ",".join(sorted({Path(p).name for p in glob.glob(f"{lib}/transports/*.so")} - {"libjanus_http.so"}))
    (folder / "janus.jcfg").write_text(
        f'general: {{ configs_folder = "{folder}" plugins_folder = "{lib}/plugins" '
        f'transports_folder = "{lib}/transports" events_folder = "{lib}/events" loggers_folder = "{lib}/loggers" '
        f'debug_level = 3 api_secret = "{SECRET}" }}\n'
        f'plugins: {{ disable = "{plugins}" }}\ntransports: {{ disable = "{transports}" }}\n'
        "events: { broadcast = false }\n"
    )
    (folder / "janus.plugin.textroom.jcfg").write_text('general: { json = "indented" string_ids = true }\n')
    (folder / "janus.plugin.streaming.jcfg").write_text("general: { string_ids = true }\n")
    (folder / "janus.transport.http.jcfg").write_text(
        f'general: {{ json = "indented" base_path = "/janus" http = true port = {port} ip = "127.0.0.1" '
        "https = false }\nadmin: { admin_http = false }\n"
    )
    proc = subprocess.Popen(
        [JANUS, "-F", str(folder), "-C", str(folder / "janus.jcfg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def phone_on_janus(janus: str) -> Iterator[DemoProcess]:
    proc = DemoProcess(with_agent=True, external=janus, secret=SECRET)
    yield proc
    proc.stop()


def serve_page_on(page: Page, origin: str) -> None:
    def handle(route: Route) -> None:
        path = route.request.url.removeprefix(origin).split("?")[0].removeprefix("web-admin/") or "index.html"
        file = STATIC / path
        if not file.is_file():
            route.fulfill(status=404, body="")
            return
        kinds = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        route.fulfill(body=file.read_bytes(), content_type=kinds.get(file.suffix, "application/octet-stream"))

    page.route(f"{origin}web-admin/**", handle)


def test_the_page_drives_the_phone_through_real_janus(page: Page, phone_on_janus: DemoProcess) -> None:
    origin = phone_on_janus.base
    serve_page_on(page, origin)
    info = phone_on_janus.info
    page.goto(f"{origin}web-admin/?session={info['session']}&pin={info['password']}&apisecret={SECRET}")
    page.click("#connect")
    wait_playing(page)
    assert page.inner_text("#st-transport") == "HTTP long poll"
    wait_color(page, *COUNTER_ICON, phone.APPS["counter"])
    tap(page, *COUNTER_ICON)
    wait_color(page, 20, 200, (250, 240, 225))
    page.click("[data-command=back]")
    wait_color(page, *COUNTER_ICON, phone.APPS["counter"])
    screenshot(page, "real-janus")
    page.evaluate("() => window.apuppet.remote.disconnect()")


def test_janus_error_codes_become_the_same_messages(page: Page, phone_on_janus: DemoProcess) -> None:
    origin = phone_on_janus.base
    serve_page_on(page, origin)
    info = phone_on_janus.info
    page.goto(f"{origin}web-admin/?session={info['session']}&pin=wrong&apisecret={SECRET}")
    page.click("#connect")
    page.wait_for_function("() => document.body.dataset.error === 'wrong-password'", timeout=30_000)
    page.fill("#session-id", "no-such-session")
    page.click("#connect")
    page.wait_for_function("() => document.body.dataset.error === 'unknown-session'", timeout=30_000)


def test_second_browser_is_told_busy_by_janus_too(browser: Browser, phone_on_janus: DemoProcess) -> None:
    origin = phone_on_janus.base
    info = phone_on_janus.info
    pages = []
    try:
        for _ in range(2):
            context = browser.new_context()
            page = context.new_page()
            serve_page_on(page, origin)
            page.goto(f"{origin}web-admin/?session={info['session']}&pin={info['password']}&apisecret={SECRET}")
            page.click("#connect")
            pages.append(page)
            if len(pages) == 1:
                wait_playing(page)
        pages[1].wait_for_function("() => document.body.dataset.error === 'busy'", timeout=30_000)
        pages[0].evaluate("() => window.apuppet.remote.disconnect()")
    finally:
        for page in pages:
            page.context.close()
