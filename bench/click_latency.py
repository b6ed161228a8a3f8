"""Click-to-pixels latency of the web-admin: the real browser, the real server, the demo phone at 30 fps.

A sample: the page is on the demo phone's home screen; Chromium gets a real mouse click on the Counter icon (at
the place the page shows it); the page timestamps the pointerup that sends `tap,…`, then looks at every video
frame it presents (requestVideoFrameCallback) until a probe pixel turns from wallpaper to the Counter screen.
Latency = presentation time of that frame - pointerup time, both on the page's clock. Home is then pressed
(not timed) and the next sample starts. Not a test: it prints figures.

With ``--janus`` the same run also goes through the real Janus gateway (Debian's `janus`, configured as aPuppet
does; the page is then served on Janus' origin by Playwright and talks HTTP long poll), for comparison.

With ``--turn`` (root, `ip`, `nft`, Debian's coturn) the browser runs inside a network namespace joined to the
host by a veth pair (tests/netns.py): once with UDP open (direct, host candidates), once with every UDP packet
dropped in the namespace and the server handing out coturn with minted credentials, so that both peer
connections relay through coturn over TCP. Same measurement, run by tests/web/desk_browser.py in the namespace.

    python bench/click_latency.py [--samples 30] [--janus] [--turn [--rounds 3]]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from apuppet.agent import phone  # noqa: E402
from tests import netns  # noqa: E402
from tests.janus_gateway import JanusGateway, janus_installed  # noqa: E402
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, DemoProcess  # noqa: E402
from tests.web.modules import serve_page_on  # noqa: E402
from tests.web.screen import login, near, page_point, pixel, wait_playing  # noqa: E402

COUNTER_ICON = (phone.ICON_XS[0] + phone.ICON // 2, phone.ICON_Y + phone.ICON // 2)
PROBE = (20, 200)

ARM = """([px, py]) => { window.__result = new Promise((resolve) => {
  const video = document.getElementById('video');
  const stage = document.getElementById('stage');
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  let clicked = null;
  const started = performance.now();
  stage.addEventListener('pointerup', () => { clicked = performance.now(); }, { capture: true, once: true });
  const onFrame = (now, meta) => {
    ctx.drawImage(video, 0, 0);
    const [r, g, b] = ctx.getImageData(px, py, 1, 1).data;
    // Wallpaper is dark blue; the Counter screen is near-white.
    if (clicked !== null && r > 180 && g > 180) {
      resolve({ latency: now - clicked, frames: meta.presentedFrames });
      return;
    }
    if (performance.now() - started > 10000) { resolve(null); return; }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}); }"""


def measure(browser: Any, demo: DemoProcess, samples: int, on_janus: bool) -> tuple[list[float], int]:
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    if on_janus:
        serve_page_on(page, demo.base)
    started = time.monotonic()
    login(page, demo)
    wait_playing(page)
    print(f"  logged in and playing after {time.monotonic() - started:.2f} s ({page.inner_text('#st-transport')})")
    latencies: list[float] = []
    misses = 0
    for _ in range(samples):
        page.click("[data-command=home]")
        deadline = time.monotonic() + 10
        while not near(pixel(page, *COUNTER_ICON), phone.APPS["counter"]):
            if time.monotonic() > deadline:
                raise SystemExit("the phone did not return to its home screen")
            time.sleep(0.02)
        page.wait_for_timeout(150)
        x, y = page_point(page, *COUNTER_ICON)
        page.evaluate(ARM, list(PROBE))
        page.mouse.click(x, y)
        result = page.evaluate("() => window.__result")
        if result is None:
            misses += 1
        else:
            latencies.append(result["latency"])
    page.evaluate("() => window.apuppet.remote.disconnect()")
    page.close()
    return latencies, misses


def measure_in_namespace(samples: int, through_turn: bool) -> tuple[list[float], int]:
    """The browser in a namespace: direct over UDP, or with UDP dropped and coturn relaying over TCP."""
    desk = netns.UdpBlockedNamespace(drop_udp=through_turn)
    coturn = None
    folder = tempfile.TemporaryDirectory()
    try:
        config: dict[str, Any] = {"bind": netns.HOST_ADDRESS}
        if through_turn:
            secret = secrets.token_urlsafe(24)
            coturn = netns.Coturn(Path(folder.name), netns.HOST_ADDRESS, 34781, secret, (49400, 49439))
            config.update(turn_secret=secret, turn_servers=[{"url": coturn.url("udp")}, {"url": coturn.url("tcp")}])
        demo = DemoProcess(with_agent=True, config=config)
        try:
            script = [sys.executable, str(ROOT / "tests" / "web" / "desk_browser.py"), demo.base]
            script += [demo.info["session"], demo.info["password"], f"--samples={samples}"]
            done = subprocess.run(desk.prefix + script, capture_output=True, text=True, timeout=60 + 12 * samples)
        finally:
            demo.stop()
        if done.returncode:
            raise SystemExit(f"the browser in the namespace failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        pairs = ", ".join(
            f"{name} {pair['type']}/{pair['relayProtocol'] or pair['protocol']}"
            for name, pair in result["pairs"].items()
        )
        print(f"  logged in and playing after {result['playing_after']:.2f} s ({pairs})")
        if through_turn:
            print(f"  UDP packets dropped in the namespace: {desk.udp_dropped()}")
        return result["latencies"], result["misses"]
    finally:
        if coturn is not None:
            coturn.stop()
        desk.close()
        folder.cleanup()


def report(name: str, latencies: list[float], misses: int) -> None:
    if not latencies:
        print(f"{name}: no sample")
        return
    latencies = sorted(latencies)
    p90 = latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))]
    print(f"{name}: click → changed pixels, {len(latencies)} samples ({misses} missed), demo phone 360x640 at 30 fps")
    print(
        f"  median {statistics.median(latencies):.0f} ms   p90 {p90:.0f} ms   "
        f"min {latencies[0]:.0f} ms   max {latencies[-1]:.0f} ms   (target: median ≤ 150 ms)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--janus", action="store_true", help="also measure through the real Janus gateway")
    parser.add_argument("--turn", action="store_true", help="also measure in a namespace: direct and through coturn")
    parser.add_argument("--rounds", type=int, default=3, help="--turn: alternating rounds of samples/rounds each")
    args = parser.parse_args()
    if args.janus and not janus_installed():
        raise SystemExit("--janus: the janus package is not installed")
    if args.turn and netns.missing():
        raise SystemExit(f"--turn: {netns.missing()}")

    results: dict[str, tuple[list[float], int]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        demo = DemoProcess(with_agent=True)
        try:
            print("apuppet server:")
            results["apuppet"] = measure(browser, demo, args.samples, on_janus=False)
        finally:
            demo.stop()
        if args.janus:
            with tempfile.TemporaryDirectory() as folder:
                secret = "bench-secret"
                gateway = JanusGateway(Path(folder), secret)
                demo = DemoProcess(with_agent=True, external=gateway.url, secret=secret)
                try:
                    print("Janus gateway:")
                    results["janus"] = measure(browser, demo, args.samples, on_janus=True)
                finally:
                    demo.stop()
                    gateway.stop()
        browser.close()
    if args.turn:
        # Rounds alternate the two paths, so that a load change on a shared machine weighs on both alike.
        per_round = max(1, args.samples // args.rounds)
        for name in ("namespace, direct", "namespace, TURN/TCP"):
            results[name] = ([], 0)
        for round_number in range(args.rounds):
            for name, through_turn in (("namespace, direct", False), ("namespace, TURN/TCP", True)):
                print(f"browser in a namespace, {name.split(', ')[1]}, round {round_number + 1}/{args.rounds}:")
                latencies, misses = measure_in_namespace(per_round, through_turn)
                results[name] = (results[name][0] + latencies, results[name][1] + misses)
    for name, (latencies, misses) in results.items():
        report(name, latencies, misses)
    return 0 if results["apuppet"][0] else 1


if __name__ == "__main__":
    sys.exit(main())
