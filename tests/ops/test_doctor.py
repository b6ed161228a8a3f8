"""The NAT doctor: the decision on made-up facts (every branch of the guide's test), fact gathering with injected
DNS and interfaces, and one run for real on loopback against a STUN responder started here."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apuppet.config import load, validate
from apuppet.ops import doctor
from apuppet.ops.doctor import FAIL, OK, SKIP, WARN, Facts, Interface, PortCheck

from .responder import StunResponder

PRIVATE = [Interface("lo", "127.0.0.1"), Interface("ens5", "10.0.0.12"), Interface("ens5", "fe80::1")]
PUBLIC = [Interface("lo", "127.0.0.1"), Interface("eth0", "77.222.59.36")]


def config(**kw):  # type: ignore[no-untyped-def]
    return validate({"hostname": "srv.example.org", "web_http_port": 8080, "is_certbot_enabled": False, **kw})


def levels(report: doctor.Report) -> list[str]:
    return [f.level for f in report.findings]


def text(report: doctor.Report) -> str:
    return "\n".join(f.text for f in report.findings)


def test_public_interface_not_nat() -> None:
    report = doctor.diagnose(config(), Facts(resolved=["77.222.59.36"], interfaces=PUBLIC))
    assert report.fits and report.exit_code == 0
    assert "is on interface eth0: not behind a NAT" in text(report)
    assert report.advice == {}


def test_nat_detected_by_dns_advises_lines() -> None:
    report = doctor.diagnose(config(), Facts(resolved=["77.222.59.36"], interfaces=PRIVATE))
    assert not report.fits and report.exit_code == 1
    assert report.advice == {"nat": "true", "public_ip": '"77.222.59.36"'}
    out = doctor.render(report, "config.yaml")
    assert '  nat: true\n  public_ip: "77.222.59.36"' in out
    assert "does not fit" in out


def test_nat_configured_fits() -> None:
    cfg = config(nat=True, public_ip="77.222.59.36")
    report = doctor.diagnose(cfg, Facts(resolved=["77.222.59.36"], interfaces=PRIVATE))
    assert report.fits, text(report)
    assert "nat: true and public_ip 77.222.59.36 match" in text(report)


def test_wrong_public_ip() -> None:
    cfg = config(nat=True, public_ip="198.51.100.1")
    report = doctor.diagnose(cfg, Facts(resolved=["77.222.59.36"], interfaces=PRIVATE))
    assert not report.fits
    assert report.advice["public_ip"] == '"77.222.59.36"'


def test_stun_is_preferred_and_dns_mismatch_fails() -> None:
    facts = Facts(resolved=["198.51.100.9"], interfaces=PRIVATE, stun_server="stun:x", stun_mapped="77.222.59.36")
    report = doctor.diagnose(config(), facts)
    assert not report.fits
    assert "fix the DNS record (A srv.example.org -> 77.222.59.36)" in text(report)
    assert report.advice == {"nat": "true", "public_ip": '"77.222.59.36"'}


def test_stun_only_without_hostname() -> None:
    cfg = validate({"nat": True, "public_ip": "77.222.59.36"})
    facts = Facts(interfaces=PRIVATE, stun_server="stun:x", stun_mapped="77.222.59.36")
    report = doctor.diagnose(cfg, facts)
    assert report.fits
    assert levels(report)[0] == SKIP


def test_nat_true_on_public_host() -> None:
    cfg = config(nat=True, public_ip="198.51.100.1")
    report = doctor.diagnose(cfg, Facts(resolved=["77.222.59.36"], interfaces=PUBLIC))
    assert not report.fits
    assert report.advice == {"nat": "false", "public_ip": '""'}
    # The same address as an interface's is only unnecessary.
    cfg = config(nat=True, public_ip="77.222.59.36")
    report = doctor.diagnose(cfg, Facts(resolved=["77.222.59.36"], interfaces=PUBLIC))
    assert report.fits and WARN in levels(report)


def test_offline_says_what_it_could_not_check() -> None:
    facts = Facts(resolve_error="Temporary failure in name resolution", interfaces=PRIVATE, stun_server="stun:x")
    facts.stun_error = "no answer within 3 s"
    report = doctor.diagnose(config(), facts)
    assert report.fits
    out = doctor.render(report, "config.yaml")
    assert "could not resolve srv.example.org: Temporary failure" in out
    assert "could not ask stun:x: no answer" in out
    assert "2 check(s) could not be made" in out


def test_private_host_without_public_address_still_names_the_lines() -> None:
    report = doctor.diagnose(validate({}), Facts(interfaces=PRIVATE))
    assert report.fits  # a LAN-only server is fine; the lines are for a host the Internet reaches
    assert report.advice == {"nat": "true", "public_ip": '"<address the Internet sees>"'}
    out = doctor.render(report, "/etc/apuppet.yaml")
    assert 'put these lines in /etc/apuppet.yaml, then run ./install.sh:\n\n  nat: true\n  public_ip: "<address' in out
    assert "apuppet doctor --config /etc/apuppet.yaml --stun stun:" in out
    assert "set hostname:" in out and "cloud console" in out
    # With a hostname set, the doctor does not tell to set it.
    with_name = doctor.diagnose(config(), Facts(resolve_error="unknown", interfaces=PRIVATE))
    assert not any("set hostname" in way for way in with_name.how_to_find)


def test_private_host_finds_its_public_address_through_stun() -> None:
    """Real STUN on loopback, made-up private interfaces: the address the responder reports is the one to add."""
    with StunResponder(mapped="198.51.100.23") as responder:
        facts = doctor.gather(validate({"stun_server": responder.url}), interfaces=lambda: PRIVATE, check_ports=False)
    report = doctor.diagnose(validate({}), facts)
    out = doctor.render(report, "config.yaml")
    assert '  nat: true\n  public_ip: "198.51.100.23"' in out
    assert "could not find" not in out and report.how_to_find == []


def test_private_host_with_silent_stun_says_how_to_find_the_address() -> None:
    with StunResponder(silent=True) as responder:
        cfg = validate({"stun_server": responder.url})
        facts = doctor.gather(cfg, interfaces=lambda: PRIVATE, check_ports=False)
    assert responder.requests >= 1
    out = doctor.render(doctor.diagnose(cfg, facts), "config.yaml")
    assert '  nat: true\n  public_ip: "<address the Internet sees>"' in out
    assert f"{responder.url} did not answer" in out


def test_etc_hosts_loopback_is_not_trusted() -> None:
    report = doctor.diagnose(config(), Facts(resolved=["127.0.1.1"], interfaces=PRIVATE))
    assert "on this host (an /etc/hosts entry?)" in text(report)
    assert "not behind a NAT" not in text(report)


def test_ipv6_only_record_warns() -> None:
    report = doctor.diagnose(config(), Facts(resolved=["2001:db8::5"], interfaces=PRIVATE))
    assert "no IPv4 (A) record" in text(report)


def test_port_findings() -> None:
    facts = Facts(
        resolved=["77.222.59.36"],
        interfaces=PUBLIC,
        ports=[
            PortCheck("tcp", 80, 80, "web", denied=True),
            PortCheck("tcp", 8080, 8080, "web", busy=(8080,), served_by_janus=True),
            PortCheck("udp", 10000, 10009, "media", busy=(10001, 10002)),
        ],
    )
    report = doctor.diagnose(config(), facts)
    assert report.fits
    assert [f.level for f in report.findings[-3:]] == [WARN, OK, WARN]
    assert "2 of 10 ports are in use" in text(report)

    facts.ports = [PortCheck("tcp", 8080, 8080, "web", busy=(8080,))]
    assert not doctor.diagnose(config(), facts).fits
    facts.ports = [PortCheck("udp", 10000, 10001, "media", busy=(10000, 10001))]
    assert not doctor.diagnose(config(), facts).fits
    facts.ports = [PortCheck("udp", 10000, 10001, "media", error="Cannot assign requested address")]
    assert FAIL in levels(doctor.diagnose(config(), facts))


def test_firewall_lines_are_the_configured_ports_not_all_udp() -> None:
    cfg = config(rtp_port_range="20000-20099", api_http=False, api_https=False, api_wss=False)
    assert doctor.firewall_lines(cfg) == [
        "TCP 8080        web + API (http)",
        "UDP 20000-20099 device video (RTP) and WebRTC (ICE)",
    ]


def test_certbot_needs_port_80() -> None:
    report = doctor.diagnose(config(is_certbot_enabled=True), Facts(resolved=["77.222.59.36"], interfaces=PUBLIC))
    assert "set web_http_port: 80" in text(report)


def test_gather_with_injected_resolver_and_interfaces() -> None:
    asked: list[str] = []

    def resolver(name: str) -> list[str]:
        asked.append(name)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    facts = doctor.gather(config(), resolver=resolver, interfaces=lambda: PRIVATE, check_ports=False)
    assert asked == ["srv.example.org"]
    assert facts.resolved is None and facts.resolve_error == "Name or service not known"
    assert facts.interfaces == PRIVATE and facts.ports == []


def free_udp_range(count: int) -> tuple[int, int]:
    """A run of `count` free UDP ports (checked right now; other tests may race, which the doctor reports)."""
    for low in range(42000, 60000, 97):
        try:
            socks = []
            for port in range(low, low + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return low, low + count - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP range")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, **extra: str) -> None:
    low, high = free_udp_range(20)
    lines = {
        "bind": "127.0.0.1",
        "web_http_port": str(free_tcp_port()),
        "api_http": "false",
        "rtp_port_range": f'"{low}-{high}"',
        **extra,
    }
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))


def run_doctor(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apuppet", "doctor", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_real_loopback_fits(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    with StunResponder() as responder:
        write_config(cfg, stun_server=f'"{responder.url}"')
        out = run_doctor(cfg)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{responder.url} sees this host's UDP traffic coming from 127.0.0.1" in out.stdout
    assert "127.0.0.1 (STUN) is on interface" in out.stdout
    assert "can be bound on 127.0.0.1" in out.stdout
    assert responder.requests >= 1


def test_real_loopback_behind_nat_then_fixed(tmp_path: Path) -> None:
    """The seed's flow: the doctor finds the NAT and prints the lines; with them in config.yaml it passes."""
    cfg = tmp_path / "config.yaml"
    with StunResponder(mapped="203.0.113.7") as responder:
        write_config(cfg)
        out = run_doctor(cfg, "--stun", responder.url)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "203.0.113.7 (STUN) is not on any interface: this host is behind a NAT" in out.stdout
        assert 'nat: true\n  public_ip: "203.0.113.7"' in out.stdout
        with cfg.open("a") as fh:
            fh.write('nat: true\npublic_ip: "203.0.113.7"\n')
        out = run_doctor(cfg, "--stun", responder.url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "nat: true and public_ip 203.0.113.7 match" in out.stdout


def test_real_port_in_use_by_another_program(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    write_config(cfg)
    port = int(next(line.split(":")[1] for line in cfg.read_text().splitlines() if line.startswith("web_http")))
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen(1)
        out = run_doctor(cfg)
    assert out.returncode == 1
    assert f"TCP {port} (web + API (http)) is in use by another program" in out.stdout


def test_invalid_config_and_stun_url(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("nat: true\n")
    out = run_doctor(cfg)
    assert out.returncode == 2 and "nat: true needs public_ip" in out.stderr
    cfg.write_text("")
    out = run_doctor(cfg, "--stun", "http://x")
    assert out.returncode == 2 and "not a STUN URL" in out.stderr


@pytest.mark.parametrize("name", ["localhost"])
def test_resolve_real(name: str) -> None:
    assert "127.0.0.1" in doctor.resolve(name) or "::1" in doctor.resolve(name)


def test_local_interfaces_real() -> None:
    assert any(i.address == "127.0.0.1" for i in doctor.local_interfaces())


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_gather_for_real_leaves_no_socket(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.yaml"
    write_config(cfg_path)
    cfg, _ = load(cfg_path)
    before = open_fds()
    with StunResponder() as responder:
        for _ in range(20):
            facts = doctor.gather(cfg, stun_url=responder.url)
    assert open_fds() == before
    assert facts.stun_mapped == "127.0.0.1"
    assert [p.proto for p in facts.ports] == ["tcp", "udp"]


def test_running_server_is_recognised(tmp_path: Path) -> None:
    """A port held by a running apuppet is fine: `apuppet doctor` on a live host must not fail because of it."""
    cfg = tmp_path / "config.yaml"
    write_config(cfg)
    proc = subprocess.Popen(
        [sys.executable, "-m", "apuppet", "serve", "--config", str(cfg)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            if not line or "ready" in line:
                break
        out = run_doctor(cfg)
        assert "is in use by a running Janus-compatible server" in out.stdout, out.stdout
        assert out.returncode == 0, out.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()  # type: ignore[union-attr]
