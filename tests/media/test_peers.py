"""The WebRTC stack comes with the first peer connection (`media/peers.py`, issue 16 §5): an idle `apuppet serve`
maps none of it, the import runs off the event loop and once for any number of waiters, a broken stack is a clear
error for the client while the server goes on, and a missing package stops the server at start-up.

Each check runs in a fresh process: this one imported aiortc long ago."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from apuppet.agent.janus import JanusClient
from apuppet.media.peers import missing_packages

from ..agent.conftest import SECRET
from ..served import Served, serve, start

#: Files the stack maps: cryptography's and pylibsrtp's compiled parts (PyAV is the stand-in's business).
STACK_LIBRARIES = ("cryptography/hazmat/bindings/_rust", "pylibsrtp/_binding")


def test_missing_packages_names_only_what_is_not_installed() -> None:
    assert missing_packages() == []
    assert missing_packages(("aiortc", "apuppet_no_such_package", "pylibsrtp")) == ["apuppet_no_such_package"]


async def textroom_setup(http: aiohttp.ClientSession, url: str) -> tuple[JanusClient, dict[str, Any]]:
    """What an agent does first (a session, a textroom handle, `setup`), through the agent's own Janus client; the
    client (to be closed) and the event that answered the setup."""
    janus = JanusClient(http, url, SECRET)
    await janus.create()
    handle = await janus.attach("janus.plugin.textroom")
    assert (await janus.message(handle, {"request": "setup"}))["janus"] == "ack"
    return janus, await janus.event(handle, timeout=30)


def maps_stack(served: Served) -> list[bool]:
    return [served.maps(library) for library in STACK_LIBRARIES]


@pytest.mark.timeout(120)
async def test_an_idle_server_loads_the_webrtc_stack_with_its_first_peer_connection(
    tmp_path: Path, servers: list[Served], http: aiohttp.ClientSession
) -> None:
    served = await serve(tmp_path)
    servers.append(served)
    await asyncio.sleep(0.5)
    assert maps_stack(served) == [False, False]
    # A streaming handle alone (a device making its mountpoint, a page listing them) does not load it either.
    lister = JanusClient(http, served.url, SECRET)
    await lister.create()
    listed = await lister.message(await lister.attach("janus.plugin.streaming"), {"request": "list"})
    await lister.close()
    assert listed["plugindata"]["data"]["list"] == [], listed
    assert maps_stack(served) == [False, False]
    janus, event = await textroom_setup(http, served.url)
    await janus.close()
    assert event["plugindata"]["data"].get("result") == "ok", event
    assert event["jsep"]["type"] == "offer" and "webrtc-datachannel" in event["jsep"]["sdp"]
    assert maps_stack(served) == [True, True]
    assert any("WebRTC stack loaded" in line for line in served.log + await read_log(served)), served.log


async def read_log(served: Served) -> list[str]:
    """What the server logged since it said it was ready, as far as it has written it."""
    assert served.process.stderr is not None
    lines = []
    while True:
        try:
            line = await asyncio.wait_for(served.process.stderr.readline(), 0.5)
        except TimeoutError:
            return lines
        if not line:
            return lines
        lines.append(line.decode())


@pytest.mark.timeout(120)
async def test_a_broken_stack_is_an_error_for_the_client_and_the_server_goes_on(
    tmp_path: Path, servers: list[Served], http: aiohttp.ClientSession
) -> None:
    # Installed but broken: SRTP's compiled part fails to import (as after a bad upgrade).
    served = await serve(tmp_path, preamble="sys.modules['pylibsrtp._binding'] = None")
    servers.append(served)
    clients = []
    for _ in range(2):  # told every time, not only the first
        janus, event = await textroom_setup(http, served.url)
        clients.append(janus)
        error = event["plugindata"]["data"].get("error", "")
        assert "WebRTC unavailable on this server (ModuleNotFoundError" in error, event
        assert "pylibsrtp" not in error and "/" not in error  # what failed, where: for the log only
        assert "jsep" not in event
    # Everything else is served as before.
    assert (await janus.request({"janus": "info"}, session=False))["janus"] == "server_info"
    assert (await janus.request({"janus": "keepalive"}))["janus"] == "ack"
    for client in clients:
        await client.close()
    assert served.process.returncode is None
    log = "".join(await read_log(served))
    # Logged once (tried once: the next try waits for RETRY_AFTER), with what the client was not told.
    assert log.count("WebRTC stack not loaded") == 1 and "import of pylibsrtp._binding halted" in log, log


@pytest.mark.timeout(60)
async def test_a_missing_webrtc_package_stops_the_server_at_start(tmp_path: Path) -> None:
    process, _ = await start(tmp_path, preamble="sys.modules['pylibsrtp'] = None")
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode != 0
    assert "WebRTC packages missing: pylibsrtp" in err.decode(), err.decode()


# What both scripts start with: `import_stack` counted (the real one, called through).
COUNTED = """
import asyncio, json, sys, threading
from apuppet.media import peers as p
from apuppet.media.settings import MediaSettings
calls = 0
real = p.import_stack
def counted():
    global calls
    calls += 1
    return real()
