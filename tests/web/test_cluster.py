"""The web-admin in Chromium against two nodes of a cluster (apuppet.cluster, tests in tests/cluster/): the page and
its WebSocket are served by node B, the demo phone is on node A. The page's handles are bound to A (its textroom
`setup` names the room), so its WebRTC goes to A. Here rather than in tests/cluster/ because the browser fixture
is this folder's (one sync Playwright per process, after every asyncio test)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from apuppet.agent import phone

from ..cluster.conftest import RedisProcess, running_redis
from ..media.test_ice import free_range
from .conftest import DemoProcess
from .screen import login, tap, wait_color, wait_playing

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")

COUNTER_ICON = (phone.ICON_XS[0] + phone.ICON // 2, phone.ICON_Y + phone.ICON // 2)
COUNTER_BG = (250, 240, 225)


@pytest.fixture
def local_redis() -> Iterator[RedisProcess]:
    with running_redis() as server:
        yield server


def test_a_page_served_by_node_b_drives_a_phone_on_node_a(page: Page, local_redis: RedisProcess) -> None:
    low, high = free_range(60)
    nodes: list[DemoProcess] = []
    try:
        a = DemoProcess(
            with_agent=True,
            config={"redis_url": local_redis.url, "node_name": "web-a", "rtp_port_range": f"{low}-{low + 29}"},
        )
        nodes.append(a)
        b = DemoProcess(
            with_agent=False,
            secret=a.secret,
            config={"redis_url": local_redis.url, "node_name": "web-b", "rtp_port_range": f"{low + 30}-{high}"},
        )
        nodes.append(b)
        b.info.update(session=a.info["session"], password=a.info["password"])
        login(page, b)
        wait_playing(page)
        page.click("[data-command=home]")
        wait_color(page, *COUNTER_ICON, phone.APPS["counter"])
        tap(page, *COUNTER_ICON)
        wait_color(page, 20, 200, COUNTER_BG)
        # The page's session is B's; its streaming and textroom handles run on A, next to the phone.
        assert b.metric("apuppet_cluster_bound_handles") == 2
        assert a.metric("apuppet_cluster_guest_sessions") == 1
        assert a.metric("apuppet_streaming_streaming_viewers") == 1
        assert b.metric("apuppet_streaming_streaming_viewers") == 0
        page.evaluate("() => window.apuppet && window.apuppet.remote.disconnect()")
    finally:
        for node in reversed(nodes):
            node.stop()
