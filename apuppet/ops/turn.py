"""Does the configured TURN server relay for our browsers? A real allocation with the credentials the server
would hand a browser right now, through aioice's TURN client (the one aiortc uses).

A TURN server that answers STUN but refuses the minted credentials (a `turn_secret` that differs from coturn's
`static-auth-secret`, a clock far off) looks healthy from the outside and still leaves every UDP-blocked browser
with a black screen; only an authenticated Allocate tells.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

from aioice import stun
from aioice.turn import create_turn_endpoint

from ..api.iceservers import browser_ice_servers
from ..config import Config

DEFAULT_PORTS = {"turn": 3478, "turns": 5349}


@dataclass(frozen=True)
class TurnUrl:
    scheme: str
    host: str
    port: int
    transport: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}:{host}:{self.port}?transport={self.transport}"


def parse_turn_url(url: str) -> TurnUrl:
    """RFC 7065 `turn:host[:port][?transport=udp|tcp]` / `turns:…`; a clear ValueError for anything else."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in DEFAULT_PORTS:
        raise ValueError(f"{url!r}: a TURN URL starts with turn: or turns:")
    hostport, _, query = rest.partition("?")
    transport = parse_qs(query).get("transport", ["tcp" if scheme == "turns" else "udp"])[0].lower()
    if transport not in ("udp", "tcp"):
        raise ValueError(f"{url!r}: transport must be udp or tcp")
    if scheme == "turns" and transport != "tcp":
        raise ValueError(f"{url!r}: turns: runs over TLS, i.e. TCP")
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise ValueError(f"{url!r}: no host")
    if port_text and not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError(f"{url!r}: invalid port")
    return TurnUrl(scheme, host, int(port_text) if port_text else DEFAULT_PORTS[scheme], transport)


@dataclass(frozen=True)
class TurnProbe:
    url: str
    relayed: tuple[str, int] | None = None
    error: str = ""
    #: The server answered but refused the credentials (STUN error 401 / 403 / 437 …).
    refused: bool = False


class _Sink(asyncio.DatagramProtocol):
    pass


async def allocate(url: str, username: str, credential: str, timeout: float = 5.0) -> TurnProbe:
    """One Allocate (then released). Never raises for a network or TURN failure: the probe says what happened,
    without the credential."""
    try:
        target = parse_turn_url(url)
    except ValueError as exc:
        return TurnProbe(url, error=str(exc))
    context: ssl.SSLContext | None = ssl.create_default_context() if target.scheme == "turns" else None
    try:
        transport, _ = await asyncio.wait_for(
            create_turn_endpoint(
                _Sink,
                (target.host, target.port),
                username,
                credential,
                ssl=context,
                transport=target.transport,
            ),
            timeout,
        )
    except stun.TransactionFailed as exc:
        code, reason = exc.response.attributes.get("ERROR-CODE", (0, "no error code"))
        return TurnProbe(url, error=f"refused the credentials: {code} {reason}", refused=True)
    except (TimeoutError, stun.TransactionTimeout):
        return TurnProbe(url, error=f"no answer in {timeout:g} s")
    except ssl.SSLError as exc:
        return TurnProbe(url, error=f"TLS failed: {exc.reason or exc}")
    except (OSError, ConnectionError) as exc:
        return TurnProbe(url, error=exc.strerror or str(exc) or type(exc).__name__)
    relayed = transport.get_extra_info("sockname")
    transport.close()
    await asyncio.sleep(0)
    return TurnProbe(url, relayed=(str(relayed[0]), int(relayed[1])))


async def check_config(config: Config, timeout: float = 5.0) -> list[TurnProbe]:
    """Allocate on every TURN URL a browser would be given, with the credentials it would get now."""
    probes = []
    for server in browser_ice_servers(config, time.time(), "doctor"):
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        for url in urls:
            if str(url).startswith(("turn:", "turns:")):
                probes.append(allocate(url, server["username"], server["credential"], timeout))
    return list(await asyncio.gather(*probes))