p.import_stack = counted
"""

LOAD = (
    COUNTED
    + """
on_main = {}
def hook(event, args):
    if event == "import" and args[0] in ("aioice", "cryptography", "pylibsrtp"):
        on_main.setdefault(args[0], threading.current_thread() is threading.main_thread())
sys.addaudithook(hook)

async def main():
    peers = p.Peers(MediaSettings(bind="127.0.0.1", port_range=(%d, %d)))
    ticks = 0
    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.002)
            ticks += 1
    ticker = asyncio.create_task(tick())
    cancelled = asyncio.create_task(peers.ready())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(*(peers.ready() for _ in range(5)))
    ticker.cancel()
    pc = peers.create()
    await pc.close()
    print(json.dumps({"on_main": on_main, "ticks": ticks, "calls": calls, "cancelled": cancelled.cancelled()}))
asyncio.run(main())
"""
)


def test_the_stack_is_imported_once_off_the_event_loop_for_every_waiter() -> None:
    from .test_ice import free_range

    out = subprocess.run(
        [sys.executable, "-c", LOAD % free_range(10)], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout.splitlines()[-1])
    # Imported in the worker thread, and the loop went on running meanwhile (a 2 ms ticker; a blocking import
    # would give it no turn before the waiters return).
    assert seen["on_main"] == {"aioice": False, "cryptography": False, "pylibsrtp": False}, seen
    assert seen["ticks"] >= 5, seen
    # Six waiters, one of them cancelled: one import, and the others were not cancelled with it.
    assert seen["calls"] == 1 and seen["cancelled"], seen


RETRY = (
    COUNTED
    + """
p.RETRY_AFTER = 0.5

async def main():
    peers = p.Peers(MediaSettings(bind="127.0.0.1", port_range=(%d, %d)))
    seen = []
    sys.modules["pylibsrtp._binding"] = None  # a passing failure of the first try
    for _ in range(2):  # the second within RETRY_AFTER: refused without trying again
        try:
            await peers.ready()
            seen.append("ready")
        except p.WebRtcUnavailable:
            seen.append("unavailable")
    del sys.modules["pylibsrtp._binding"]
    await asyncio.sleep(0.6)
    await peers.ready()
    pc = peers.create()
    await pc.close()
    seen.append("ready")
    print(json.dumps({"seen": seen, "calls": calls}))
asyncio.run(main())
"""
)


def test_a_failed_import_is_tried_again_after_a_while() -> None:
    from .test_ice import free_range

    out = subprocess.run(
        [sys.executable, "-c", RETRY % free_range(10)], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen == {"seen": ["unavailable", "unavailable", "ready"], "calls": 2}, (seen, out.stderr[-2000:])
