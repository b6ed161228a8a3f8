"""Connection-level limits for the aiohttp sites: open connections per address, and deadlines for connections
that hold a socket without making a request.

aiohttp keeps an idle keep-alive connection for an hour and has no deadline for a request head that arrives one
byte at a time, so a few hundred idle or slow sockets would hold the server's file descriptors. A request being
handled is not timed here: long polls and WebSockets are meant to last, and the body deadline lives in the
REST transport. Between requests the connection is idle; idle too long, or a head started but not finished in
time, and it is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..api.limits import LogLimiter, Slots
from ..netaddr import client_key

log = logging.getLogger(__name__)

REFUSED = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Conn:
    __slots__ = ("transport", "remote", "busy", "idle_since", "first_byte")

    def __init__(self, transport: asyncio.BaseTransport, remote: str, now: float) -> None:
        self.transport = transport
        self.remote = remote
        self.busy = 0
        self.idle_since = now
        #: First byte received since the connection went idle: a request head has started.
        self.first_byte: float | None = None


class _GuardedProtocol(asyncio.Protocol):
    """Stands between asyncio and aiohttp's protocol to see connections open, receive and close."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._conn: _Conn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._conn = self._guard._opened(transport)
        if self._conn is None:
            return
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            return
        if conn.busy == 0 and conn.first_byte is None:
            conn.first_byte = self._guard.clock()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._conn is None else self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is None:
            return
        self._guard._closed(self._conn)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class ConnectionGuard:
    def __init__(
        self,
        per_address: int = 2000,
        idle_timeout: float = 30.0,
        header_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_address = per_address
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.clock = clock
        self.slots = Slots()
        self.conns: dict[asyncio.BaseTransport, _Conn] = {}
        self.closed_idle = 0
        self.closed_slow = 0
        self.refused = 0
        self._logged = LogLimiter()

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, inner())

    def _opened(self, transport: asyncio.BaseTransport) -> _Conn | None:
        peer = transport.get_extra_info("peername")
        remote = client_key(str(peer[0])) if isinstance(peer, tuple) and peer else ""
        if not self.slots.acquire(remote, self.per_address):
            self.refused += 1
            self._note("refused connection from %s: over connections_per_address", remote)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(REFUSED)
            transport.close()
            return None
        conn = _Conn(transport, remote, self.clock())
        self.conns[transport] = conn
        return conn

    def _closed(self, conn: _Conn) -> None:
        if self.conns.pop(conn.transport, None) is not None:
            self.slots.release(conn.remote)

    def _note(self, message: str, remote: str) -> None:
        suppressed = self._logged.allow((message, remote))
        if suppressed is not None:
            log.warning(message + (f" ({suppressed} more not logged)" if suppressed else ""), remote)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Marks the connection busy while its request is handled: no deadline applies then."""
        conn = self.conns.get(request.transport) if request.transport is not None else None
        if conn is None:
            return await handler(request)
        conn.busy += 1
        conn.first_byte = None
        try:
            return await handler(request)
        finally:
            conn.busy -= 1
            conn.idle_since = self.clock()
            conn.first_byte = None

    def sweep(self) -> None:
        """Close connections idle past `idle_timeout` or with a request head unfinished past `header_timeout`;
        the server calls this every second or so."""
        now = self.clock()
        for conn in list(self.conns.values()):
            if conn.busy:
                continue
            if conn.first_byte is not None:
                if now - conn.first_byte > self.header_timeout:
                    self.closed_slow += 1
                    self._note("closed a connection from %s: request head too slow", conn.remote)
                    conn.transport.close()
            elif now - conn.idle_since > self.idle_timeout:
                self.closed_idle += 1
                conn.transport.close()

    def close_all(self) -> None:
        for conn in list(self.conns.values()):
            conn.transport.close()


class QuietServerLogger(logging.LoggerAdapter[logging.Logger]):
    """The logger given to aiohttp's request handler. aiohttp logs a traceback at ERROR for every malformed
    request (a bad request line, an overlong header, a broken chunk): anyone could fill the disk with them. A
    client's malformed HTTP becomes one short line per address and minute; anything else keeps its traceback,
    once a minute per exception type."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self._limiter = LogLimiter(lines=1)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        client_fault = isinstance(exc, HttpProcessingError | ConnectionError | asyncio.IncompleteReadError)
        remote = str(args[0]) if args and str(msg).endswith("from %s") else ""
        key = (type(exc).__name__, remote if client_fault else "")
        suppressed = self._limiter.allow(key)
        if suppressed is None:
            return
        more = f" ({suppressed} more not logged)" if suppressed else ""
        if client_fault:
            self.logger.warning("malformed HTTP request from %s: %s%s", remote, type(exc).__name__, more)
        else:
            self.logger.error("%s%s", str(msg) % args if args else msg, more, exc_info=exc_info)


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through a `ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard, **kw: Any) -> None:
        super().__init__(runner, host, port, **kw)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
