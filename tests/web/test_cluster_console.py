"""The operator console in Chromium against two nodes of a cluster: the console and a web-admin page are served
by node B, the demo phone is on node A. B's console shows the phone with its node's name and the page (through
its WebSocket on B) as its viewer; ending that viewer with the keyboard reaches A, where the page's handles run,
and the page says an operator ended it. In tests/web/ for the browser fixture (see test_cluster.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from ..cluster.conftest import RedisProcess, running_redis
from ..media.test_ice import free_range
from .conftest import DemoProcess, open_page
from .screen import WHERE, login, wait_playing

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    with running_redis() as server:
        yield server


@pytest.fixture
def console(browser: Browser) -> Iterator[Page]:
    with open_page(browser, 1200, 900) as pg:
        yield pg


def test_the_console_of_node_b_ends_a_viewer_of_a_phone_on_node_a(
    console: Page, page: Page, redis_process: RedisProcess
) -> None:
    url = redis_process.url
    low, high = free_range(60)
    nodes: list[DemoProcess] = []
    try:
        a = DemoProcess(
            with_agent=True, config={"redis_url": url, "node_name": "web-a", "rtp_port_range": f"{low}-{low + 29}"}
        )
        nodes.append(a)
        b = DemoProcess(
            with_agent=False,
            secret=a.secret,
            config={"redis_url": url, "node_name": "web-b", "rtp_port_range": f"{low + 30}-{high}"},
        )
        nodes.append(b)
        b.info.update(session=a.info["session"], password=a.info["password"])

        console.goto(f"{b.base}console/")
        console.fill("#secret", f"admin-{a.secret}")
        console.press("#secret", "Enter")
        card = console.wait_for_selector("article.device")
        assert card.query_selector("h3").text_content() == "Demo phone"  # type: ignore[union-attr]
        assert "on node web-a" in (card.query_selector(".facts").text_content() or "")  # type: ignore[union-attr]

        login(page, b)
        wait_playing(page)
        row = console.wait_for_selector("article.device tr[data-viewer]")
        cells = [c.text_content() for c in row.query_selector_all("td")]
        # The page's WebSocket is B's; its guest on A tells the console so.
        assert cells[0] == "Support" and cells[3] == "WebSocket", cells
        session_tag = row.get_attribute("data-viewer")
        button = f"button[data-key='end:{session_tag}']"
        for _ in range(2):  # arm, then confirm
            console.focus(button)
            console.keyboard.press("Enter")
        console.wait_for_function("() => document.getElementById('notice').textContent.includes('ended')")
        page.wait_for_function("() => document.body.dataset.state === 'closed'", timeout=15_000)
        assert page.evaluate(WHERE)["dialog"] == "An operator ended this session."
        console.wait_for_selector("article.device .viewers-none")
        assert a.metric("apuppet_cluster_guest_sessions") == 0
    finally:
        for node in reversed(nodes):
            node.stop()
