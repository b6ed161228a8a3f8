"""Operator commands: `apuppet doctor`, `apuppet config check|secrets|set`, `apuppet tls self-signed`,
`apuppet recordings list|export`.

`./install.sh` drives the server through these commands, so that validation, secret generation and the summary it
prints are the same Python code the server runs, not a second reading of config.yaml in shell.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, ConfigError, ensure_secrets, read_secrets, resolve, validate
from ..runtime import add_config_option, load_config
from . import coturn, doctor, recordings, tls


def register(subparsers: Any) -> None:
    _register_doctor(subparsers)
    _register_config(subparsers)
    _register_tls(subparsers)
    _register_recordings(subparsers)


# -- doctor ------------------------------------------------------------------------------------------------------------


def _register_doctor(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check that config.yaml fits this host: NAT, public IP, ports",
        description="Automates the 'Is my host behind a NAT?' test: resolves hostname, lists the interface "
        "addresses, asks the STUN server (stun_server or --stun) which address the Internet sees, checks that the "
        "TCP ports and the UDP rtp_port_range can be bound, and prints the config.yaml lines to set. "
        "Exit status 0 when the configuration fits, 1 when it does not, 2 when config.yaml is invalid.",
    )
    add_config_option(parser)
    parser.add_argument("--stun", default="", metavar="URL", help="ask this STUN server, e.g. stun:stun.example.org")
    parser.add_argument(
        "--no-ports", action="store_true", help="skip the port checks (e.g. while the server is running elsewhere)"
    )
    parser.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    if loaded is None:
        return 2
    config, base = loaded
    try:
        # The TURN check mints credentials the way the server does, from turn_secret in credentials_dir.
        config, _ = read_secrets(config, base)
    except OSError as exc:
        print(f"apuppet doctor: cannot read the secrets in {config.credentials_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    if args.stun:
        try:
            doctor.stun.parse_url(args.stun)
        except doctor.stun.StunError as exc:
            print(f"apuppet doctor: --stun: {exc}", file=sys.stderr)
            return 2
    facts = doctor.gather(config, stun_url=args.stun, check_ports=not args.no_ports)
    report = doctor.diagnose(config, facts)
    print(doctor.render(report, args.config))
    return report.exit_code


# -- config check / set ------------------------------------------------------------------------------------------------


def _register_config(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="validate config.yaml and generate missing secrets; change keys",
        description="Configuration helpers used by ./install.sh.",
    )
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    check = sub.add_parser(
        "check",
        help="validate config.yaml, print the URLs and firewall openings (changes nothing)",
        description="Validate config.yaml (and the TLS certificate and key it names) without starting the server, "
        "and print a summary. A check writes nothing: missing secrets are only named (`apuppet config secrets`, "
        "./install.sh or the server's first start generate them). Exit status 2 when it is not valid.",
    )
    add_config_option(check)
    check.add_argument("--show-secret", action="store_true", help="print the API secret (to enter in the agents)")
    check.add_argument("--shell", action="store_true", help="print KEY=value lines for a shell (install.sh)")
    check.set_defaults(func=cmd_config_check)

    secrets = sub.add_parser(
        "secrets",
        help="generate the missing secrets into credentials_dir (mode 0600)",
        description="Generate api_secret and admin_secret when config.yaml leaves them empty and credentials_dir "
        "holds none yet; existing ones are kept. Nothing is written when config.yaml is not valid.",
    )
    add_config_option(secrets)
    secrets.set_defaults(func=cmd_config_secrets)

    coturn_cmd = sub.add_parser(
        "coturn",
        help="print coturn's turnserver.conf for turn: true (install.sh writes it)",
        description="Print the turnserver.conf that makes coturn accept the credentials this server mints "
        "(use-auth-secret with turn_secret), relay from turn_relay_range and refuse loopback and private peers "
        "except this server's own addresses. It holds the secret: write it to a file only root and coturn read.",
    )
    add_config_option(coturn_cmd)
    coturn_cmd.add_argument("--cert", default="", help="coturn's copy of the TLS certificate (enables turns:)")
    coturn_cmd.add_argument("--key", default="", help="coturn's copy of the TLS key")
    coturn_cmd.set_defaults(func=cmd_config_coturn)

    setter = sub.add_parser(
        "set",
        help="set keys in config.yaml, keeping its comments",
        description="Replace (or append) top-level `key: value` lines. The result is validated first: "
        "on error the file is left as it was.",
    )
    add_config_option(setter)
    setter.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="e.g. nat=true public_ip=77.222.59.36")
    setter.set_defaults(func=cmd_config_set)


def _public_host(config: Config, interfaces: list[doctor.Interface]) -> str:
    """The name or address people type: hostname, else the public IP, else a global then any non-loopback IPv4."""
    if config.hostname:
        return config.hostname
    if config.public_ip:
        return config.public_ip
    if config.bind not in ("", "0.0.0.0", "::"):
        return config.bind
    v4 = [ipaddress.ip_address(i.address) for i in interfaces if doctor._is_v4(i.address)]
    for ip in sorted(v4, key=lambda ip: (not ip.is_global, ip.is_loopback)):
        return str(ip)
    return "127.0.0.1"


def _url(scheme: str, host: str, port: int) -> str:
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}{'' if port == default else f':{port}'}/"


def _local_host(bind: str) -> str:
    """Where this host reaches its own server: the bind address, or loopback for the wildcard ones."""
    if bind in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bind == "::":
        return "::1"
    return bind


def _tls_problems(config: Config, base: Path) -> tuple[list[str], list[str], tls.CertificateInfo | None]:
    """(errors, warnings, certificate) for the TLS settings."""
    errors: list[str] = []
    warnings: list[str] = []
    info = None
    if config.tls_enabled:
        try:
            info = tls.inspect(resolve(base, config.tls_cert), resolve(base, config.tls_key))
        except tls.TlsError as exc:
            errors.append(str(exc))
        else:
            left = info.days_left()
            if left < 0:
                warnings.append(f"tls_cert expired {-left} day(s) ago: browsers will refuse it")
            elif left < 14:
                warnings.append(f"tls_cert expires in {left} day(s)")
            if config.hostname and info.names and not tls.covers(info, config.hostname):
                warnings.append(f"tls_cert names {', '.join(info.names)}, not hostname {config.hostname}")
    elif config.is_certbot_enabled:
        if not config.hostname:
            warnings.append("is_certbot_enabled needs hostname: no Let's Encrypt certificate (plain HTTP)")
        elif config.web_http_port != 80:
            warnings.append(
                f"is_certbot_enabled: Let's Encrypt checks port 80 but web_http_port is {config.web_http_port}"
            )
    return errors, warnings, info


def summary(config: Config, base: Path, config_path: str, interfaces: list[doctor.Interface]) -> dict[str, str]:
    """What install.sh prints and acts on, as a flat dict of strings."""
    host = _public_host(config, interfaces)
    http_url = _url("http", host, config.web_http_port)
    url = _url("https", host, config.web_https_port) if config.tls_enabled else http_url
    credentials = resolve(base, config.credentials_dir)
    data = resolve(base, config.data_dir)
    low, high = config.port_range
    certbot = config.is_certbot_enabled and bool(config.hostname)
    return {
        "CONFIG": str(Path(config_path).resolve()),
        "BASE": str(base),
        "CREDENTIALS_DIR": str(credentials),
        "DATA_DIR": str(data),
        "RECORDINGS_DIR": str(resolve(base, config.recordings_dir)),
        "ACME_DIR": str(data / "acme"),
        "SERVER_NAME": config.hostname,
        "EMAIL": config.email,
        "SHARE_EMAIL": "1" if config.share_email else "0",
        "CERTBOT": "1" if certbot else "0",
        "TLS": "1" if config.tls_enabled else "0",
        "TLS_CERT": str(resolve(base, config.tls_cert)) if config.tls_cert else "",
        "TLS_KEY": str(resolve(base, config.tls_key)) if config.tls_key else "",
        "WEB_HTTP_PORT": str(config.web_http_port),
        "WEB_HTTPS_PORT": str(config.web_https_port),
        "URL": url + "web-admin/",
        "AGENT_URL": url,
        "HTTP_URL": http_url,
        "PROBE_URL": _url("http", _local_host(config.bind), config.web_http_port) + "janus/info",
        "TCP_PORTS": " ".join(str(port) for port, _ in doctor.tcp_ports(config) if port),
        "UDP_RANGE": f"{low}-{high}",
        "FIREWALL": "\n".join(doctor.firewall_lines(config)),
        "TURN": "1" if config.turn else "0",
        "TURN_PORT": str(config.turn_port),
        "TURN_TLS_PORT": str(config.turn_tls_port),
        "TURN_RELAY_RANGE": config.turn_relay_range.replace(" ", ""),
    }


def cmd_config_check(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    if loaded is None:
        return 2
    config, base = loaded
    errors, warnings, info = _tls_problems(config, base)
    if errors:
        print(f"apuppet: configuration error in {args.config}:\n" + "\n".join(errors), file=sys.stderr)
        return 2
    inline_secret = bool(config.api_secret)
    try:
        config, missing = read_secrets(config, base)
    except OSError as exc:
        print(f"apuppet: cannot read the secrets in {config.credentials_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    facts = summary(config, base, args.config, doctor.local_interfaces())
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.shell:
        if args.show_secret:
            facts["API_SECRET"] = config.api_secret
        for key, value in facts.items():
            print(f"{key}={shlex.quote(value)}")
        return 0
    where = args.config if inline_secret else str(resolve(base, config.credentials_dir) / "api_secret")
    lines = [
        f"{args.config} is valid.",
        "",
        f"  web-admin:          {facts['URL']}",
        f"  agents' Server URL: {facts['AGENT_URL']}",
    ]
    if not config.api_secret:
        lines.append(f"  API secret:         not generated yet; would be written to {where}")
    elif args.show_secret:
        lines.append(f"  API secret:         {config.api_secret}   (agents' 'Secret' setting; kept in {where})")
    else:
        lines.append(f"  API secret:         kept in {where} (--show-secret prints it)")
    if info is not None:
        kind = "self-signed" if info.self_signed else "issued"
        names = ", ".join(info.names) or info.subject
        lines.append(f"  TLS:                {kind}, {names}, {info.days_left()} days left")
        if info.self_signed:
            lines.append(f"                      agents cannot verify it: give them {facts['HTTP_URL']} instead")
    if config.nat:
        lines.append(f"  NAT:                advertising {config.public_ip} in ICE candidates")
    lines += ["", "Open these inbound ports (firewall and cloud security group), nothing else:"]
    lines += [f"  {line}" for line in facts["FIREWALL"].splitlines()]
    if missing:
        lines += ["", "Nothing was written. To generate the missing secrets (mode 0600), run"]
        lines += [f"  apuppet config secrets --config {args.config}", "which would create:"]
        lines += [f"  {file}" for file in missing]
        lines.append("(./install.sh and the server's first start do it too.)")
    print("\n".join(lines))
    return 0


def cmd_config_secrets(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    if loaded is None:
        return 2
    config, base = loaded
    try:
        _, missing = read_secrets(config, base)
        ensure_secrets(config, base)
    except OSError as exc:
        print(f"apuppet: cannot write the secrets into {config.credentials_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    for file in missing:
        print(f"generated {file} (mode 0600)")
    if not missing:
        print("every secret is set already: nothing generated")
    return 0


def cmd_config_coturn(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    if loaded is None:
        return 2
    config, base = loaded
    if not config.turn:
        print(f"apuppet: {args.config} does not say turn: true: this host runs no coturn", file=sys.stderr)
        return 2
    try:
        config, _ = read_secrets(config, base)
    except OSError as exc:
        print(f"apuppet: cannot read the secrets in {config.credentials_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    if not config.turn_secret:
        print("apuppet: turn_secret is not generated yet: run `apuppet config secrets` first", file=sys.stderr)
        return 2
    peers = coturn.own_addresses(config, [i.address for i in doctor.local_interfaces()])
    sys.stdout.write(coturn.render(config, config.turn_secret, peers, args.cert, args.key))
    return 0


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _render_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value)


def set_keys(text: str, updates: dict[str, Any]) -> str:
    """`text` (a config.yaml) with each key's top-level line replaced, or appended when absent."""
    lines = text.splitlines()
    for key, value in updates.items():
        line = f"{key}: {_render_value(value)}"
        pattern = re.compile(rf"^{re.escape(key)}\s*:")
        for i, existing in enumerate(lines):
            if pattern.match(existing):
                lines[i] = line
                break
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def cmd_config_set(args: argparse.Namespace) -> int:
    path = Path(args.config)
    updates: dict[str, Any] = {}
    for item in args.assignments:
        key, sep, value = item.partition("=")
        if not sep or key not in Config.model_fields:
            print(f"apuppet config set: {item!r}: expected KEY=VALUE with a config.yaml key", file=sys.stderr)
            return 2
        updates[key] = _yaml_value(value)
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        new = set_keys(text, updates)
        validate(yaml.safe_load(new) or {})
    except ConfigError as exc:
        print(f"apuppet config set: the result would be invalid, {path} unchanged:\n{exc}", file=sys.stderr)
        return 2
    except (OSError, yaml.YAMLError) as exc:
        print(f"apuppet config set: {path}: {exc}", file=sys.stderr)
        return 2
    if new == text:
        return 0
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
    for key, value in updates.items():
        print(f"{path}: {key}: {_render_value(value)}")
    return 0


