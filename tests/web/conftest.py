"""Browser fixtures: Debian's Chromium driven by Playwright, against a real server (and demo phone) process.

Only an Android phone is simulated (the demo agent plays it, speaking the aPuppet agent's protocol); the server,
the browser, WebRTC and H.264 are real. The tests skip only when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from ..ports import free_port

#: Debian's Chromium (Playwright cannot download browsers here); another path can be given for other systems.
CHROMIUM = os.environ.get("APUPPET_TEST_CHROMIUM", "/usr/bin/chromium")
HERE = Path(__file__).parent
ARTIFACTS = HERE.parent.parent / "test-artifacts" / "web"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the browser, every test here is skipped (and nothing else is)."""
    if os.path.exists(CHROMIUM):
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(skip)


class DemoProcess:
    """A server (with or without a demo phone) in a child process; `info` holds its JSON line."""

    def __init__(
        self,
        with_agent: bool,
        external: str = "",
        secret: str = "",
        port: int = 0,
        still: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        """`port`: a given one (a server restarted where it was); `still`: the phone's screen changes only when it
        is touched, like an Android phone's (whose agent then sends no frames); `config`: config.yaml keys for
        the server."""
        self.secret = secret or secrets.token_urlsafe(12)
        self.port = port or free_port()
        args = [sys.executable, str(HERE / "demo_server.py"), str(self.port)]
        if not with_agent:
            args.append("--no-agent")
        if external:
            args.append(f"--external={external}")
        if still:
            args.append("--still")
        env = {**os.environ, "APUPPET_TEST_SECRET": self.secret, "APUPPET_TEST_CONFIG": json.dumps(config or {})}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, env=env, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            self.proc.wait(5)
            raise RuntimeError(f"the demo server did not start (exit code {self.proc.returncode})")
        self.info: dict[str, Any] = json.loads(line)
        self.base = self.info["server"]

    def url(self, *, with_secret: bool = False, **params: str) -> str:
        """The page's link. Without the API secret by default, as users get it: the page then works through a
        viewer session (the server's `viewer_access`)."""
        query = {"apisecret": self.secret, **params} if with_secret else params
        return f"{self.base}web-admin/?{urlencode(query)}"

    def metric(self, name: str) -> float:
        """One gauge of the server's /metrics (read with the admin secret)."""
        request = urllib.request.Request(
            f"{self.base}metrics", headers={"Authorization": f"Bearer admin-{self.secret}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise KeyError(name)

    def stop_phone(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def cut_phone(self) -> None:
        self.proc.send_signal(signal.SIGUSR2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per module, not per session: while Playwright's sync API is open it keeps an event loop
    running in the main thread, and an asyncio test that runs after it in the same process (another module on
    the same xdist worker, or the whole suite with `-n 0`) could not start its own."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server() -> Iterator[DemoProcess]:
    proc = DemoProcess(with_agent=False)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoProcess]:
    proc = DemoProcess(with_agent=True)
    yield proc
    proc.stop()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    with open_page(browser) as pg:
        yield pg


@contextlib.contextmanager
def open_page(browser: Browser, width: int = 1000, height: int = 800) -> Iterator[Page]:
    """A page in a browser context of its own, closed after; an uncaught script error fails the test."""
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # The server sends a strict Content-Security-Policy: the page must not need anything it forbids.
    pg.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    pg.set_default_timeout(20_000)
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def wait(predicate: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
