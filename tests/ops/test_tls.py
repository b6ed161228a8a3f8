"""Self-signed certificates, the pair checks of `config check`, and TLS on a real `apuppet serve` process:
HTTPS with the generated certificate, then a new certificate picked up on SIGHUP without a restart."""

from __future__ import annotations

import datetime
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from apuppet.ops import tls


def test_self_signed_names_and_modes(tmp_path: Path) -> None:
    cert_pem, key_pem = tls.self_signed(["apuppet.lan", "192.168.1.10"], days=30)
    cert_path, key_path = tls.write_pair(tmp_path / "tls", cert_pem, key_pem)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    info = tls.inspect(cert_path, key_path)
    assert info.names == ("apuppet.lan", "192.168.1.10")
    assert info.self_signed and 28 <= info.days_left() <= 30
    assert tls.covers(info, "APUPPET.lan.") and not tls.covers(info, "other.lan")
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_wildcard_cover() -> None:
    info = tls.CertificateInfo("CN=x", ("*.example.org",), datetime.datetime.now(datetime.UTC), False)
    assert tls.covers(info, "srv.example.org")
    assert not tls.covers(info, "a.srv.example.org") and not tls.covers(info, "example.org")


@pytest.mark.parametrize(("names", "days"), [([], 30), ([""], 30), (["x"], 0), (["x"], 5000)])
def test_self_signed_refuses(names: list[str], days: int) -> None:
    with pytest.raises(tls.TlsError):
        tls.self_signed(names, days=days)


def test_inspect_refuses_bad_pairs(tmp_path: Path) -> None:
    cert_a, key_a = tls.self_signed(["a"])
    cert_b, key_b = tls.self_signed(["b"])
    a_cert, _ = tls.write_pair(tmp_path / "a", cert_a, key_a)
    _, b_key = tls.write_pair(tmp_path / "b", cert_b, key_b)
    with pytest.raises(tls.TlsError, match="not a matching PEM pair"):
        tls.inspect(a_cert, b_key)
    with pytest.raises(tls.TlsError, match="does not exist"):
        tls.inspect(tmp_path / "missing.pem", b_key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(tls.TlsError):
        tls.inspect(garbage, b_key)


def _serial_seen(port: int, cafile: Path) -> int:
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            der = conn.getpeercert(binary_form=True)
            conn.sendall(b"GET /janus/info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
    assert b'"server_info"' in reply
    return x509.load_der_x509_certificate(der).serial_number


def test_https_and_sighup_reload(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    first = tls.self_signed(["localhost", "127.0.0.1"])
    cert_path, key_path = tls.write_pair(out, *first)
    (tmp_path / "ca1.pem").write_bytes(first[0])
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "bind: 127.0.0.1\nweb_http_port: 0\nweb_https_port: 0\napi_http: false\napi_https: false\napi_wss: false\n"
        f"tls_cert: {cert_path}\ntls_key: {key_path}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "apuppet", "serve", "--config", str(cfg)], stderr=subprocess.PIPE, text=True
    )
    try:
        port = None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            lines.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+) for web \+ API \(https\)", line)
            if m:
                port = int(m.group(1))
            if "ready" in line:
                break
        assert port, "".join(lines)
        serial1 = _serial_seen(port, tmp_path / "ca1.pem")
        assert serial1 == x509.load_pem_x509_certificate(first[0]).serial_number

        second = tls.self_signed(["localhost", "127.0.0.1"])
        tls.write_pair(out, *second)
        (tmp_path / "ca2.pem").write_bytes(second[0])
        proc.send_signal(signal.SIGHUP)
        serial2 = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                serial2 = _serial_seen(port, tmp_path / "ca2.pem")
                break
            except ssl.SSLCertVerificationError:
                time.sleep(0.2)  # the reload has not happened yet
        assert serial2 == x509.load_pem_x509_certificate(second[0]).serial_number
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stderr.close()  # type: ignore[union-attr]
