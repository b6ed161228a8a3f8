"""`apuppet agent` and `apuppet demo` as a user runs them: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

from apuppet.agent.cli import qr_text
from apuppet.cli import build_parser


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apuppet.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_subcommands_are_registered():
    parser = build_parser()
    args = parser.parse_args(["agent", "--server", "http://h/", "--secret", "s", "--source", "x11", "--fps", "15"])
    assert (args.source, args.fps, args.bitrate, args.keyframe_interval) == ("x11", 15, 1_000_000, 2.0)
    args = parser.parse_args(["demo", "--json", "--port", "8123"])
    assert args.json and args.port == 8123 and callable(args.func)


def test_bad_arguments_are_clear_errors():
    result = run("agent", "--server", "srv.example.org", "--secret", "s")
    assert result.returncode == 1 and "server URL must look like" in result.stderr
    result = run("agent", "--server", "http://127.0.0.1:9/", "--fps", "0")
    assert result.returncode == 1 and "must be positive" in result.stderr
    result = run("agent", "--server", "http://127.0.0.1:9/", "--source", "adb", "--adb", "/nonexistent/adb")
    assert result.returncode == 1 and "nonexistent" in result.stderr
    result = run("agent", "--server", "http://127.0.0.1:9/", "--source", "x11", "--display", ":987")
    assert result.returncode == 1 and "cannot open X display :987" in result.stderr
    result = run("demo", "--rtp-port-range", "5-4")
    assert result.returncode == 2 and "rtp_port_range: '5-4' is not valid" in result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run("demo", "--port", str(busy.getsockname()[1]))
    assert result.returncode == 1 and "cannot start" in result.stderr


def test_qr_code_is_drawn():
    text = qr_text("http://127.0.0.1:8080/?session=1&pin=2")
    lines = text.splitlines()
    assert len(lines) > 10 and "█" in text
    assert len({len(line) for line in lines}) == 1  # a square block, two modules per character row


@pytest.mark.timeout(60)
def test_demo_prints_a_ready_url_and_stops_on_ctrl_c():
    proc = subprocess.Popen(
        [sys.executable, "-m", "apuppet.cli", "demo", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.poll() is not None else "no output"
        info = json.loads(line)
        assert set(info) == {"url", "session", "password", "server"}
        query = parse_qs(urlsplit(info["url"]).query)
        assert query["session"] == [info["session"]] and query["pin"] == [info["password"]]
        assert "apisecret" not in query, "links never carry the API secret"
        assert info["url"].startswith(info["server"] + "web-admin/?")
        with urllib.request.urlopen(info["url"], timeout=10) as page:
            assert page.status == 200
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert proc.wait(20) == 0
        assert time.monotonic() - started < 10
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


async def test_agent_command_connects_and_prints_one_json_line(server):
    """`apuppet agent` in its own process against a server here; the secret comes from the environment."""
    import asyncio

    from .conftest import SECRET
    from .viewer import Viewer

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apuppet.cli",
        "agent",
        "--server",
        server.url,
        "--name",
        'Quote " and \\ phone',
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "APUPPET_SECRET": SECRET},
    )
    try:
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
        info = json.loads(line)
        assert set(info) == {"session", "password", "url"}
        assert len(info["session"]) == 10 and len(info["password"]) == 8
        async with Viewer(server.url, SECRET, info["session"], info["password"]) as v:
            device = [p for p in v.participants if p["username"].startswith("device:")]
            assert device == [{"username": 'device:Quote " and \\ phone', "display": 'Quote " and \\ phone'}]
            await v.until(lambda f: True, timeout=20)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
        stderr = (await proc.stderr.read()).decode()
        assert "Traceback" not in stderr
        assert info["password"] not in stderr and SECRET not in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_agent_command_with_a_wrong_secret_exits_with_a_clear_message(server):
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apuppet.cli",
        "agent",
        "--server",
        server.url,
        "--secret",
        "wrong",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, stderr = await proc.communicate()
    assert proc.returncode == 1
    assert "refused the API secret" in stderr.decode()
