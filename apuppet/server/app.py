"""The server: one aiohttp application (Janus REST + WebSocket, the web-admin) on every configured port,
the Janus core with its plugins, and the housekeeping loop that expires idle sessions.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib
import inspect
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from aiohttp import web

from ..api.ending import Endings
from ..api.errors import ErrorCode
from ..api.gateway import Gateway, error_reply
from ..api.iceservers import browser_ice_servers
from ..api.limits import Limits
from ..api.plugin import Plugin
from ..api.throttle import Throttle
from ..config import Config, resolve
from ..listeners import listeners
from ..media.peers import Peers
from ..media.settings import IceServer, MediaSettings
from ..netaddr import client_key
from ..ops.audit import Audit, AuditStore
from ..ops.eventlog import EventLog
from ..ops.recordings import recordings_dir, sweep
from . import metrics
from .connguard import ConnectionGuard, GuardedSite, QuietServerLogger
from .console import Console
from .heap import HeapTrimmer
from .http import RestTransport, json_response, remote_of
from .websocket import WebSocketTransport

if TYPE_CHECKING:
    from ..cluster.node import ClusterNode

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent.parent / "web" / "static"
#: Seconds between two retention sweeps of the recordings (the first runs at start-up).
RECORDINGS_SWEEP_INTERVAL = 3600.0
PLUGIN_MODULES = ("apuppet.plugins.streaming", "apuppet.plugins.textroom")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The page URL carries the session pin: never leak it to another site.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
}


def media_settings(config: Config, base_dir: Path | None = None) -> MediaSettings:
    """The media layer's part of the configuration: `apuppet.media` is never handed the whole `Config`. Relative
    folders start at `base_dir` (the config file's), or the working directory."""
    return MediaSettings(
        bind=config.bind,
        port_range=config.port_range,
        use_ipv6=config.use_ipv6,
        public_ip=config.public_ip if config.nat else "",
        ice_servers=tuple(IceServer.from_dict(s) for s in config.ice_servers()),
        max_peers_per_session=config.max_peers_per_session,
        max_peers_per_address=config.max_peers_per_address,
        rtp_latch_grace=config.rtp_latch_grace,
        recordings_dir=recordings_dir(config, base_dir) if config.record_sessions else None,
    )


def load_plugins(config: Config, peers: Peers | None = None, base_dir: Path | None = None) -> list[Plugin]:
    """The plugins of `PLUGIN_MODULES`, all given one `Peers`: a client's connections count together."""
    peers = Peers(media_settings(config, base_dir)) if peers is None else peers
    plugins: list[Plugin] = []
    for module_name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            log.warning("plugin module %s is not available", module_name)
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Plugin) and cls.name and cls.__module__ == module_name:
                # The contract of PLUGIN_MODULES' plugins: built from the config and the shared media.
                plugins.append(cast("Callable[[Config, Peers], Plugin]", cls)(config, peers))
    return plugins


def limits_of(config: Config) -> Limits:
    return Limits(
        sessions_per_address=config.limit_sessions_per_address,
        viewer_sessions_per_address=config.limit_viewer_sessions_per_address,
        viewer_session_rate=config.limit_viewer_sessions_per_second,
        viewer_session_burst=config.limit_viewer_session_burst,
        handles_per_session=config.limit_handles_per_session,
        polls_per_session=config.limit_polls_per_session,
        polls_per_address=config.limit_polls_per_address,
        websockets_per_address=config.limit_websockets_per_address,
        connections_per_address=config.limit_connections_per_address,
    )


