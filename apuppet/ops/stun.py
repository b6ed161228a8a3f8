"""Ask a STUN server which address this host's UDP traffic leaves from: the automated half of "Is my host behind
a NAT?". The address a STUN server sees is what the phones and browsers see, so it is the `public_ip` that
`nat: true` needs.

The codec (`binding_request`, `mapped_address`) is sans-I/O on top of aioice's STUN messages; `query` is the only
function that touches a socket.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

from aioice import stun

DEFAULT_PORT = 3478


class StunError(Exception):
    """The server could not be asked, or its answer was not a usable binding response."""


@dataclass(frozen=True)
class StunServer:
    host: str
    port: int
    secure: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'stuns' if self.secure else 'stun'}:{host}:{self.port}"


def parse_url(url: str) -> StunServer:
    """`stun:host[:port]` / `stuns:host[:port]` (RFC 7064), IPv6 literals in brackets."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in ("stun", "stuns") or not rest:
        raise StunError(f"{url!r} is not a STUN URL (stun:host:port)")
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise StunError(f"{url!r}: unbalanced brackets around the IPv6 address")
        port_text = tail[1:]
    else:
        host, _, port_text = rest.partition(":")
    if not host:
        raise StunError(f"{url!r}: no host")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise StunError(f"{url!r}: the port must be a number between 1 and 65535")
        port = int(port_text)
    else:
        port = 5349 if scheme == "stuns" else DEFAULT_PORT
    return StunServer(host, port, scheme == "stuns")


def binding_request() -> tuple[bytes, bytes]:
    """A Binding request and its transaction id, to match the response against."""
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    message.add_fingerprint()
    return bytes(message), message.transaction_id


def mapped_address(data: bytes, transaction_id: bytes) -> tuple[str, int] | None:
    """The (address, port) a Binding success response reports, or None when the datagram is not the answer
    to `transaction_id` (stray packets are ignored, not fatal). A matching error response raises StunError."""
    try:
        message = stun.parse_message(data)
    except (ValueError, struct.error, IndexError, UnicodeDecodeError):
        return None
    if message.transaction_id != transaction_id or message.message_method != stun.Method.BINDING:
        return None
    if message.message_class == stun.Class.ERROR:
        code, reason = message.attributes.get("ERROR-CODE", (0, "no reason given"))
        raise StunError(f"the STUN server refused the request: {code} {reason}")
    if message.message_class != stun.Class.RESPONSE:
        return None
    address = message.attributes.get("XOR-MAPPED-ADDRESS") or message.attributes.get("MAPPED-ADDRESS")
    if address is None:
        raise StunError("the STUN response carries no mapped address")
    return address[0], address[1]


def binding_response(request: bytes, source: tuple[str, int]) -> bytes | None:
    """The answer a STUN server gives to `request` from `source`; None for anything but a Binding request.
    Used by tests and by anyone wanting a throw-away responder on a LAN."""
    try:
        message = stun.parse_message(request)
    except (ValueError, struct.error, IndexError, UnicodeDecodeError):
        return None
    if message.message_method != stun.Method.BINDING or message.message_class != stun.Class.REQUEST:
        return None
    response = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=message.transaction_id,
        attributes={"XOR-MAPPED-ADDRESS": (source[0], source[1])},
    )
    response.add_fingerprint()
    return bytes(response)


def query(
    server: StunServer, *, timeout: float = 3.0, attempts: int = 3, family: int = socket.AF_INET
) -> tuple[str, int]:
    """Send Binding requests (retransmitted, as UDP may drop them) and return the mapped address."""
    if server.secure:
        raise StunError(f"{server}: STUN over TLS is not checked; use a stun: URL for the doctor")
    try:
        infos = socket.getaddrinfo(server.host, server.port, family, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise StunError(f"cannot resolve {server.host}: {exc.strerror}") from None
    destination = infos[0][4]
    request, transaction_id = binding_request()
    per_attempt = timeout / attempts
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for _ in range(attempts):
            try:
                sock.sendto(request, destination)
            except OSError as exc:
                raise StunError(f"cannot send: {exc.strerror}") from None
            deadline = time.monotonic() + per_attempt
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, _ = sock.recvfrom(2048)
                except TimeoutError:
                    break
                except OSError as exc:
                    # ICMP port unreachable surfaces here on Linux: nobody listens there.
                    raise StunError(f"{exc.strerror or exc}") from None
                found = mapped_address(data, transaction_id)
                if found is not None:
                    return found
    raise StunError(f"no answer within {timeout:g} s")
