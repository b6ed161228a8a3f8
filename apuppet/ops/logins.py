"""Operator logins to the console: the admin secret in, a random session token out.

The browser never keeps the admin secret: a right one buys a token from `secrets` (held in an HttpOnly cookie)
that expires when unused for `idle_timeout`, after `lifetime` in any case, and at logout. Each login also has
a CSRF token that the page sends back as a header with every state-changing request (the cookie is SameSite=Strict
and the routes check Origin as well). Wrong secrets are throttled per client (an address, an IPv6 /64): while one
is blocked its attempts are answered 429 without being compared, the right secret included, so a guesser who
ignores the 429s learns nothing from them and is slowed down indeed. The admin secret may be chosen by a person
and is held by few operators, unlike the API secret (generated, shared by hundreds of phones behind one carrier
NAT, whose right secret passes a blocked address on purpose); a stranger can only block his own client key, not
the operator's elsewhere.

The policy is here; where logins are kept is a `LoginStore`: this process' memory (`MemoryLoginStore`) or, in a
cluster, Redis (`cluster/logins.py`), so that a login made through one node is valid on all and a logout revokes
it on all. A store is keyed by an HMAC of the token keyed with the admin secret, never the token: whoever reads
the store cannot log in with what it holds, and a new admin secret leaves every older login unknown. In a cluster
the throttle handed in counts for all nodes (`cluster/guessing.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..api.throttle import Throttle

JSON = dict[str, Any]

#: A login unused this long is gone (seconds); the console's live stream counts as use.
IDLE_TIMEOUT = 30 * 60.0
#: A login lasts at most this long, used or not.
LIFETIME = 12 * 3600.0
#: Logins kept at once; past it the oldest goes (a leaked secret must not grow the server's memory, nor Redis').
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
    #: When it was made, in the `Logins` clock's seconds (wall-clock by default: nodes compare it).
    created: float


class LoginStore(Protocol):
    """Where logins are kept, by `key` (`Logins.store_key`). Records are small JSON objects."""

    async def add(self, key: str, record: JSON, idle: float) -> None:
        """Keep a new login, gone after `idle` seconds unused; past `MAX_LOGINS`, the oldest goes."""

    async def use(self, key: str, idle: float) -> JSON | None:
        """The login's record with its `idle` expiry started anew, or None (unknown, expired, revoked)."""

    async def remove(self, key: str) -> None:
        """Revoke a login (twice is harmless)."""


class MemoryLoginStore:
    """A single server's logins, in its memory (a restart ends them)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, limit: int = MAX_LOGINS) -> None:
        self.clock = clock
        self.limit = limit
        #: key → (record, expiry)
        self._logins: dict[str, tuple[JSON, float]] = {}

    async def add(self, key: str, record: JSON, idle: float) -> None:
        now = self.clock()
        for old in [k for k, (_, expiry) in self._logins.items() if expiry <= now]:
            del self._logins[old]
        while len(self._logins) >= self.limit:
            del self._logins[next(iter(self._logins))]
        self._logins[key] = (record, now + idle)

    async def use(self, key: str, idle: float) -> JSON | None:
        found = self._logins.get(key)
        now = self.clock()
        if found is None or found[1] <= now:
            self._logins.pop(key, None)
            return None
        self._logins[key] = (found[0], now + idle)
        return found[0]

    async def remove(self, key: str) -> None:
        self._logins.pop(key, None)

    def __len__(self) -> int:
        return len(self._logins)


class Logins:
    def __init__(
        self,
        secret: str,
        *,
        throttle: Throttle | None = None,
        store: LoginStore | None = None,
        clock: Callable[[], float] = time.time,
        idle_timeout: float = IDLE_TIMEOUT,
        lifetime: float = LIFETIME,
    ) -> None:
        """`clock` dates the logins (`lifetime`); the memory store's idle expiry runs on it too."""
        self.secret = secret
        self.clock = clock
        self.throttle = Throttle(clock=clock) if throttle is None else throttle
        self.store: LoginStore = MemoryLoginStore(clock) if store is None else store
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime

    def store_key(self, token: str) -> str:
        """What the store knows a login by: HMAC-SHA256 of the token (32 random bytes) keyed with the admin
        secret."""
        return hmac.new(self.secret.encode(), token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    @property
    def enabled(self) -> bool:
        """No admin secret, no console: never open to everyone."""
        return bool(self.secret)

    async def log_in(self, given: str, address: str, client: str | None = None) -> Login:
        """`client` is what the throttle counts (the server passes `netaddr.client_key(address)`: an IPv6 /64 is
        one client); `address` itself by default."""
        if not self.enabled:
            raise LoginRefused(403, "the console is disabled: no admin_secret is configured")
        # Keyed like /metrics' admin-secret throttle (the server shares one): guesses at either count together.
        # A blocked client is refused before the comparison: a 429 must not tell a right guess from a wrong one.
        key = address if client is None else client
        wait = self.throttle.blocked_for(key)
        if wait > 0:
            raise LoginRefused(429, f"too many failed attempts, retry in {math.ceil(wait)} s")
        # Text that is not UTF-8 (surrogate escapes) must compare unequal, not raise.
        if hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.secret.encode()):
            login = Login(secrets.token_urlsafe(32), secrets.token_urlsafe(24), address, self.clock())
            record = {"csrf": login.csrf, "address": address, "created": login.created}
            await self.store.add(self.store_key(login.token), record, self.idle_timeout)
            return login
        self.throttle.failure(key)
        raise LoginRefused(401, "wrong admin secret")

    async def check(self, token: str | None) -> Login | None:
        """The login a cookie's token stands for, if still valid; using it keeps it alive."""
        if not token:
            return None
        key = self.store_key(token)
        record = await self.store.use(key, self.idle_timeout)
        if record is None:
            return None
        try:
            login = Login(token, str(record["csrf"]), str(record["address"]), float(record["created"]))
        except (KeyError, TypeError, ValueError):
            login = None  # not a record of ours: no login
        if login is None or self.clock() - login.created > self.lifetime:
            await self.store.remove(key)
            return None
        return login

    async def valid(self, login: Login) -> bool:
        """Whether a login seen before is still current (a live stream checks its own this way)."""
        return await self.check(login.token) is not None

    @staticmethod
    def csrf_ok(login: Login, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), login.csrf.encode())

    async def log_out(self, token: str | None) -> None:
        if token:
            await self.store.remove(self.store_key(token))
