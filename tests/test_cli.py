"""`apuppet serve` as a real process: starts, answers, stops cleanly on SIGTERM/SIGINT, refuses bad configs."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apuppet", *args], capture_output=True, text=True, timeout=60, **kw)


def test_help() -> None:
    out = run_cli("--help")
    assert out.returncode == 0 and "serve" in out.stdout
    out = run_cli("serve", "--help")
    assert out.returncode == 0 and "--config" in out.stdout and "SIGHUP" in out.stdout


def test_bad_config_is_one_clear_message(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("nat: true\nweb_http_port: eighty\n")
    out = run_cli("serve", "--config", str(cfg))
    assert out.returncode == 2
    assert "web_http_port: 'eighty' is not valid" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("bind: 127.0.0.1\nweb_http_port: 0\napi_http: false\napi_https: false\napi_wss: false\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apuppet", "serve", "--config", str(cfg)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:  # the server exited: no point waiting out the deadline
                break
            lines.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
            if "ready" in line:
                break
        assert port, "".join(lines)
        secret = (tmp_path / "credentials" / "api_secret").read_text().strip()
        assert secret and secret not in "".join(lines), "the secret must not be logged"
        body = json.dumps({"janus": "create", "transaction": "t", "apisecret": secret}).encode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/janus", data=body, timeout=10) as resp:
            assert json.load(resp)["janus"] == "success"
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
        rest = proc.stderr.read()
        assert "Traceback" not in rest and "stopping" in rest
        with socket.socket() as s:  # the port is free again (SO_REUSEADDR: only a live listener blocks it)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
