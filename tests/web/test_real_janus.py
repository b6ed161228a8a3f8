"""The page against the real Janus gateway (Debian's `janus` 1.x, configured as aPuppet's Ansible does: HTTP
transport, textroom and streaming with string ids), with the demo phone agent connected to that Janus.

This is the compatibility check from the other side: the page must work with an aPuppet server, which is
unmodified Janus. The page is served to the browser by Playwright on Janus' own origin (Janus does not serve
files), so the page's same-origin `/janus` calls reach Janus; Janus' HTTP port has no WebSocket, so the page
also shows its fallback to long poll here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from apuppet.agent import phone

from ..janus_gateway import JanusGateway, janus_installed
from .conftest import DemoProcess, screenshot
from .modules import serve_page_on
from .screen import tap, wait_color, wait_playing

pytestmark = pytest.mark.skipif(not janus_installed(), reason="the Janus gateway is not installed")
SECRET = "janus-web-secret"
COUNTER_ICON = (phone.ICON_XS[0] + phone.ICON // 2, phone.ICON_Y + phone.ICON // 2)


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    gateway = JanusGateway(tmp_path_factory.mktemp("janus"), SECRET)
    yield gateway.url
    gateway.stop()


@pytest.fixture(scope="module")
def phone_on_janus(janus: str) -> Iterator[DemoProcess]:
    proc = DemoProcess(with_agent=True, external=janus, secret=SECRET)
    yield proc
    proc.stop()


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
