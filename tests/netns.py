"""Real network parts for the TURN tests and benchmark: a network namespace whose UDP is dropped (a support
desk behind a company firewall) and Debian's coturn started on the host side of it.

The namespace is joined to the host by a veth pair with addresses in 198.18.0.0/15 (RFC 2544 benchmarking
space, never routed): the host side is the server, the namespace side the browser. nftables inside the
namespace drops every UDP packet in and out; TCP passes. Nothing leaves the machine. Needs root and the `ip`,
`nft` and `turnserver` binaries; `missing()` says what is not there so that tests skip with that reason.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

TURNSERVER = "/usr/bin/turnserver"
HOST_ADDRESS = "198.18.0.1"
BROWSER_ADDRESS = "198.18.0.2"
NFT_DROP_UDP = """table inet support_desk {
  chain input { type filter hook input priority 0; policy accept; meta l4proto udp counter drop; }
  chain output { type filter hook output priority 0; policy accept; meta l4proto udp counter drop; }
}
"""


def missing() -> str:
    """Why the namespace tests cannot run here ('' when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"the `{tool}` binary is not installed"
    if not os.path.exists(TURNSERVER):
        return "coturn is not installed (apt-get install coturn)"
    return ""


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=20)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class UdpBlockedNamespace:
    """A namespace reaching the host over a veth pair, TCP only. `prefix` runs a command inside it."""

    def __init__(self, drop_udp: bool = True) -> None:
        self.tag = secrets.token_hex(3)
        self.name = f"apuppet-desk-{self.tag}"
        host_if, ns_if = f"apd{self.tag}h", f"apd{self.tag}n"
        _run("ip", "netns", "add", self.name)
        try:
            _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _run("ip", "link", "set", ns_if, "netns", self.name)
            _run("ip", "addr", "add", f"{HOST_ADDRESS}/30", "dev", host_if)
            _run("ip", "link", "set", host_if, "up")
            self.exec("ip", "addr", "add", f"{BROWSER_ADDRESS}/30", "dev", ns_if)
            self.exec("ip", "link", "set", ns_if, "up")
            self.exec("ip", "link", "set", "lo", "up")
            if drop_udp:
                subprocess.run(
                    ["ip", "netns", "exec", self.name, "nft", "-f", "-"],
                    input=NFT_DROP_UDP,
                    text=True,
                    check=True,
                    capture_output=True,
                    timeout=20,
                )
            self._wait_link()
        except BaseException:
            self.close()
            raise

    def _wait_link(self) -> None:
        """The veth pair takes a moment to come up (IPv4 DAD is not a thing, but carrier is)."""
        deadline = time.monotonic() + 10
        while True:
            probe = subprocess.run(self.prefix + ["ip", "-o", "link", "show", "up"], capture_output=True, text=True)
            if "LOWER_UP" in probe.stdout and probe.stdout.count("\n") >= 2:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the veth pair did not come up")
            time.sleep(0.1)

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def exec(self, *args: str) -> str:
        return _run(*self.prefix, *args)

    def udp_dropped(self) -> int:
        """Packets the namespace's nftables dropped: proof that the browser tried UDP and had to do without."""
        out = self.exec("nft", "list", "table", "inet", "support_desk")
        return sum(int(part.split()[0]) for part in out.split("counter packets ")[1:])

    def close(self) -> None:
        # Deleting the namespace deletes the veth pair with it.
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=20)


class Coturn:
    """Debian's turnserver in the foreground with a shared secret (`use-auth-secret`), listening on `address`
    only and relaying from `relay_range` on that address; `stop()` ends it."""

    def __init__(self, folder: Path, address: str, port: int, secret: str, relay_range: tuple[int, int]) -> None:
        self.address = address
        self.port = port
        self.secret = secret
        self.log = folder / "turnserver.log"
        conf = folder / "turnserver.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listening-ip={address}",
                    f"relay-ip={address}",
                    f"listening-port={port}",
                    f"min-port={relay_range[0]}",
                    f"max-port={relay_range[1]}",
                    "use-auth-secret",
                    f"static-auth-secret={secret}",
                    "realm=apuppet.test",
                    "fingerprint",
                    "no-tls",
                    "no-dtls",
                    "no-cli",
                    "no-multicast-peers",
                    f"allowed-peer-ip={address}",
                    f"pidfile={folder / 'turnserver.pid'}",
                    f"userdb={folder / 'turndb'}",
                    f"log-file={self.log}",
                    "simple-log",
                    "verbose",
                    "",
                ]
            )
        )
        self.proc = subprocess.Popen(
            [TURNSERVER, "-c", str(conf), "--no-stdout-log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                socket.create_connection((self.address, self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("turnserver does not listen") from None
                time.sleep(0.1)

    def url(self, transport: str) -> str:
        return f"turn:{self.address}:{self.port}?transport={transport}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
