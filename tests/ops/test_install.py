"""./install.sh as CI can run it: no apt (APUPPET_SKIP_APT), a temporary config.yaml and a temporary virtualenv
made from a bare Python (no dependencies in its site) that borrows the test run's installed dependencies through
APUPPET_DEPS_SITE with `pip --no-deps`: no downloads, and nothing taken from the system Python, whatever that has
installed (a fresh Debian 12 has none of them).

systemd cannot run in this container, so its path runs against stand-ins for `systemctl`, `runuser` and
`journalctl` that record their calls (the only substitutes here); everything else is the real script."""

from __future__ import annotations

import contextlib
import getpass
import importlib.metadata
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "config.yaml").read_text()
DEPS_SITE = sysconfig.get_path("purelib")  # where this test run's aiohttp, aiortc... are installed


def offline() -> dict[str, str]:
    """How the new venv gets pip and the build backend. With a setuptools recent enough for pyproject.toml in the
    test run's site (test.sh installs one), the venv is made without pip and uses the test run's pip and setuptools
    through APUPPET_DEPS_SITE: nothing is downloaded (PIP_NO_INDEX). Otherwise pip builds in isolation, getting
    setuptools as it is configured to."""
    if int(importlib.metadata.version("setuptools").split(".")[0]) >= 77:
        return {
            "APUPPET_VENV_ARGS": "--without-pip",
            "APUPPET_PIP_ARGS": "--no-deps --no-build-isolation",
            "PIP_NO_INDEX": "1",
        }
    return {"APUPPET_VENV_ARGS": "", "APUPPET_PIP_ARGS": "--no-deps"}


def install(cfg: Path, venv: Path, python: str = sys.executable, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "APUPPET_SKIP_APT": "1",
        "APUPPET_NO_SYSTEMD": "1",
        "APUPPET_VENV": str(venv),
        "APUPPET_PYTHON": python,
        "APUPPET_DEPS_SITE": DEPS_SITE,
        **offline(),
        **env,
    }
    return subprocess.run(
        [str(REPO / "install.sh"), "--config", str(cfg)], capture_output=True, text=True, timeout=300, env=full
    )


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "venv" not in p.parts
    }


def can_import(python: Path | str, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Installed by install.sh from a Python whose site holds none of the dependencies, as on a fresh machine."""
    folder = tmp_path_factory.mktemp("venv")
    bare = folder / "bare"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    assert not can_import(bare / "bin" / "python", "aiohttp")
    cfg = folder / "config.yaml"
    cfg.write_text(SHIPPED)
    out = install(cfg, folder / "venv", python=str(bare / "bin" / "python"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "creating the virtualenv" in out.stdout
    assert (folder / "venv" / "bin" / "apuppet").exists()
    return folder / "venv"


def test_venv_takes_nothing_from_the_system_python(venv: Path) -> None:
    """The guard against a test venv that only works where the system Python happens to have the dependencies:
    each of them resolves to the site given by APUPPET_DEPS_SITE, apuppet to this checkout."""
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    modules = ["aiohttp", "aiortc", "av", "yaml", "apuppet"]
    probe = f"import {', '.join(modules)}; print({', '.join(m + '.__file__' for m in modules)})"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    *deps, own = out.stdout.split()
    assert all(Path(d).is_relative_to(DEPS_SITE) for d in deps), deps
    assert Path(own).is_relative_to(REPO)


def test_fallback_path_is_idempotent(tmp_path: Path, venv: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(SHIPPED)
    first = install(cfg, venv)
    assert first.returncode == 0, first.stdout + first.stderr
    secret = (tmp_path / "credentials" / "api_secret").read_text().strip()
    assert stat.S_IMODE((tmp_path / "credentials" / "api_secret").stat().st_mode) == 0o600
    assert f"API secret:         {secret}" in first.stdout
    assert f"cd {tmp_path} && {venv}/bin/apuppet serve --config {cfg}" in first.stdout
    assert "UDP 10000-10500" in first.stdout and "ufw allow 8080/tcp && ufw allow 10000:10500/udp" in first.stdout
    assert "all UDP" not in first.stdout

    before = snapshot(tmp_path)
    second = install(cfg, venv)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "is up to date" in second.stdout and "installing apuppet" not in second.stdout
    assert snapshot(tmp_path) == before
    assert f"API secret:         {secret}" in second.stdout


def test_bad_config_changes_nothing(tmp_path: Path, venv: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        SHIPPED.replace("nat: false", "nat: true").replace('rtp_port_range: "10000-10500"', "rtp_port_range: all")
    )
    stamp = (venv / ".apuppet-installed").stat().st_mtime_ns
    before = snapshot(tmp_path)
    out = install(cfg, venv)
    assert out.returncode != 0
    assert "rtp_port_range: 'all' is not valid" in out.stderr
    assert "nothing was changed" in out.stderr
    assert snapshot(tmp_path) == before and not (tmp_path / "credentials").exists()
    assert (venv / ".apuppet-installed").stat().st_mtime_ns == stamp


SYSTEMCTL = """#!/bin/sh
# Stand-in for systemctl: runs the installed unit's ExecStart in WorkingDirectory, as systemd would (without the
# sandboxing, which needs systemd itself).
echo "systemctl $*" >> "$STUB_LOG"
unit="$APUPPET_UNIT_DIR/apuppet.service"
pid=$(cat "$STUB_PID" 2>/dev/null)
alive() {
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
    [ -n "$pid" ] && [ -n "$state" ] && [ "$state" != Z ]
}
case "$1" in
    is-active) alive ;;
    restart)
        if alive; then
            kill "$pid"
            for _ in $(seq 100); do alive || break; sleep 0.1; done
        fi
        dir=$(sed -n 's/^WorkingDirectory=//p' "$unit")
        cmd=$(sed -n 's/^ExecStart=//p' "$unit")
        cd "$dir" && $cmd >> "$STUB_SERVER_LOG" 2>&1 &
        echo $! > "$STUB_PID"
        ;;
    reload) kill -HUP "$pid" ;;
