"""`apuppet sessions` shows text that clients chose (usernames, display names): a real server on loopback, a
device and a viewer joining its room over real data channels, then the command as an operator runs it."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from apuppet.agent.janus import JanusClient
from apuppet.agent.textroom import TextRoomPeer
from apuppet.runtime import LOG_FORMAT, PrintableFormatter, printable

from ..ports import free_port
from .test_doctor import free_udp_range

SECRET = "sessions-" + secrets.token_hex(6)
#: Clears the terminal, turns it red, and starts a line that looks like a record of its own.
HOSTILE_VIEWER = "\x1b[2J\x1b[31mX\nFAKE ROW"
HOSTILE_DEVICE = "Phone\x1b]0;owned\x07\r\u202eenohP"


def raw_controls(text: str) -> list[str]:
    """Characters a terminal would act on, other than the line ends the command itself prints."""
    return [c for c in text if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029\u202e")]


def test_printable_escapes_what_terminals_act_on() -> None:
    assert printable(HOSTILE_VIEWER) == "\\x1b[2J\\x1b[31mX\\x0aFAKE ROW"
    assert printable("a\\x1b") == "a\\\\x1b"  # a typed escape stays distinguishable from a real one
    assert printable("Pixel 7 é ☃") == "Pixel 7 é ☃"
    assert raw_controls(printable("".join(map(chr, range(0x20))) + "\x7f\x85\x9b\u2028\u202e")) == []


def test_log_lines_escape_client_text_but_keep_tracebacks() -> None:
    formatter = PrintableFormatter(LOG_FORMAT)
    record = logging.LogRecord("apuppet.x", logging.WARNING, __file__, 1, "viewer %s joined", (HOSTILE_VIEWER,), None)
    line = formatter.format(record)
    assert raw_controls(line) == [] and "\n" not in line
    assert line.endswith("viewer \\x1b[2J\\x1b[31mX\\x0aFAKE ROW joined")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("apuppet.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "\nTraceback (most recent call last):\n" in formatter.format(record)


async def join(url: str, room: str, pin: str, username: str, display: str, create: bool = False) -> TextRoomPeer:
    http = aiohttp.ClientSession()
    janus = JanusClient(http, url, SECRET)
    await janus.create()
    peer = TextRoomPeer(janus, lambda _event: None)
    await peer.connect()
    if create:
        await peer.checked({"textroom": "create", "room": room, "pin": pin, "is_private": False, "permanent": False})
    await peer.checked({"textroom": "join", "room": room, "pin": pin, "username": username, "display": display})
    peer.http = http  # type: ignore[attr-defined]
    return peer


async def close(peer: TextRoomPeer) -> None:
    await peer.close()
    await peer.janus.close()
    await peer.http.close()  # type: ignore[attr-defined]


@pytest.mark.timeout(120)
async def test_sessions_escapes_client_text_and_no_row_is_forged(tmp_path: Path) -> None:
    low, high = free_udp_range(20)
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f'bind: "127.0.0.1"\nweb_http_port: {port}\napi_http: false\nrtp_port_range: "{low}-{high}"\n'
        f'api_secret: "{SECRET}"\nadmin_secret: "adm-{SECRET}"\nis_certbot_enabled: false\nuse_ipv6: false\n'
    )
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apuppet", "serve", "--config", str(cfg), "--log-level", "debug",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert server.stderr is not None
    log: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any(" ready: " in line for line in log):
                line = (await server.stderr.readline()).decode()
                assert line, "".join(log)
                log.append(line)
        drain = asyncio.get_running_loop().create_task(server.stderr.read())
        url = f"http://127.0.0.1:{port}/"
        room, pin = str(secrets.randbelow(10**10)).zfill(10), secrets.token_hex(4)
        device = await join(url, room, pin, "device:phone", HOSTILE_DEVICE, create=True)
        viewer = await join(url, room, pin, HOSTILE_VIEWER, HOSTILE_VIEWER)
        await viewer.checked({"textroom": "leave", "room": room})
        await close(viewer)
        await close(device)
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await server.wait()
    log.append((await drain).decode())

    out = subprocess.run(
        [sys.executable, "-m", "apuppet", "sessions", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert raw_controls(out.stdout) == [], out.stdout
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout  # the header and the one session: nothing forged
    assert lines[0].startswith("started (UTC)")
    assert "  \\x1b[2J\\x1b[31mX\\x0aFAK…  " in lines[1]  # what the client sent, shown, not acted on
    assert "  Phone\\x1b]0;owned\\x…  " in lines[1]
    # The server's own log lines quote client text too.
    assert raw_controls("".join(log)) == [], "".join(log)