# -- tls ---------------------------------------------------------------------------------------------------------------


def _register_tls(subparsers: Any) -> None:
    parser = subparsers.add_parser("tls", help="TLS certificates (self-signed for a LAN)")
    sub = parser.add_subparsers(dest="tls_command", metavar="ACTION", required=True)
    selfsigned = sub.add_parser(
        "self-signed",
        help="make a self-signed certificate and key for a LAN",
        description="Write cert.pem and key.pem (mode 0600) into --out and print the config.yaml lines. Browsers "
        "show a warning until the certificate is imported as trusted; use a real certificate on the Internet.",
    )
    selfsigned.add_argument("--hostname", required=True, help="host name or IP address people type")
    selfsigned.add_argument("--name", action="append", default=[], help="another name or IP (repeatable)")
    selfsigned.add_argument("--out", required=True, help="folder for cert.pem and key.pem (e.g. credentials/tls)")
    selfsigned.add_argument("--days", type=int, default=tls.DEFAULT_DAYS, help="validity (default: %(default)s)")
    selfsigned.add_argument("--force", action="store_true", help="replace an existing pair")
    selfsigned.set_defaults(func=cmd_tls_self_signed)


def cmd_tls_self_signed(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if not args.force and ((out / "cert.pem").exists() or (out / "key.pem").exists()):
        print(f"apuppet tls: {out} already holds a certificate or key (--force replaces them)", file=sys.stderr)
        return 2
    try:
        cert_pem, key_pem = tls.self_signed([args.hostname, *args.name], days=args.days)
        cert_path, key_path = tls.write_pair(out, cert_pem, key_pem)
    except tls.TlsError as exc:
        print(f"apuppet tls: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"apuppet tls: cannot write into {out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {cert_path} and {key_path} (key mode 0600). Put these lines in config.yaml:\n")
    print(f"  tls_cert: {json.dumps(str(cert_path.resolve()))}")
    print(f"  tls_key: {json.dumps(str(key_path.resolve()))}")
    print("\nthen run ./install.sh (or send SIGHUP to a running server to swap certificates).")
    return 0


# -- recordings --------------------------------------------------------------------------------------------------------


def _register_recordings(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "recordings",
        help="list and export the recordings of support sessions (record_sessions)",
        description="Recordings the server made into recordings_dir: one MP4 per support session, named with its "
        "UTC start and the device's Session ID. An incomplete one (.part) is still being written, or was left by "
        "a crash; export turns it into a plain MP4.",
    )
    sub = parser.add_subparsers(dest="recordings_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="the recordings, newest first", description="The recordings, newest first.")
    add_config_option(listing)
    listing.add_argument("--limit", type=int, default=0, help="the N newest only (default: all)")
    listing.set_defaults(func=cmd_recordings_list)
    export = sub.add_parser(
        "export",
        help="copy a recording out as a plain MP4",
        description="Write a recording to a file: a complete one is copied; an incomplete one is remuxed (packet "
        "by packet, never re-encoded) into an MP4 that any player opens and can seek (+faststart).",
    )
    add_config_option(export)
    export.add_argument("name", help="the recording's name, as `apuppet recordings list` shows it")
    export.add_argument("-o", "--output", default="", help="the file to write (default: the name, here)")
    export.add_argument("--force", action="store_true", help="replace an existing output file")
    export.set_defaults(func=cmd_recordings_export)


def cmd_recordings_list(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    if loaded is None:
        return 2
    folder = recordings.recordings_dir(*loaded)
    try:
        found = recordings.list_recordings(folder)
    except OSError as exc:
        print(f"apuppet recordings: cannot read {folder}: {exc.strerror} (run as the service's user?)", file=sys.stderr)
        return 1
    if args.limit > 0:
        found = found[: args.limit]
    if not found:
        print(f"no recordings in {folder}" + ("" if loaded[0].record_sessions else " (record_sessions is off)"))
        return 0
    print(recordings.format_recordings(found))
    return 0


def cmd_recordings_export(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    if loaded is None:
        return 2
    folder = recordings.recordings_dir(*loaded)
    # Only a name the listing returns: never a path the argument could lead out of the folder with.
    try:
        found = [r for r in recordings.list_recordings(folder) if args.name in (r.name, r.stem)]
    except OSError as exc:
        print(f"apuppet recordings: cannot read {folder}: {exc.strerror} (run as the service's user?)", file=sys.stderr)
        return 1
    if not found:
        print(f"apuppet recordings export: no recording {args.name!r} in {folder}", file=sys.stderr)
        return 1
    recording = min(found, key=lambda r: not r.complete)  # the complete file when both exist
    output = Path(args.output or recording.stem)
    if output.exists() and not args.force:
        print(f"apuppet recordings export: {output} exists (--force replaces it)", file=sys.stderr)
        return 1
    try:
        recordings.export(recording, output)
    except recordings.ExportError as exc:
        print(f"apuppet recordings export: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"apuppet recordings export: cannot write {output}: {exc.strerror}", file=sys.stderr)
        return 1
    how = "copied" if recording.complete else "remuxed from the incomplete recording"
    print(f"{output}: {how} ({recordings.human_size(output.stat().st_size)})")
    return 0
