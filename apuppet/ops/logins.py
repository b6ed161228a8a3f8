"""Operator logins to the console, sans-I/O: the admin secret in, a random session token out.

The browser never keeps the admin secret: a right one buys a token from `secrets` (held in an HttpOnly cookie)
that expires when unused for `idle_timeout`, after `lifetime` in any case, and at logout. Each login also has
a CSRF token that the page sends back as a header with every state-changing request (the cookie is SameSite=Strict
and the routes check Origin as well). Wrong secrets are throttled per address like every secret: the right one
still passes from a throttled address, so a stranger guessing from the operator's NAT cannot lock the operator out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..api.throttle import Throttle

#: A login unused this long is gone (seconds); the console's live stream counts as use.
IDLE_TIMEOUT = 30 * 60.0
#: A login lasts at most this long, used or not.
LIFETIME = 12 * 3600.0
#: Logins kept at once; past it the oldest goes (a leaked secret must not grow the server's memory).
MAX_LOGINS = 256


class LoginRefused(Exception):
    """A refused login: `status` is the HTTP status to answer (401 wrong, 429 throttled, 403 disabled)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Login:
    token: str
    csrf: str
    address: str
    created: float
    last_used: float


class Logins:
    def __init__(
        self,
        secret: str,
        *,
        throttle: Throttle | None = None,
        clock: Callable[[], float] = time.monotonic,
        idle_timeout: float = IDLE_TIMEOUT,
        lifetime: float = LIFETIME,
    ) -> None:
        self.secret = secret
        self.clock = clock
        self.throttle = Throttle(clock=clock) if throttle is None else throttle
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self._logins: dict[str, Login] = {}

    @property
    def enabled(self) -> bool:
        """No admin secret, no console: never open to everyone."""
        return bool(self.secret)

    def log_in(self, given: str, address: str, client: str | None = None) -> Login:
        """`client` is what the throttle counts (the server passes `netaddr.client_key(address)`: an IPv6 /64 is
        one client); `address` itself by default."""
        if not self.enabled:
            raise LoginRefused(403, "the console is disabled: no admin_secret is configured")
        # Text that is not UTF-8 (surrogate escapes) must compare unequal, not raise.
        if hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.secret.encode()):
            return self._new(address)
        # Keyed like /metrics' admin-secret throttle (the server shares one): guesses at either count together.
        key = address if client is None else client
        wait = self.throttle.blocked_for(key)
        if wait > 0:
            raise LoginRefused(429, f"too many failed attempts, retry in {wait:.0f} s")
        self.throttle.failure(key)
        raise LoginRefused(401, "wrong admin secret")

    def check(self, token: str | None) -> Login | None:
        """The login a cookie's token stands for, if still valid; using it keeps it alive."""
        if not token:
            return None
        login = self._logins.get(token)
        if login is None:
            return None
        now = self.clock()
        if now - login.last_used > self.idle_timeout or now - login.created > self.lifetime:
            del self._logins[token]
            return None
        login.last_used = now
        return login

    def valid(self, login: Login) -> bool:
        """Whether a login seen before is still current (a live stream checks its own this way)."""
        return self._logins.get(login.token) is login and self.check(login.token) is login

    @staticmethod
    def csrf_ok(login: Login, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), login.csrf.encode())

    def log_out(self, token: str | None) -> None:
        if token:
            self._logins.pop(token, None)

    def __len__(self) -> int:
        return len(self._logins)

    def _new(self, address: str) -> Login:
        now = self.clock()
        for token in [t for t, login in self._logins.items() if now - login.last_used > self.idle_timeout]:
            del self._logins[token]
        while len(self._logins) >= MAX_LOGINS:
            del self._logins[next(iter(self._logins))]
        login = Login(secrets.token_urlsafe(32), secrets.token_urlsafe(24), address, now, now)
        self._logins[login.token] = login
        return login