class Server:
    """A running apuppet server; `start()` binds every port, `stop()` releases all."""

    def __init__(
        self,
        config: Config,
        *,
        plugins: list[Plugin] | None = None,
        base_dir: Path | None = None,
        housekeeping_interval: float = 1.0,
        reuse_port: bool = False,
    ) -> None:
        """`base_dir` is the folder of config.yaml: relative paths start there, and only a server given one keeps
        an audit log on disk (embedded servers, such as the demo's and the tests', write nothing)."""
        self.config = config
        self.base_dir = base_dir
        self.data_dir = resolve(base_dir or Path.cwd(), config.data_dir)
        self.plugins = load_plugins(config, base_dir=base_dir) if plugins is None else plugins
        self.gateway = Gateway(
            self.plugins,
            api_secret=config.api_secret,
            session_timeout=config.session_timeout,
            viewer_access=config.viewer_access,
            limits=limits_of(config),
            ice_servers=lambda tag: browser_ice_servers(self.config, time.time(), tag),
        )
        self.events = metrics.EventCounter()
        self.gateway.observers += [EventLog(), self.events]
        self.audit: Audit | None = None
        if base_dir is not None:
            self.audit = Audit(AuditStore(self.data_dir / "audit.sqlite3"))
            self.gateway.observers.append(self.audit)
        self.admin_throttle = Throttle()
        self.endings = Endings(
            self.gateway,
            max_viewer_session=config.max_session_minutes * 60,
            viewer_idle=config.viewer_idle_minutes * 60,
        )
        self.console = Console(
            config,
            self.gateway,
            self.endings,
            throttle=self.admin_throttle,
            audit=lambda: self.audit.store if self.audit is not None else None,
            base_dir=base_dir,
        )
        self.rest = RestTransport(self.gateway, body_timeout=config.http_body_timeout)
        self.guard = ConnectionGuard(
            self.gateway.limits.connections_per_address, config.http_idle_timeout, config.http_header_timeout
        )
        self.websocket = WebSocketTransport(self.gateway, max_message_bytes=config.max_request_bytes)
        self.housekeeping_interval = housekeeping_interval
        self.heap = HeapTrimmer()
        #: `--workers`: every node of the host listens on the same web port.
        self.reuse_port = reuse_port
        self.cluster: ClusterNode | None = None
        if config.redis_url:
            from ..cluster.node import ClusterNode  # redis-py is loaded only by the nodes of a cluster

            self.cluster = ClusterNode(config, self.gateway, poll_timeout=self.rest.poll_timeout, base_dir=base_dir)
            self.rest.router = self.websocket.router = self.cluster.router
            # The console is the cluster's: logins in Redis, every node's devices, ends reaching both halves.
            self.endings = self.cluster.cluster_endings(self.endings)
            self.console.join(self.cluster, self.endings)
            # Wrong admin secrets (console logins, /metrics) count for the whole cluster.
            self.admin_throttle = self.console.logins.throttle = self.cluster.shared("admin", self.admin_throttle)
        self.ssl_context: ssl.SSLContext | None = None
        self.runner: web.AppRunner | None = None
        self.ports: dict[str, int] = {}
        self._housekeeping: asyncio.Task[None] | None = None
        self._recordings_swept_at: float | None = None
        self.app = self._build_app()

    # -- application -------------------------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_request_bytes,
            middlewares=[self._backstop, self.guard.middleware, self._https_redirect],
        )
        self.rest.add_routes(app, websocket_handler=self.websocket.handle)
        self.console.add_routes(app)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/.well-known/acme-challenge/{token}", self._acme)
        if self.config.is_nginx_enabled:
            app.router.add_get("/", self._root)
            app.router.add_get("/web-admin", self._root)
            app.router.add_get("/web-admin/", self._index)
            if STATIC_DIR.is_dir():
                app.router.add_static("/web-admin/", STATIC_DIR, show_index=False, append_version=False)
        app.on_response_prepare.append(self._headers)
        return app

    async def _root(self, request: web.Request) -> web.Response:
        target = "/web-admin/" + (f"?{request.query_string}" if request.query_string else "")
        raise web.HTTPFound(target)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            return web.Response(text="web-admin not installed", status=404)
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def _metrics(self, request: web.Request) -> web.Response:
        """Prometheus scrape, only with the admin secret (``Authorization: Bearer …``).

        Wrong secrets count with the console's logins, per client (an IPv6 /64 is one); past a few, the client is
        answered 429 without any comparison, the right secret included, so a guesser learns nothing from a 429.
        A scraper at another address is not affected."""
        remote = remote_of(request)
        if self.admin_throttle.blocked_for(client_key(remote)) > 0:
            return web.Response(status=429, text="too many failed attempts\n")
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        # Header bytes that are not UTF-8 arrive as surrogate escapes; they must compare unequal, not raise.
        secret = self.config.admin_secret
        if secret and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), secret.encode()):
            return web.Response(
                text=metrics.render(
                    self.gateway, self.events, self.guard, self.cluster.router.metrics() if self.cluster else None
                ),
                content_type="text/plain",
                charset="utf-8",
            )
        self.admin_throttle.failure(client_key(remote))
        return web.Response(status=401, text="admin secret required\n", headers={"WWW-Authenticate": "Bearer"})

    async def _acme(self, request: web.Request) -> web.StreamResponse:
        """HTTP-01 challenges for certbot --webroot <data_dir>/acme."""
        token = request.match_info["token"]
        path = self.data_dir / "acme" / ".well-known" / "acme-challenge" / token
        if not token.replace("-", "").replace("_", "").isalnum() or not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)

    @web.middleware
    async def _backstop(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        """Whatever a request makes fail unexpectedly is answered (a Janus error on the API, 400 elsewhere) and
        logged as one short, rate-limited line: hostile input must neither get a 500 nor fill the disk with
        tracebacks. Root causes are fixed where they are found; this catches the ones not found yet."""
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            # The route pattern, not the path: a path carries session ids, which are bearer tokens.
            info = request.match_info
            route = info.route.resource.canonical if info.route.resource is not None else "?"
            self.gateway.log_unexpected(exc, f"{request.method} {route}", remote_of(request))
            if request.path.startswith("/janus"):
                return json_response(error_reply(ErrorCode.UNKNOWN, "Unexpected error handling the request"), 400)
            return web.Response(status=400, text="bad request\n")

    @web.middleware
    async def _https_redirect(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        """With TLS on, pages on plain HTTP move to HTTPS; the API and ACME challenges stay reachable on HTTP
        (aPuppet agents may be configured with an http:// URL)."""
        if (
            self.config.tls_enabled
            and not request.secure
            and request.method in ("GET", "HEAD")
            and not request.path.startswith(("/janus", "/.well-known/", "/metrics"))
        ):
            host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
            port = self.ports.get("web + API (https)", self.config.web_https_port)
            netloc = host if port == 443 else f"{host}:{port}"
            raise web.HTTPMovedPermanently(f"https://{netloc}{request.path_qs}")
        return await handler(request)

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        if not request.path.startswith("/janus"):
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def load_tls(self) -> None:
        """(Re)load the certificate; existing connections keep theirs, new ones get the new one (SIGHUP)."""
        if not self.config.tls_enabled:
            return
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        base = self.base_dir or Path.cwd()
        cert = resolve(base, self.config.tls_cert)
        self.ssl_context.load_cert_chain(cert, resolve(base, self.config.tls_key))
        log.info("TLS certificate loaded from %s", cert)

    async def start(self) -> None:
        self.load_tls()
        if self.cluster is not None:
            # Redis first: a node that cannot reach it must not take clients (ClusterUnavailable).
            await self.cluster.start(self.config.web_http_port)
        # No body decompression: Janus clients never compress, and undecodable gzip/deflate/br bodies made aiohttp
        # log a traceback per request (decompression bombs aside). Idle keep-alive ends at http_idle_timeout.
        self.runner = web.AppRunner(
            self.app,
            access_log=None,
            shutdown_timeout=1.0,
            auto_decompress=False,
            keepalive_timeout=self.config.http_idle_timeout,
            logger=QuietServerLogger(logging.getLogger("aiohttp.server")),
        )
        await self.runner.setup()
        try:
            for item in listeners(self.config):
                site = GuardedSite(
                    self.runner,
                    self.config.bind,
                    item.port,
                    guard=self.guard,
                    ssl_context=self.ssl_context if item.tls else None,
                    reuse_address=True,
                    reuse_port=self.reuse_port or None,
                )
                await site.start()
                port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                self.ports[item.purpose] = port
                log.info("listening on %s:%d for %s", self.config.bind, port, item.purpose)
        except OSError:
            await self.stop()
            raise
        self._housekeeping = asyncio.get_running_loop().create_task(self._housekeep())

    @property
    def port(self) -> int:
        """The main (web_http_port) port, resolved when 0 was asked for."""
        return next(iter(self.ports.values()))

    @property
    def url(self) -> str:
        host = self.config.bind
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(self.housekeeping_interval)
            try:
                self.gateway.expire()
                self.endings.sweep()
                self.guard.sweep()
                await self._sweep_recordings()
                await self.heap.maybe_trim()
            except Exception:
                log.exception("housekeeping failed")

    async def _sweep_recordings(self) -> None:
        """Retention: recordings last written more than `recordings_keep_days` ago are deleted, at start-up and
        then every `RECORDINGS_SWEEP_INTERVAL` (in a thread: a folder of thousands of files is not the loop's)."""
        keep_days = self.config.recordings_keep_days
        now = time.monotonic()
        due = self._recordings_swept_at is None or now - self._recordings_swept_at >= RECORDINGS_SWEEP_INTERVAL
        if keep_days <= 0 or not due or not (self.config.record_sessions or self.base_dir is not None):
            return
        self._recordings_swept_at = now
        folder = recordings_dir(self.config, self.base_dir)
        if not folder.is_dir():
            return
        deleted, freed = await asyncio.to_thread(sweep, folder, keep_days)
        log.info("recordings: %d older than %g days deleted (%.1f MB freed)", deleted, keep_days, freed / 1e6)

    async def stop(self) -> None:
        await self.console.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)
            self._housekeeping = None
        await self.websocket.close()
        await self.gateway.close()
        if self.cluster is not None:
            await self.cluster.stop()
        if self.audit is not None:
            self.audit.close()
            self.audit = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        self.ports.clear()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
