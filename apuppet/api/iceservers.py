"""The ICE servers a browser is handed when it opens a session: STUN and TURN, with TURN credentials minted per
client from coturn's shared secret (its "REST API": `use-auth-secret` + `static-auth-secret`).

A browser on a network that drops UDP reaches the server's peer connections only through a TURN relay it can
talk TCP (or TLS) to. Handing every page one fixed TURN password would let anyone who opens the web-admin relay
through our coturn for ever; minted credentials expire after `turn_ttl` seconds, and coturn checks them
with nothing but the shared secret, so no database and no call between the two servers is needed.

Sans-I/O: the clock and the tag come in, a list of RTCIceServer dictionaries goes out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from ..config import Config

#: Longest tag kept in a username: coturn logs usernames, so it carries a log tag, never an id or a secret.
MAX_TAG = 32


def mint(secret: str, expires: int, tag: str = "") -> tuple[str, str]:
    """coturn's time-limited credential: username "<expiry unix time>[:tag]", password
    base64(HMAC-SHA1(secret, username)). coturn refuses it once the expiry has passed."""
    if not secret:
        raise ValueError("no TURN secret to mint credentials from")
    clean = "".join(c for c in tag if c.isascii() and (c.isalnum() or c in "-_."))[:MAX_TAG]
    username = f"{int(expires)}:{clean}" if clean else str(int(expires))
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def expiry(username: str) -> int | None:
    """The expiry a minted username carries (None for a static username)."""
    head = username.split(":", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else None


def local_turn_urls(config: Config) -> list[str]:
    """The URLs of this host's coturn (`turn: true`): UDP and TCP on `turn_port`, TLS on `turn_tls_port` when
    the web server has a certificate (coturn uses the same one, so the name must be the hostname)."""
    if not config.turn:
        return []
    host = config.hostname or config.public_ip
    if ":" in host:
        host = f"[{host}]"
    urls = [f"turn:{host}:{config.turn_port}?transport=udp", f"turn:{host}:{config.turn_port}?transport=tcp"]
    if config.tls_enabled and config.hostname:
        urls.append(f"turns:{config.hostname}:{config.turn_tls_port}?transport=tcp")
    return urls


def browser_ice_servers(config: Config, now: float, tag: str = "") -> list[dict[str, Any]]:
    """RTCConfiguration.iceServers for one browser. Empty unless something is configured: a page on the LAN
    must not wait for a server that is not there, and no public server is ever used by default."""
    servers: list[dict[str, Any]] = []
    if config.stun_server:
        servers.append({"urls": config.stun_server})
    minted: tuple[str, str] | None = None
    if config.turn_secret:
        minted = mint(config.turn_secret, int(now) + config.turn_ttl, tag)
    local = local_turn_urls(config)
    if local and minted is not None:
        servers.append({"urls": local, "username": minted[0], "credential": minted[1]})
    for turn in config.turn_servers:
        if turn.static:
            servers.append({"urls": turn.url, "username": turn.username, "credential": turn.credential})
        elif minted is not None:
            servers.append({"urls": turn.url, "username": minted[0], "credential": minted[1]})
    return servers
