"""A support person's browser, run inside a network namespace (``ip netns exec NS python desk_browser.py …``):
Chromium opens the web-admin, logs in to the demo phone, waits for the video, reads which candidate pair each
peer connection selected, and taps the Counter icon until the picture shows the Counter screen. With
``--samples N`` it then measures click → pixels N times (bench/click_latency.py's measurement).

Prints one JSON line: {"playing_after", "pairs", "tapped", "url", "latencies", "misses"}. Playwright talks to
Chromium over pipes, so the namespace's network is all the browser has.

    python tests/web/desk_browser.py BASE_URL SESSION PIN [--samples N] [--wait SECONDS]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

from apuppet.agent import phone  # noqa: E402
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.web.screen import tap, wait_color, wait_playing  # noqa: E402

COUNTER_ICON = (phone.ICON_XS[0] + phone.ICON // 2, phone.ICON_Y + phone.ICON // 2)
COUNTER_BG = (250, 240, 225)

#: The local candidate of the pair each peer connection uses (RTCIceCandidateStats), read from getStats().
SELECTED_PAIRS = """async () => {
  const out = {};
  const link = window.apuppet.remote.link;
  for (const name of ["pcData", "pcVideo"]) {
    const stats = await link[name].getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    const local = pair ? stats.get(pair.localCandidateId) : null;
    out[name] = local
      ? { type: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol ?? null }
      : null;
  }
  return out;
}"""


class Desk:
    """What bench/click_latency.measure needs of a demo: its page link and its session."""

    def __init__(self, base: str, session: str, pin: str) -> None:
        self.base = base
        self.info = {"session": session, "password": pin}

    def url(self, **params: str) -> str:
        return f"{self.base}web-admin/?{urlencode(params)}"


COUNT_PEERS = """
window.peerConnections = 0;
const Original = window.RTCPeerConnection;
window.RTCPeerConnection = function (...args) {
  window.peerConnections++;
  return new Original(...args);
};
window.RTCPeerConnection.prototype = Original.prototype;
"""


def drive(
    browser: Browser, page: Page, desk: Desk, args: argparse.Namespace, started: float, result: dict[str, Any]
) -> None:
    """Play, tap the phone, then measure click latency if asked (`--samples`)."""
    wait_playing(page, timeout=args.wait * 1000)
    result["playing_after"] = round(time.monotonic() - started, 3)
    result["pairs"] = page.evaluate(SELECTED_PAIRS)
    page.click("[data-command=home]")
    wait_color(page, *COUNTER_ICON, phone.APPS["counter"])
    tap(page, *COUNTER_ICON)
    wait_color(page, 20, 200, COUNTER_BG)
    result["tapped"] = True
    result["url"] = page.url
    page.evaluate("() => window.apuppet.remote.disconnect()")
    page.close()
    if args.samples:
        from bench.click_latency import measure

        latencies, misses = measure(browser, desk, args.samples, on_janus=False)  # type: ignore[arg-type]
        result["latencies"] = latencies
        result["misses"] = misses


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("session")
    parser.add_argument("pin")
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--wait", type=float, default=30, help="seconds the video may take to play")
    parser.add_argument(
        "--expect-failure", action="store_true", help="wait up to --wait seconds for the login to fail, and say how"
    )
    args = parser.parse_args()
    desk = Desk(args.base, args.session, args.pin)
    result: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.set_default_timeout(30_000)
        started = time.monotonic()
        # Counts the page's peer connections: one per attempt until a data channel opens.
        page.add_init_script(COUNT_PEERS)
        page.goto(desk.url(session=args.session, pin=args.pin))
        page.click("#connect")
        if args.expect_failure:
            page.wait_for_function("() => document.body.dataset.error", timeout=args.wait * 1000)
            result["failed_after"] = round(time.monotonic() - started, 3)
            result["error"] = page.evaluate("() => document.body.dataset.error")
            result["message"] = page.inner_text("#login-message")
            result["peer_connections"] = page.evaluate("() => window.peerConnections")
            result["state"] = page.evaluate("() => window.apuppet.remote.state")
        else:
            drive(browser, page, desk, args, started, result)
        browser.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
