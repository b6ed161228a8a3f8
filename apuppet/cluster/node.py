"""A cluster node's lifecycle: it checks Redis at start (unreachable: a clear error, the node does not start),
announces itself and refreshes what it owns every `HEARTBEAT` seconds, notices nodes that died, and leaves on
stop. Redis lost later: the node keeps serving what it holds, logs it once, and re-registers everything as soon as
Redis answers again (the next heartbeat writes every entry anew)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ..api.ending import Endings
from ..api.gateway import Gateway
from ..api.throttle import Throttle
from ..config import Config, resolve
from .bus import REDIS_ERRORS, RedisBus, bus_key, redacted
from .directory import HEARTBEAT, ClusterUnavailable, Directory
from .ending import ClusterEndings
from .guesses import SharedGuesses
from .guessing import BLOCKED, SharedThrottle
from .logins import RedisLoginStore
from .router import Router

log = logging.getLogger(__name__)

__all__ = ["ClusterNode", "ClusterUnavailable", "node_name"]

#: Seconds each shutdown step may take.
STOP_STEP = 2.0


def redis_url(config: Config, base_dir: Path | None = None) -> str:
    """`redis_url`, with the password install.sh generated into credentials_dir/redis_password when the URL
    names none (the local Redis of `workers`: config.yaml need not hold a secret)."""
    parts = urlsplit(config.redis_url)
    file = resolve(base_dir or Path.cwd(), config.credentials_dir) / "redis_password"
    if parts.password is not None or not file.is_file():
        return config.redis_url
    password = quote(file.read_text(encoding="utf-8").strip(), safe="")
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else (parts.hostname or "")
    netloc = f"{quote(parts.username or '', safe='')}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def node_name(config: Config) -> str:
    """`node_name`, or the host name with a random suffix (two nodes of one host must not share a name)."""
    return config.node_name or f"{socket.gethostname()}-{secrets.token_hex(3)}"


class ClusterNode:
    def __init__(
        self, config: Config, gateway: Gateway, poll_timeout: float = 30.0, base_dir: Path | None = None
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.name = node_name(config)
        # A worker restarted keeps its name; its incarnation tells the other nodes it is not the one that died.
        self.incarnation = secrets.token_hex(8)
        self.directory = Directory(self.name, incarnation=self.incarnation)
        self.bus = RedisBus(redis_url(config, base_dir), self.name, self._on_message, bus_key(gateway.api_secret))
        self.router = Router(gateway, self.directory, self.bus, poll_timeout)
        # Wrong API secrets count for the whole cluster (the admin secret's throttle is the server's: `shared`).
        self.guesses = SharedGuesses(self.bus, self.directory)
        gateway.throttle = self.guesses.share("api", gateway.throttle)
        self.router.handlers[BLOCKED] = self.guesses.on_blocked
        self.record: dict[str, Any] = {
            "pid": os.getpid(),
            "started": time.time(),
            "rtp": config.rtp_port_range,
            "inc": self.incarnation,
        }
        self._heartbeat: asyncio.Task[None] | None = None
        self._owned_sessions: set[int] = set()
        self._redis_lost = False
        self.started = False

    def cluster_endings(self, endings: Endings) -> ClusterEndings:
        """The server's `Endings` with the same limits, made to end both halves of a session split over nodes."""
        return ClusterEndings(
            self.gateway,
            self.router,
            max_viewer_session=endings.max_viewer_session,
            viewer_idle=endings.viewer_idle,
            grace=endings.grace,
        )

    def login_store(self, limit: int) -> RedisLoginStore:
        """The console's logins, kept in Redis for every node."""
        return RedisLoginStore(self.bus.client, limit)

    def shared(self, kind: str, local: Throttle) -> SharedThrottle:
        """A throttle of wrong secrets that counts for the whole cluster, with the policy of `local`."""
        return self.guesses.share(kind, local)

    def _on_message(self, message: dict[str, Any]) -> None:
        self.router.on_message(message)

    async def start(self, web_port: int | None = None) -> None:
        """Raises `ClusterUnavailable` when Redis does not answer."""
        if web_port is not None:
            self.record["web_port"] = web_port
        await self.bus.start()
        self.started = True
        await self.beat()
        await self.guesses.start()
        self._heartbeat = asyncio.get_running_loop().create_task(self._run(), name=f"cluster-heartbeat-{self.name}")
        log.info("cluster node %s joined through Redis at %s", self.name, redacted(self.config.redis_url))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.beat()
            except REDIS_ERRORS as exc:  # Any Redis failure: keep serving, try again
                self.bus.reachable = False
                if not self._redis_lost:
                    self._redis_lost = True
                    log.warning("cluster: Redis unreachable (%s); node %s keeps serving what it holds", exc, self.name)
                continue
            except Exception as exc:
                # A bug of ours must not end the heartbeat: the other nodes would count this node dead.
                self.gateway.log_unexpected(exc, "cluster heartbeat", "")
                continue
            if self._redis_lost:
                self._redis_lost = False
                log.warning("cluster: Redis reachable again; node %s re-registered what it holds", self.name)
                try:  # the blocks announced while this node could not hear them
                    await self.guesses.load()
                except REDIS_ERRORS:
                    self._redis_lost = True

    async def beat(self) -> None:
        """One heartbeat: announce, refresh, learn who is alive, act on who died."""
        self.bus.check_listener()
        self.router.forget_stale_guests()
        sessions = set(self.router.local_sessions())
        live, lost = await self.bus.heartbeat(self.record, sessions, sorted(self.router.resources))
        ended = self._owned_sessions - sessions
        self._owned_sessions = sessions
        if ended:
            await self.bus.release([("session", sid) for sid in ended])
        gone = self.directory.update_live(live)
        if gone:
            log.warning(
                "cluster: node(s) %s gone or restarted; their guests here are released", ", ".join(sorted(gone))
            )
            self.router.nodes_gone(gone)
        self.router.report_idle()
        await self.router.contest(lost)

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        # Every step bounded: a node that cannot say goodbye to Redis must still stop (its entries expire).
        await self.guesses.stop()
        try:
            async with asyncio.timeout(STOP_STEP):
                await self.router.close()
        except TimeoutError:
            log.warning("cluster: requests still waiting for other nodes at shutdown were dropped")
        try:
            async with asyncio.timeout(STOP_STEP):
                await self.bus.leave(self._owned_sessions, self.router.resources)
        except REDIS_ERRORS as exc:  # Entries expire by themselves
            log.debug("cluster: leaving Redis failed: %s", exc)
        await self.bus.close()
