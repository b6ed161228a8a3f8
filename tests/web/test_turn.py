"""A support desk whose network drops every UDP packet: Chromium in a network namespace (nftables drops UDP in
and out, TCP passes) opens the web-admin of a demo phone served from the host side. With coturn (Debian's,
started here) and `turn_secret`, the server hands the page minted credentials and the browser relays through
coturn over TCP: the video plays and a tap changes the picture. Without TURN the same browser gets no video.

Real parts: the namespace, veth pair and nftables rules, coturn, the server, the demo phone agent (it plays the
Android device, which cannot run here), Chromium. Skips only without root, `ip`, `nft` or coturn.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..netns import HOST_ADDRESS, Coturn, UdpBlockedNamespace, missing
from .conftest import DemoProcess

pytestmark = pytest.mark.skipif(bool(missing()), reason=missing() or "runs")

HERE = Path(__file__).parent
TURN_PORT = 34780
RELAY_RANGE = (49160, 49199)


@pytest.fixture(scope="module")
def desk() -> Iterator[UdpBlockedNamespace]:
    ns = UdpBlockedNamespace()
    yield ns
    ns.close()


@pytest.fixture(scope="module")
def coturn(desk: UdpBlockedNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    server = Coturn(tmp_path_factory.mktemp("coturn"), HOST_ADDRESS, TURN_PORT, secrets.token_urlsafe(24), RELAY_RANGE)
    yield server
    server.stop()


def run_desk_browser(
    desk: UdpBlockedNamespace, demo: DemoProcess, timeout: float, wait: float = 30, *options: str
) -> dict[str, Any] | None:
    """The browser script inside the namespace; None when it could not play the video within `wait` seconds."""
    args = [sys.executable, str(HERE / "desk_browser.py"), demo.base, demo.info["session"], demo.info["password"]]
    args += [f"--wait={wait}", *options]
    try:
        done = subprocess.run(desk.prefix + args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode:
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_browser_without_udp_sees_and_drives_the_phone_through_coturn(
    desk: UdpBlockedNamespace, coturn: Coturn
) -> None:
    config = {
        "bind": HOST_ADDRESS,
        "turn_secret": coturn.secret,
        "turn_ttl": 600,
        "turn_servers": [{"url": coturn.url("udp")}, {"url": coturn.url("tcp")}],
    }
    demo = DemoProcess(with_agent=True, config=config)
    try:
        dropped_before = desk.udp_dropped()
        started = int(time.time())
        result = run_desk_browser(desk, demo, timeout=90)
    finally:
        demo.stop()
    assert result is not None, "the browser did not get the video through coturn"
    assert result["tapped"] is True
    # Both peer connections (commands and video) went through the relay, over TCP: UDP was never an option.
    for name in ("pcData", "pcVideo"):
        assert result["pairs"][name] == {"type": "relay", "protocol": "udp", "relayProtocol": "tcp"}, result
    # The browser did try UDP (its host candidates, TURN over UDP), and the namespace dropped it.
    assert desk.udp_dropped() > dropped_before
    # The credentials came with the session, not in the page's address.
    assert coturn.secret not in result["url"] and "credential" not in result["url"]
    # coturn allocated for minted usernames, "<expiry>:<log tag>", valid for turn_ttl from the page load.
    users = re.findall(r"user <(\d+):([0-9a-f]{8})>: incoming packet ALLOCATE processed, success", coturn.log_text())
    assert users, coturn.log_text()[-3000:]
    assert all(started + 600 <= int(expiry) <= time.time() + 600 for expiry, _ in users)
    print(f"through coturn over TCP: playing after {result['playing_after']:.2f} s")


def test_the_same_browser_without_turn_gets_no_video(desk: UdpBlockedNamespace) -> None:
    """The control: it is the TURN relay that makes the test above pass, not a leak in the UDP drop. The page
    says what failed: the server answered, its media did not come (not "the server cannot be reached"), after a
    second attempt of its own."""
    demo = DemoProcess(with_agent=True, config={"bind": HOST_ADDRESS})
    try:
        result = run_desk_browser(desk, demo, 90, 70, "--expect-failure")
    finally:
        demo.stop()
    assert result is not None, "the page did not report a failure"
    assert result["error"] == "no-media" and result["state"] == "idle", result
    assert "no media connection" in result["message"] and "UDP is blocked" in result["message"], result
    assert result["peer_connections"] == 2, result  # the control connection, tried twice; never the video's
