"""`apuppet doctor`: the "Is my host behind a NAT?" test of the aPuppet guide, automated, plus the port checks
that explain most "it does not start" and "black screen" reports.

The guide's test: resolve the hostname from somewhere else, look for that address among the host's interfaces;
if it is not there, the host is behind a NAT and config.yaml needs `nat: true` and `public_ip`. A STUN answer is
the same fact seen from outside. `diagnose()` is a pure function of the facts (so every branch is testable with
made-up addresses); `gather()` collects the facts with real DNS, interfaces, sockets and STUN.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..config import Config, parse_port_range
from . import stun
from .turn import TurnProbe, check_config

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass(frozen=True)
class Interface:
    name: str
    address: str


@dataclass(frozen=True)
class PortCheck:
    """Whether a TCP port or a UDP range can be bound. `busy` lists ports already taken, `denied` means the
    user may not bind them (privileged ports), `error` any other failure (e.g. `bind` is not a local address)."""

    proto: str
    low: int
    high: int
    purpose: str
    busy: tuple[int, ...] = ()
    denied: bool = False
    error: str = ""
    served_by_janus: bool = False

    @property
    def label(self) -> str:
        ports = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        return f"{self.proto.upper()} {ports}"


@dataclass
class Facts:
    """What `gather()` found; None means "not checked" and the matching *_error says why."""

    resolved: list[str] | None = None
    resolve_error: str = ""
    interfaces: list[Interface] = field(default_factory=list)
    stun_server: str = ""
    stun_mapped: str | None = None
    stun_error: str = ""
    ports: list[PortCheck] = field(default_factory=list)
    #: One real allocation per TURN URL a browser is given (None: not checked).
    turn: list[TurnProbe] | None = None


@dataclass(frozen=True)
class Finding:
    level: str
    text: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    #: config.yaml lines to set, in order (key -> YAML value).
    advice: dict[str, str] = field(default_factory=dict)
    #: How to find a value the doctor could not find itself (the advice then holds a <placeholder>).
    how_to_find: list[str] = field(default_factory=list)
    firewall: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not any(f.level == FAIL for f in self.findings)

    @property
    def exit_code(self) -> int:
        return 0 if self.fits else 1

    def add(self, level: str, text: str) -> None:
        self.findings.append(Finding(level, text))


# -- the decision (pure) ---------------------------------------------------------------------------------------------


def _is_global(text: str) -> bool:
    ip = _ip(text)
    return ip is not None and ip.is_global


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _is_v4(text: str) -> bool:
    return isinstance(_ip(text), ipaddress.IPv4Address)


def _is_loopback(text: str) -> bool:
    ip = _ip(text)
    return bool(ip and ip.is_loopback)


def _join(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "none"


def tcp_ports(config: Config) -> list[tuple[int, str]]:
    """(port, purpose) of every TCP port the server opens, as the server decides it."""
    from ..listeners import listeners

    return [(item.port, item.purpose) for item in listeners(config)]


def firewall_lines(config: Config) -> list[str]:
    """The inbound openings: each TCP port the server listens on and the UDP range, never "all UDP"."""
    low, high = config.port_range
    lines = [f"TCP {port:<11} {purpose}" for port, purpose in tcp_ports(config) if port]
    lines.append(f"UDP {low}-{high:<5} device video (RTP) and WebRTC (ICE)")
    if config.turn:
        relay_low, relay_high = parse_port_range(config.turn_relay_range)
        lines.append(f"TCP+UDP {config.turn_port:<7} TURN (coturn) for browsers on networks that drop UDP")
        if config.tls_enabled and config.hostname:
            lines.append(f"TCP {config.turn_tls_port:<11} TURN over TLS (coturn)")
        lines.append(f"UDP {relay_low}-{relay_high:<5} TURN relay ports (coturn)")
    return lines


def diagnose(config: Config, facts: Facts) -> Report:
    report = Report(firewall=firewall_lines(config))
    local = {(_ip(i.address) or i.address) for i in facts.interfaces}
    by_address = {(_ip(i.address) or i.address): i.name for i in facts.interfaces}

    # 1. What name do clients use, and where does it point?
    dns_v4: list[str] = []
    if not config.hostname:
        report.add(SKIP, "hostname is not set: its DNS record cannot be compared with this host's addresses")
    elif facts.resolved is None:
        report.add(SKIP, f"could not resolve {config.hostname}: {facts.resolve_error or 'not checked'}")
    else:
        looped = [a for a in facts.resolved if _is_loopback(a)]
        usable = [a for a in facts.resolved if not _is_loopback(a)]
        v4 = [a for a in usable if _is_v4(a)]
        v6 = [a for a in usable if not _is_v4(a)]
        if looped and not usable:
            report.add(
                WARN,
                f"{config.hostname} resolves to {_join(looped)} on this host (an /etc/hosts entry?): its public "
                f"DNS record cannot be seen from here; run `ping {config.hostname}` on another computer",
            )
        else:
            report.add(OK, f"{config.hostname} resolves to {_join(v4)} (A), {_join(v6)} (AAAA)")
            if not v4:
                report.add(
                    WARN,
                    f"{config.hostname} has no IPv4 (A) record: aPuppet's Android agents and most mobile "
                    "networks need one; ask the DNS or hosting provider for an IPv4 address",
                )
        dns_v4 = v4

    shown = [f"{i.address} ({i.name})" for i in facts.interfaces if not _is_loopback(i.address)]
    report.add(OK if shown else WARN, f"interface addresses: {_join(shown)}")

    # 2. What address does the Internet see?
    stun_v4: str | None = None
    if not facts.stun_server:
        report.add(SKIP, "no stun_server configured (or --stun stun:HOST:PORT): the outside view comes from DNS only")
    elif facts.stun_mapped is None:
        report.add(SKIP, f"could not ask {facts.stun_server}: {facts.stun_error or 'not checked'}")
    else:
        report.add(OK, f"{facts.stun_server} sees this host's UDP traffic coming from {facts.stun_mapped}")
        if _is_v4(facts.stun_mapped):
            stun_v4 = facts.stun_mapped

    if stun_v4 and dns_v4 and stun_v4 not in dns_v4:
        report.add(
            FAIL,
            f"{config.hostname} points to {_join(dns_v4)} but this host's traffic leaves from {stun_v4}: phones "
            f"send their video to the hostname's address, so fix the DNS record (A {config.hostname} -> {stun_v4}) "
            "or use a host with a 1:1 NAT",
        )

    # 3. The guide's test: is that address on one of our interfaces?
    public = stun_v4 or (dns_v4[0] if dns_v4 else None)
    source = "STUN" if stun_v4 else "DNS"
    if public is None:
        globals_ = [i.address for i in facts.interfaces if _is_v4(i.address) and _is_global(i.address)]
        if globals_:
            report.add(
                OK,
                f"public IPv4 on an interface ({_join(globals_)}): probably not behind a NAT (not confirmed: "
                "set hostname or stun_server to confirm)",
            )
            if config.nat and config.public_ip not in globals_:
                report.add(WARN, f"nat: true with public_ip {config.public_ip}, which is not on any interface")
        elif config.nat:
            report.add(SKIP, f"cannot confirm public_ip {config.public_ip}: no DNS record or STUN answer to compare")
        else:
            report.add(
                WARN,
                "only private addresses on the interfaces: the host is behind a NAT unless it serves a LAN only, "
                "and the address the Internet sees could not be found from here",
            )
            # The user still needs the two lines; only the value is missing, so say where it comes from.
            report.advice.update({"nat": "true", "public_ip": f'"{PUBLIC_IP_PLACEHOLDER}"'})
            report.how_to_find = _how_to_find_public_ip(config, facts)
    elif (_ip(public) or public) in local:
        report.add(OK, f"{public} ({source}) is on interface {by_address[_ip(public) or public]}: not behind a NAT")
        if config.nat:
            if (_ip(config.public_ip) or config.public_ip) in local:
                report.add(WARN, "nat: true is not needed here (public_ip is a local address); nat: false will do")
            else:
                report.add(FAIL, f"nat: true advertises {config.public_ip}, but this host is reached at {public}")
                report.advice.update({"nat": "false", "public_ip": '""'})
    else:
        report.add(OK, f"{public} ({source}) is not on any interface: this host is behind a NAT")
        if not config.nat:
            report.add(FAIL, "config.yaml says nat: false: browsers and phones would get unreachable ICE candidates")
            report.advice.update({"nat": "true", "public_ip": f'"{public}"'})
        elif config.public_ip != public:
            report.add(FAIL, f"public_ip is {config.public_ip} but the Internet sees this host as {public}")
            report.advice.update({"nat": "true", "public_ip": f'"{public}"'})
        else:
            report.add(OK, f"nat: true and public_ip {public} match")

    # 4. Can the server open its ports?
    for check in facts.ports:
        _port_finding(report, config, check)

    # 5. Do the TURN servers relay for browsers with the credentials they are handed?
    for probe in facts.turn or []:
        if probe.relayed is not None:
            report.add(OK, f"{probe.url} accepted the minted credentials and relays from {probe.relayed[0]}")
        elif probe.refused:
            report.add(
                FAIL,
                f"{probe.url} {probe.error}: turn_secret must equal coturn's static-auth-secret (and the clocks "
                "agree); browsers on networks that drop UDP get no video",
            )
        else:
            report.add(FAIL, f"{probe.url} did not relay ({probe.error}): browsers that need TURN get no video")

    if config.is_certbot_enabled and not config.tls_enabled:
        if not config.hostname:
            report.add(WARN, "is_certbot_enabled needs hostname: no certificate will be requested")
        elif config.web_http_port != 80:
            report.add(
                WARN,
                f"is_certbot_enabled: Let's Encrypt checks http://{config.hostname}:80/, but web_http_port is "
                f"{config.web_http_port}; set web_http_port: 80 (and web_https_port: 443)",
            )
    return report


PUBLIC_IP_PLACEHOLDER = "<address the Internet sees>"


def _how_to_find_public_ip(config: Config, facts: Facts) -> list[str]:
    ways = []
    if facts.stun_server:
        ways.append(
            f"{facts.stun_server} did not answer ({facts.stun_error or 'not checked'}): check that it is reachable"
        )
    ways.append("ask a public STUN server: apuppet doctor --config {config} --stun stun:stun.l.google.com:19302")
    if not config.hostname:
        ways.append("or set hostname: to the DNS name phones and browsers use, and run the doctor again")
    ways += [
        "or read the instance's public IP in the cloud console (AWS: Elastic IP; Oracle: reserved public IP)",
        "or run `curl -4 https://ifconfig.me` on this host",
    ]
    return ways


def _port_finding(report: Report, config: Config, check: PortCheck) -> None:
    where = f"on {config.bind}"
    count = check.high - check.low + 1
    if check.error:
        report.add(FAIL, f"{check.label} ({check.purpose}) cannot be bound {where}: {check.error}")
    elif check.denied:
        report.add(
            WARN,
            f"{check.label} ({check.purpose}): this user may not bind ports below 1024; root or "
            "CAP_NET_BIND_SERVICE can (the systemd unit of ./install.sh grants it)",
        )
    elif check.proto == "tcp" and check.busy:
        if check.served_by_janus:
            report.add(OK, f"{check.label} ({check.purpose}) is in use by a running Janus-compatible server")
        else:
            report.add(
                FAIL,
                f"{check.label} ({check.purpose}) is in use by another program (`ss -ltnp 'sport = :{check.low}'` "
                "names it)",
            )
    elif check.proto == "udp" and len(check.busy) == count:
        report.add(FAIL, f"{check.label}: every port is in use; the server could not take any")
    elif check.busy:
        report.add(
            WARN,
            f"{check.label}: {len(check.busy)} of {count} ports are in use (a running apuppet holds some, one "
            "per mountpoint and per ICE candidate)",
        )
    else:
        report.add(OK, f"{check.label} ({check.purpose}) can be bound {where}")


def render(report: Report, config_path: str) -> str:
    from ..runtime import printable  # findings quote DNS answers and a STUN server's error text

    marks = {OK: "ok  ", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}
    lines = [f"apuppet doctor ({config_path})", ""]
    lines += [f"  {marks[f.level]}  {printable(f.text)}" for f in report.findings]
    if report.advice and report.how_to_find:
        lines += [
            "",
            f"If the Internet reaches this host, put these lines in {config_path}, then run ./install.sh:",
            "",
        ]
        lines += [f"  {key}: {value}" for key, value in report.advice.items()]
        lines += ["", f"The doctor could not find the {PUBLIC_IP_PLACEHOLDER}; to find it:"]
        lines += [f"  - {printable(way.replace('{config}', config_path))}" for way in report.how_to_find]
    elif report.advice:
        lines += ["", f"Put these lines in {config_path}, then run ./install.sh:", ""]
        lines += [f"  {key}: {value}" for key, value in report.advice.items()]
    lines += ["", "Inbound openings for the firewall and the cloud security group (not checked from here):"]
    lines += [f"  {line}" for line in report.firewall]
    skipped = sum(f.level == SKIP for f in report.findings)
    lines.append("")
    if report.fits:
        tail = f" ({skipped} check(s) could not be made, see 'skip')" if skipped else ""
        lines.append(f"Result: the configuration fits this host{tail}.")
    else:
        lines.append("Result: the configuration does not fit this host (see FAIL above).")
    return "\n".join(lines)


# -- collecting the facts (I/O) ----------------------------------------------------------------------------------------


def resolve(hostname: str) -> list[str]:
    """Every A and AAAA address of `hostname`, in resolver order, without duplicates."""
    infos = socket.getaddrinfo(hostname, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def local_interfaces() -> list[Interface]:
    """The host's addresses, the `ip -c a` step of the guide (ifaddr comes with aioice)."""
    import ifaddr

    found: list[Interface] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            found.append(Interface(adapter.nice_name, address))
    return found


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bind_error(exc: OSError) -> tuple[bool, bool, str]:
    """(busy, denied, other error) from a failed bind."""
    if exc.errno == errno.EADDRINUSE:
        return True, False, ""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return False, True, ""
    return False, False, exc.strerror or str(exc)


