"""Where the plugins get their peer connections: counted per client, and made by a WebRTC stack loaded on demand.

Each peer connection holds UDP ports of `rtp_port_range` (one per host candidate), a shared and small resource:
a client that could open peer connections at will would leave none for real viewers. So every connection made
for a client counts against its Janus session and its address (`PeerBudget`, `max_peers_per_session`,
`max_peers_per_address`), and the count is given back when the connection is closed (`PeerLease`).

The WebRTC stack (aiortc, aioice with dnspython, cryptography, pyOpenSSL, pylibsrtp: ~20 MB of resident memory,
a quarter of an idle server's) is imported when the first connection is needed, not when the server starts: a
server waiting for devices does not hold it (issue 16 §5). `Peers.ready()` imports it in a worker thread, so the
event loop keeps serving meanwhile (~0.15 s on a small VM), and the textroom starts that import as soon as a handle
attaches (`Peers.warm()`), one round trip before its `setup` needs it (agents and the web-admin attach the textroom
first; a streaming handle alone, such as the one that makes a mountpoint, does not start it). Python cannot unload a
module: once loaded, the stack stays. That the packages are installed is checked at start-up (`missing_packages`),
so a broken install still fails when the server starts, not at its first device.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import time
from collections import Counter
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..netaddr import client_key
from . import avstandin
from .settings import MediaSettings

if TYPE_CHECKING:
    from .peer import ServerCertificate, ServerPeerConnection

log = logging.getLogger(__name__)

#: What the stack needs installed (import names), checked without importing them.
STACK_PACKAGES = ("aiortc", "aioice", "cryptography", "OpenSSL", "pylibsrtp")
#: Our modules that import the stack; the first one is the factory's.
STACK_MODULES = ("apuppet.media.peer", "apuppet.media.viewer")
#: Seconds before a failed import of the stack is tried again: a passing failure (out of memory or of file
#: descriptors at that moment) must not leave the server without WebRTC until it restarts, and a broken install
#: is then logged once per try, not once per client.
RETRY_AFTER = 30.0


class TooManyPeerConnections(Exception):
    """A client reached its peer connection cap; the message is meant for the client."""


class WebRtcUnavailable(Exception):
    """The WebRTC stack could not be loaded; the message says why and is meant for the client and the log."""


def missing_packages(names: Iterable[str] = STACK_PACKAGES) -> list[str]:
    """The packages of `names` that are not installed (found by the import system without importing them)."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def import_stack() -> ModuleType:
    """Import the WebRTC stack and check that this aiortc has what forwarding relies on; the factory's module.

    Runs in a worker thread (`Peers.ready`): nothing here may touch the event loop."""
    avstandin.import_aiortc()  # first: on the PyAV stand-in where `serve` put it
    modules = [importlib.import_module(name) for name in STACK_MODULES]
    viewer = modules[1]
    viewer.check_aiortc()
    return modules[0]


class PeerBudget:
    """How many peer connections each Janus session and each client address holds (sans-I/O counters)."""

    def __init__(self, per_session: int, per_address: int) -> None:
        self.per_session = per_session
        self.per_address = per_address
        self.sessions: Counter[Any] = Counter()
        self.addresses: Counter[str] = Counter()

    def acquire(self, session: Any, address: str) -> PeerLease:
        """Count one more connection; `TooManyPeerConnections` when a cap is reached (0: no cap)."""
        key = client_key(address) if address else ""
        if self.per_session and self.sessions[session] >= self.per_session:
            raise TooManyPeerConnections(f"Too many peer connections ({self.per_session} per session)")
        if key and self.per_address and self.addresses[key] >= self.per_address:
            raise TooManyPeerConnections(f"Too many peer connections ({self.per_address} per address)")
        self.sessions[session] += 1
        if key:
            self.addresses[key] += 1
        return PeerLease(self, session, key)

    def _give_back(self, session: Any, key: str) -> None:
        for counter, name in ((self.sessions, session), (self.addresses, key)):
            if name in counter:
                counter[name] -= 1
                if counter[name] <= 0:
                    del counter[name]


