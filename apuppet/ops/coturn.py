"""coturn's configuration for `turn: true`, written by ./install.sh (`apuppet config coturn`), from config.yaml.

A TURN server relays to whatever peer address a client names. With credentials handed to every page that
opens, an open relay would let anyone reach the host's loopback services and the private network behind it, so
every loopback, private, link-local and shared address is denied, except the addresses of this server itself:
its peer connections (host candidates on those addresses, ports in `rtp_port_range`) are where browsers relay
to. Relays themselves use `turn_relay_range`, which the firewall section lists.
"""

from __future__ import annotations

import ipaddress

from ..config import Config, parse_port_range

#: Peers coturn must never relay to (IPv4 and IPv6 ranges, coturn's "first-last" form).
DENIED_PEERS = [
    "0.0.0.0-0.255.255.255",
    "10.0.0.0-10.255.255.255",
    "100.64.0.0-100.127.255.255",
    "127.0.0.0-127.255.255.255",
    "169.254.0.0-169.254.255.255",
    "172.16.0.0-172.31.255.255",
    "192.0.0.0-192.0.0.255",
    "192.168.0.0-192.168.255.255",
    "198.18.0.0-198.19.255.255",
    "240.0.0.0-255.255.255.255",
    "::1",
    "64:ff9b::-64:ff9b::ffff:ffff",
    "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
]


def own_addresses(config: Config, interface_addresses: list[str]) -> list[str]:
    """Where this server's peer connections listen: the bind address, else every interface address (loopback
    left out: browsers never offer it), plus the public address behind a 1:1 NAT."""
    if config.bind not in ("", "0.0.0.0", "::"):
        found = [config.bind]
    else:
        found = []
        for text in interface_addresses:
            try:
                ip = ipaddress.ip_address(text.split("%")[0])
            except ValueError:
                continue
            if not ip.is_loopback and not ip.is_link_local:
                found.append(str(ip))
    if config.public_ip:
        found.append(config.public_ip)
    return list(dict.fromkeys(found))


def render(config: Config, secret: str, peers: list[str], cert: str = "", key: str = "") -> str:
    """The whole turnserver.conf. `cert`/`key`: coturn's own copies of the web server's certificate (coturn runs
    as its own user); without them TLS is off."""
    if not secret:
        raise ValueError("no turn_secret: run `apuppet config secrets` first")
    low, high = parse_port_range(config.turn_relay_range)
    lines = [
        "# Written by apuppet's ./install.sh from its config.yaml (turn: true): edit config.yaml and run",
        '# ./install.sh again rather than this file. docs/deployment.md, "TURN", explains it.',
        f"listening-port={config.turn_port}",
        f"min-port={low}",
        f"max-port={high}",
        "fingerprint",
        # Credentials minted by apuppet: "<expiry>:<tag>", HMAC-SHA1 with this secret, checked without a database.
        "use-auth-secret",
        f"static-auth-secret={secret}",
        f"realm={config.hostname or config.public_ip}",
        "no-cli",
        "no-multicast-peers",
        "no-tlsv1",
        "no-tlsv1_1",
        "no-rfc5780",
        "no-stun-backward-compatibility",
        "response-origin-only-with-rfc5780",
        "log-file=syslog",
        "simple-log",
    ]
    if config.nat and config.public_ip:
        lines.append(f"external-ip={config.public_ip}")
    if cert and key:
        lines += [f"tls-listening-port={config.turn_tls_port}", f"cert={cert}", f"pkey={key}", "no-dtls"]
    else:
        lines += ["no-tls", "no-dtls"]
    lines += [f"denied-peer-ip={r}" for r in DENIED_PEERS]
    lines += [f"allowed-peer-ip={address}" for address in peers]
    return "\n".join(lines) + "\n"
