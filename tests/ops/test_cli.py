"""`apuppet config check|set` and `apuppet tls self-signed` as install.sh runs them: real processes, real files."""

from __future__ import annotations

import shlex
import stat
import subprocess
import sys
from pathlib import Path

from apuppet.ops.cli import set_keys


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apuppet", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def parse_shell(stdout: str) -> dict[str, str]:
    """Evaluate the KEY=value lines the way bash would (shlex), without a shell."""
    return dict(item.split("=", 1) for item in shlex.split(stdout))


def tree(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mode, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def test_check_changes_nothing_and_says_what_secrets_would_do(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        'web_http_port: 8080\nrtp_port_range: "20000-20099"\nhostname: srv.example.org\nis_certbot_enabled: false\n'
    )
    before = tree(tmp_path)
    for extra in ((), ("--show-secret",), ("--shell",), ("--shell", "--show-secret")):
        out = run("config", "check", "--config", str(cfg), *extra)
        assert out.returncode == 0, out.stderr
        assert tree(tmp_path) == before, extra  # a check writes nothing, whatever its options
    out = run("config", "check", "--config", str(cfg))
    assert "http://srv.example.org:8080/web-admin/" in out.stdout
    assert "UDP 20000-20099" in out.stdout and "TCP 8080" in out.stdout
    secret_file = tmp_path / "credentials" / "api_secret"
    assert f"not generated yet; would be written to {secret_file}" in out.stdout
    assert "Nothing was written" in out.stdout and f"apuppet config secrets --config {cfg}" in out.stdout
    assert str(tmp_path / "credentials" / "admin_secret") in out.stdout


def test_secrets_generated_once_then_check_reads_them(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text('web_http_port: 8080\nrtp_port_range: "20000-20099"\nis_certbot_enabled: false\n')
    out = run("config", "secrets", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    secret_file = tmp_path / "credentials" / "api_secret"
    secret = secret_file.read_text().strip()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert f"generated {secret_file} (mode 0600)" in out.stdout and secret not in out.stdout
    before = tree(tmp_path)
    out = run("config", "secrets", "--config", str(cfg))
    assert "nothing generated" in out.stdout and tree(tmp_path) == before

    out = run("config", "check", "--config", str(cfg))
    assert secret not in out.stdout and "Nothing was written" not in out.stdout
    out = run("config", "check", "--config", str(cfg), "--shell", "--show-secret")
    values = parse_shell(out.stdout)
    assert values["API_SECRET"] == secret  # not regenerated
    assert values["CREDENTIALS_DIR"] == str(tmp_path / "credentials")
    assert values["ACME_DIR"] == str(tmp_path / "data" / "acme")
    assert values["UDP_RANGE"] == "20000-20099" and values["TLS"] == "0" and values["CERTBOT"] == "0"
    assert values["FIREWALL"].splitlines()[-1].startswith("UDP 20000-20099")
    assert tree(tmp_path) == before


def test_secrets_refuses_a_bad_config_without_writing(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("nat: true\n")
    out = run("config", "secrets", "--config", str(cfg))
    assert out.returncode == 2 and "nat: true needs public_ip" in out.stderr
    assert not (tmp_path / "credentials").exists()


def test_check_refuses_without_writing(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("rtp_port_range: 10-20\nnat: yes\n")
    out = run("config", "check", "--config", str(cfg))
    assert out.returncode == 2
    assert "rtp_port_range: '10-20' is not valid" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "credentials").exists()

    cfg.write_text(f"tls_cert: {tmp_path}/nope.pem\ntls_key: {tmp_path}/nope.key\n")
    out = run("config", "check", "--config", str(cfg))
    assert out.returncode == 2 and "nope.pem does not exist" in out.stderr
    assert not (tmp_path / "credentials").exists()


def test_self_signed_then_check(tmp_path: Path) -> None:
    out = run("tls", "self-signed", "--hostname", "apuppet.lan", "--name", "192.168.1.10", "--out", "tls", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    key = tmp_path / "tls" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert f'tls_key: "{key}"' in out.stdout
    again = run("tls", "self-signed", "--hostname", "apuppet.lan", "--out", "tls", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr

    cfg = tmp_path / "config.yaml"
    cfg.write_text("hostname: apuppet.lan\ntls_cert: tls/cert.pem\ntls_key: tls/key.pem\n")
    out = run("config", "check", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "https://apuppet.lan/web-admin/" in out.stdout
    assert "self-signed, apuppet.lan, 192.168.1.10" in out.stdout
    assert "agents cannot verify it: give them http://apuppet.lan/" in out.stdout


def test_set_keys_keeps_comments() -> None:
    text = '# comment\nnat: false  # old\npublic_ip: ""\nbind: "0.0.0.0"\n'
    new = set_keys(text, {"nat": True, "public_ip": "77.222.59.36", "tls_cert": "/x/y.pem"})
    assert new == '# comment\nnat: true\npublic_ip: "77.222.59.36"\nbind: "0.0.0.0"\ntls_cert: "/x/y.pem"\n'


def test_config_set(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text('# mine\nnat: false\npublic_ip: ""\n')
    cfg.chmod(0o640)
    out = run("config", "set", "--config", str(cfg), "nat=true")
    assert out.returncode == 2 and "nat: true needs public_ip" in out.stderr
    assert cfg.read_text() == '# mine\nnat: false\npublic_ip: ""\n'
    out = run("config", "set", "--config", str(cfg), "nat=true", "public_ip=77.222.59.36")
    assert out.returncode == 0, out.stderr
    assert cfg.read_text() == '# mine\nnat: true\npublic_ip: "77.222.59.36"\n'
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640
    out = run("config", "set", "--config", str(cfg), "no_such_key=1")
    assert out.returncode == 2