class PeerLease:
    """One counted connection; `release()` may be called any number of times, it gives back once."""

    def __init__(self, budget: PeerBudget, session: Any, key: str) -> None:
        self._budget: PeerBudget | None = budget
        self._session = session
        self._key = key

    def release(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._give_back(self._session, self._key)


class Peers:
    """Makes the server's peer connections from one `MediaSettings`, all counted against one `PeerBudget`.

    One per server, handed to both plugins by the composition root: a client's textroom and streaming
    connections count together. Coroutines await `ready()` before `create()`; a caller that does not (a test, a
    script) gets the stack imported on the spot, blocking."""

    def __init__(self, settings: MediaSettings) -> None:
        missing = missing_packages()
        if missing:
            raise RuntimeError(f"WebRTC packages missing: {', '.join(missing)} (reinstall apuppet)")
        self.settings = settings
        self.budget = PeerBudget(settings.max_peers_per_session, settings.max_peers_per_address)
        self._stack: ModuleType | None = None
        self._loading: asyncio.Future[ModuleType] | None = None
        #: Why the last import failed (for the log: clients get the exception's type only), and when.
        self._failure: BaseException | None = None
        self._failed_at = 0.0
        self._certificate: ServerCertificate | None = None
        self._shares_certificates = False

    def warm(self) -> None:
        """Start importing the stack in a worker thread without waiting for it (on the event loop's thread)."""
        if self._stack is not None or self._loading is not None or self._failed_lately():
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside the loop (a sans-I/O test): create() imports on the spot
        self._loading = asyncio.ensure_future(asyncio.to_thread(import_stack))
        self._loading.add_done_callback(self._loaded)

    async def ready(self) -> None:
        """Return once `create()` can run without importing anything; `WebRtcUnavailable` if it never can."""
        if self._stack is not None:
            return
        self.warm()
        if self._loading is not None:
            try:
                # Shielded: a waiter cancelled (its handle detached) must not cancel the import the others wait for.
                await asyncio.shield(self._loading)
            except asyncio.CancelledError:
                raise
            except Exception:
                pass  # `_loaded` ran first (its callback was added first) and kept the reason
        if self._stack is None:
            raise self._unavailable()

    def _loaded(self, future: asyncio.Future[ModuleType]) -> None:
        self._loading = None
        if future.cancelled():
            return  # the loop is closing; a later ready() starts again
        exc = future.exception()
        if exc is None:
            try:
                self._adopt(future.result())
                return
            except Exception as adopting:
                exc = adopting
        self._failure, self._failed_at = exc, time.monotonic()
        log.error("WebRTC stack not loaded (tried again in %.0f s): %s: %s", RETRY_AFTER, type(exc).__name__, exc)

    def _failed_lately(self) -> bool:
        return self._failure is not None and time.monotonic() - self._failed_at < RETRY_AFTER

    def _unavailable(self) -> WebRtcUnavailable:
        # The exception's text may name files and libraries of the host: it stays in the log.
        kind = type(self._failure).__name__ if self._failure is not None else "not loaded"
        return WebRtcUnavailable(f"WebRTC unavailable on this server ({kind}; the server log says why)")

    def _adopt(self, stack: ModuleType) -> None:
        if self._stack is not None:
            return
        self._shares_certificates = stack.shares_certificates()
        if not self._shares_certificates:
            log.warning("this aiortc keeps certificates elsewhere: each peer connection makes its own")
        self._stack = stack
        log.info("WebRTC stack loaded (aiortc on %s)", "the PyAV stand-in" if avstandin.active() else "PyAV")

    def certificate(self) -> ServerCertificate | None:
        """The certificate new connections use (a new one after `CERTIFICATE_LIFETIME`); None if it cannot be
        shared with this aiortc."""
        stack = self._require()
        if not self._shares_certificates:
            return None
        current = self._certificate
        if current is None or time.monotonic() - current.created >= stack.CERTIFICATE_LIFETIME:
            current = self._certificate = stack.ServerCertificate.generateCertificate()
        return current

    def create(self, session: Any = None, address: str = "", name: str = "peer") -> ServerPeerConnection:
        """A server peer connection; with `session` (a Janus session id) it counts against that session's and
        `address`'s caps and raises `TooManyPeerConnections` past them. `name` prefixes its log lines."""
        stack = self._require()
        lease = None if session is None else self.budget.acquire(session, address)
        try:
            connection: ServerPeerConnection = stack.ServerPeerConnection(
                self.settings, lease, name, self.certificate()
            )
            return connection
        except BaseException:
            # No connection, so nothing would ever give the count back.
            if lease is not None:
                lease.release()
            raise

    def _require(self) -> ModuleType:
        if self._stack is None:
            if self._failed_lately():
                raise self._unavailable()
            self._adopt(import_stack())
        assert self._stack is not None
        return self._stack
