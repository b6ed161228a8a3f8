"""The TCP ports a server opens, derived from the config alone. The server binds them and `apuppet doctor` checks
them before one runs; a module of its own so that the doctor (ops/) needs nothing of the aiohttp server."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config


@dataclass(frozen=True)
class Listener:
    """One TCP site: what it is for (for the log) and whether it speaks TLS."""

    purpose: str
    port: int
    tls: bool


def listeners(config: Config) -> list[Listener]:
    """The ports to open. aPuppet's legacy Janus ports answer too when enabled, so old settings keep working;
    the TLS ones only when a certificate is configured (Janus: `wss = api_wss and ssl_enabled`)."""
    out: list[Listener] = [Listener("web + API (http)", config.web_http_port, False)]
    if config.tls_enabled:
        out.append(Listener("web + API (https)", config.web_https_port, True))
    if config.api_http:
        out.append(Listener("Janus REST (legacy api_http_port)", config.api_http_port, False))
    if config.api_https and config.tls_enabled:
        out.append(Listener("Janus REST over TLS (legacy api_https_port)", config.api_https_port, True))
    if config.api_wss and config.tls_enabled:
        out.append(Listener("Janus WebSocket over TLS (legacy api_wss_port)", config.api_wss_port, True))
    seen: set[int] = set()
    unique = []
    for item in out:
        if item.port == 0 or item.port not in seen:
            unique.append(item)
            seen.add(item.port)
    return unique