esac
exit 0
"""
RUNUSER = """#!/bin/sh
# runuser -u USER -- CMD...: the test runs as USER already.
shift 3
exec "$@"
"""


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("systemctl", SYSTEMCTL), ("runuser", RUNUSER), ("journalctl", "#!/bin/sh\nexit 0\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "units").mkdir()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "APUPPET_NO_SYSTEMD": "",
        "APUPPET_SYSTEMD": "1",
        "APUPPET_UNIT_DIR": str(tmp_path / "units"),
        "APUPPET_USER": getpass.getuser(),
        "APUPPET_START_WAIT": "60",
        "STUB_LOG": str(tmp_path / "systemctl.log"),
        "STUB_PID": str(tmp_path / "server.pid"),
        "STUB_SERVER_LOG": str(tmp_path / "server.log"),
        # install.sh restarts when the checkout's HEAD moves (new code). In a work tree that others commit to
        # while the test runs, that would be a restart the test did not ask for: no repository, no HEAD.
        "GIT_DIR": str(tmp_path / "no-repository"),
    }
    yield env
    pid_file = tmp_path / "server.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                break
            time.sleep(0.1)


def calls(env: dict[str, str]) -> list[str]:
    log = Path(env["STUB_LOG"])
    text = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return text


def site_config(nat: bool = False, tls: Path | None = None) -> str:
    text = SHIPPED.replace('bind: "0.0.0.0"', 'bind: "127.0.0.1"')
    text = text.replace("web_http_port: 8080", f"web_http_port: {free_port()}")
    text = text.replace("web_https_port: 8443", f"web_https_port: {free_port()}")
    if nat:
        text = text.replace("nat: false", "nat: true").replace('public_ip: ""', 'public_ip: "77.222.59.36"')
    if tls:
        text = text.replace('tls_cert: ""', f'tls_cert: "{tls}/cert.pem"').replace(
            'tls_key: ""', f'tls_key: "{tls}/key.pem"'
        )
    return text


def pid(env: dict[str, str]) -> int:
    return int(Path(env["STUB_PID"]).read_text())


def test_systemd_path_applies_changes_only(tmp_path: Path, venv: Path, systemd: dict[str, str]) -> None:
    site = tmp_path / "site"
    site.mkdir()
    cfg = site / "config.yaml"
    cfg.write_text(site_config())
    out = install(cfg, venv, **systemd)
    assert out.returncode == 0, out.stdout + out.stderr
    unit = (tmp_path / "units" / "apuppet.service").read_text()
    assert f"ExecStart={venv}/bin/apuppet serve --config {cfg}\n" in unit
    assert f"ReadWritePaths={site}/credentials {site}/data {site}/recordings\n" in unit
    assert f"User={systemd['APUPPET_USER']}\n" in unit and f"WorkingDirectory={site}\n" in unit
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in unit and "ProtectSystem=strict" in unit
    assert "@" not in unit  # every placeholder rendered
    made = calls(systemd)
    assert made[:3] == [
        "systemctl daemon-reload",
        "systemctl enable --quiet apuppet.service",
        "systemctl restart apuppet.service",
    ]
    assert stat.S_IMODE((site / "credentials").stat().st_mode) == 0o700
    assert (site / "data").is_dir()
    assert "journalctl -u apuppet -f" in out.stdout
    first = pid(systemd)

    # Again, nothing changed: the server keeps running, and its sessions with it.
    out = install(cfg, venv, **systemd)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not restarted" in out.stdout
    assert not any("restart" in c or "daemon-reload" in c for c in calls(systemd))
    assert pid(systemd) == first

    # The seed's flow: nat + public_ip in config.yaml, ./install.sh applies it.
    text = cfg.read_text()
    cfg.write_text(text.replace("nat: false", "nat: true").replace('public_ip: ""', 'public_ip: "77.222.59.36"'))
    out = install(cfg, venv, **systemd)
    assert out.returncode == 0, out.stdout + out.stderr
    made = calls(systemd)
    assert "systemctl restart apuppet.service" in made and "systemctl daemon-reload" not in made
    assert pid(systemd) != first
    assert "NAT:                advertising 77.222.59.36" in out.stdout
    assert "advertising public IP 77.222.59.36" in Path(systemd["STUB_SERVER_LOG"]).read_text()

    # A wrong edit is refused before systemd is touched; the running server is left alone.
    running = pid(systemd)
    cfg.write_text(text.replace("nat: false", "nat: true"))
    out = install(cfg, venv, **systemd)
    assert out.returncode != 0 and "nothing was changed" in out.stderr
    assert calls(systemd) == [] and pid(systemd) == running


def test_systemd_path_reloads_a_new_certificate(tmp_path: Path, venv: Path, systemd: dict[str, str]) -> None:
    site = tmp_path / "site"
    site.mkdir()
    keys = site / "credentials" / "tls"
    make = [f"{venv}/bin/apuppet", "tls", "self-signed", "--hostname", "localhost", "--out", str(keys), "--force"]
    subprocess.run(make, check=True, capture_output=True, timeout=60)
    cfg = site / "config.yaml"
    cfg.write_text(site_config(tls=keys))
    out = install(cfg, venv, **systemd)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "TLS:                self-signed, localhost" in out.stdout
    running = pid(systemd)
    calls(systemd)

    subprocess.run(make, check=True, capture_output=True, timeout=60)  # as certbot's renewal would
    out = install(cfg, venv, **systemd)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "reloading the TLS certificate" in out.stdout
    made = calls(systemd)
    assert "systemctl reload apuppet.service" in made and "systemctl restart apuppet.service" not in made
    assert pid(systemd) == running


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_template_verifies(tmp_path: Path) -> None:
    text = (REPO / "deploy" / "apuppet.service.in").read_text()
    for key, value in {
        "REPO": str(REPO),
        "BASE": str(tmp_path),
        "VENV": "/usr",
        "CONFIG": str(tmp_path / "config.yaml"),
        "USER": "root",
        "CREDENTIALS_DIR": str(tmp_path),
        "DATA_DIR": str(tmp_path),
        "RECORDINGS_DIR": str(tmp_path),
    }.items():
        text = text.replace(f"@{key}@", value)
    unit = tmp_path / "apuppet.service"
    unit.write_text(text.replace("/usr/bin/apuppet", sys.executable))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in out.stderr.splitlines() if "apuppet.service" in line]
    assert not problems, out.stderr


def test_certbot_deploy_hook_copies_and_reloads(tmp_path: Path, systemd: dict[str, str]) -> None:
    """The renewal hook, rendered as install.sh renders it, run the way certbot runs it (certbot itself needs the
    Internet and a public name: it cannot run here)."""
    text = (REPO / "deploy" / "certbot-deploy-hook.sh.in").read_text()
    tls_dir = tmp_path / "credentials" / "tls"
    values = {
        "SERVER_NAME": "remote.example.org",
        "USER": getpass.getuser(),
        "TLS_DIR": str(tls_dir),
        "TURN_TLS_DIR": str(tmp_path / "no-coturn-here"),  # turn: false, the coturn copy is skipped
    }
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    assert "@" not in text
    hook = tmp_path / "apuppet.sh"
    hook.write_text(text)
    hook.chmod(0o755)
    lineage = tmp_path / "live"
    lineage.mkdir()
    (lineage / "fullchain.pem").write_text("CERT 1\n")
    (lineage / "privkey.pem").write_text("KEY 1\n")
    env = {**os.environ, **systemd, "RENEWED_LINEAGE": str(lineage)}

    # Another certificate of the same host's certbot: not ours, nothing happens.
    subprocess.run([str(hook)], check=True, env={**env, "RENEWED_DOMAINS": "other.example.org"}, timeout=30)
    assert not tls_dir.exists()

    Path(systemd["STUB_PID"]).write_text(str(os.getpid()))  # "active": reload must be asked for
    old = signal.signal(signal.SIGHUP, lambda *_: None)
    try:
        subprocess.run([str(hook)], check=True, env={**env, "RENEWED_DOMAINS": "remote.example.org"}, timeout=30)
    finally:
        signal.signal(signal.SIGHUP, old)
        Path(systemd["STUB_PID"]).unlink()
    assert (tls_dir / "fullchain.pem").read_text() == "CERT 1\n"
    assert stat.S_IMODE((tls_dir / "privkey.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    assert "systemctl reload apuppet.service" in calls(systemd)
    assert not list(tls_dir.glob(".*"))  # no temporary files left


@pytest.mark.skipif(not Path("/usr/bin/turnserver").exists(), reason="coturn is not installed")
def test_turn_true_writes_coturn_config_that_accepts_the_minted_credentials(tmp_path: Path, venv: Path) -> None:
    """install.sh with `turn: true`: the shared secret generated into credentials_dir, coturn's configuration
    written with it; Debian's coturn started on that file (listening on loopback only) then relays for the
    credentials the doctor mints, as browsers get them."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        turn_port = s.getsockname()[1]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        SHIPPED.replace('public_ip: ""', 'public_ip: "127.0.0.1"').replace("turn: false", "turn: true")
        + f'turn_port: {turn_port}\nturn_relay_range: "49340-49359"\n'
    )
    conf = tmp_path / "turnserver.conf"
    out = install(cfg, venv, APUPPET_TURN_CONF=str(conf))
    assert out.returncode == 0, out.stdout + out.stderr
    secret_file = tmp_path / "credentials" / "turn_secret"
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32 and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    text = conf.read_text()
    assert stat.S_IMODE(conf.stat().st_mode) & 0o007 == 0  # the secret is not for everyone
    assert f"static-auth-secret={secret}\n" in text and "use-auth-secret\n" in text
    assert "realm=127.0.0.1\n" in text and "min-port=49340\nmax-port=49359\n" in text
    assert "denied-peer-ip=127.0.0.0-127.255.255.255\n" in text and "denied-peer-ip=10.0.0.0-10.255.255.255\n" in text
    assert "allowed-peer-ip=127.0.0.1\n" in text  # this server's own (public_ip) address
    assert f"turnserver -c {conf}" in out.stdout
    assert f"ufw allow {turn_port} && ufw allow 49340:49359/udp" in out.stdout
    assert f"TCP+UDP {turn_port}" in out.stdout and "UDP 49340-49359" in out.stdout
    assert secret not in out.stdout + out.stderr

    coturn = subprocess.Popen(
        ["/usr/bin/turnserver", "-c", str(conf), "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"]
        + ["--pidfile", str(tmp_path / "turn.pid"), "--db", str(tmp_path / "turndb"), "--no-stdout-log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", turn_port), timeout=0.5):
                break
            assert time.monotonic() < deadline and coturn.poll() is None, "coturn did not start"
            time.sleep(0.1)
        doctor = subprocess.run(
            [str(venv / "bin" / "apuppet"), "doctor", "--config", str(cfg), "--no-ports"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        coturn.terminate()
        coturn.wait(10)
    for transport in ("udp", "tcp"):
        url = f"turn:127.0.0.1:{turn_port}?transport={transport}"
        assert f"{url} accepted the minted credentials and relays from 127.0.0.1" in doctor.stdout, doctor.stdout