def janus_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a Janus-compatible server (a running apuppet) holds the port: then "in use" is fine. Tries HTTP,
    then HTTPS without verifying the certificate (this identifies the server, it does not trust it)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    for scheme, context in (("http", None), ("https", unverified)):
        try:
            with urllib.request.urlopen(f"{scheme}://{netloc}/janus/info", timeout=timeout, context=context) as reply:
                if json.loads(reply.read(65536)).get("janus") == "server_info":
                    return True
        except (OSError, ValueError, urllib.error.URLError, AttributeError):
            continue
    return False


def check_tcp(host: str, port: int, purpose: str) -> PortCheck:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError as exc:
            busy, denied, error = _bind_error(exc)
            if busy:
                return PortCheck("tcp", port, port, purpose, busy=(port,), served_by_janus=janus_answers(host, port))
            return PortCheck("tcp", port, port, purpose, denied=denied, error=error)
    return PortCheck("tcp", port, port, purpose)


def check_udp(host: str, low: int, high: int, purpose: str) -> PortCheck:
    busy: list[int] = []
    for port in range(low, high + 1):
        with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                is_busy, denied, error = _bind_error(exc)
                if not is_busy:
                    return PortCheck("udp", low, high, purpose, denied=denied, error=error)
                busy.append(port)
    return PortCheck("udp", low, high, purpose, busy=tuple(busy))


def gather(
    config: Config,
    *,
    stun_url: str = "",
    resolver: Callable[[str], list[str]] = resolve,
    interfaces: Callable[[], list[Interface]] = local_interfaces,
    stun_query: Callable[[stun.StunServer], tuple[str, int]] = stun.query,
    check_ports: bool = True,
    check_turn: bool = True,
) -> Facts:
    facts = Facts()
    if config.hostname:
        try:
            facts.resolved = resolver(config.hostname)
        except (OSError, UnicodeError) as exc:
            facts.resolve_error = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    facts.interfaces = interfaces()
    url = stun_url or config.stun_server
    if url:
        facts.stun_server = url
        try:
            facts.stun_mapped = stun_query(stun.parse_url(url))[0]
        except stun.StunError as exc:
            facts.stun_error = str(exc)
    if check_ports:
        host = config.bind or "0.0.0.0"
        for port, purpose in tcp_ports(config):
            if port:
                facts.ports.append(check_tcp(host, port, purpose))
        low, high = config.port_range
        facts.ports.append(check_udp(host, low, high, "device video (RTP) and WebRTC (ICE)"))
    if check_turn and (config.turn or config.turn_servers):
        facts.turn = asyncio.run(check_config(config))
    return facts
