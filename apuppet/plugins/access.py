"""Who may reach a room or a mountpoint, and who may change it: one policy for both plugins.

Janus lets anybody do anything. Here:
* reaching a protected resource takes its pin, and wrong pins are slowed down per address. Where the pin is *weak*
  (`is_weak`: aPuppet's 4 digits), guessing spread over many addresses is slowed down per resource too, but that
  lock only stops addresses that have been guessing on it: a stranger's failures must not lock out the real viewer,
  whose correct pin from an address that never guessed always gets in;
* a correct *strong* pin or secret goes through even from a throttled address (the throttle cannot protect what
  cannot be guessed anyway, and it must not lock out a legitimate user behind the same NAT as a guesser); a weak
  one does not, or the throttle would be an oracle that answers guesses at full speed;
* changing a resource (destroy, edit, kick…) takes being its creator, or its `secret`, or the server's admin secret;
  wrong secrets and admin keys, wherever they are presented (`list` included), are slowed down per address;
* a viewer session (no API secret) may make only the requests that reach a device with its password, and its
  requests for resources that do not exist count as guesses, so that ids cannot be enumerated quickly;
* a trusted client that presents the pin may take over a resource whose creator is gone (an aPuppet agent
  reconnecting with the same ids after a network loss): gone means silent for the gateway (`owner_gone`, which
  asks the Gateway's `idle_for`; an open WebSocket is never silent).

Each plugin reports refusals with its own Janus error code, and its operator events name the resource with its
own field (`room`, `id`), hence the parameters.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from ..api.throttle import Throttle
from ..netaddr import client_key
from .fields import JSON, RequestError, same_secret

#: Below this much guessing work a pin or secret is weak. 2^40 guesses at a thousand a second take 35 years.
STRONG_BITS = 40.0
#: …and anything shorter than this is weak whatever its characters.
STRONG_LENGTH = 8


def strength_bits(secret: str) -> float:
    """A guesser's work for `secret`, in bits: its length times log2 of the size of the character classes it uses
    (digits 10, lower case 26, upper case 26, anything else 33). A generous estimate: it assumes random choice."""
    classes = (
        (string.digits, 10),
        (string.ascii_lowercase, 26),
        (string.ascii_uppercase, 26),
    )
    size = sum(n for chars, n in classes if any(c in chars for c in secret))
    if any(c not in string.ascii_letters + string.digits for c in secret):
        size += 33
    return len(secret) * math.log2(size) if size > 1 else 0.0


def is_weak(secret: str) -> bool:
    """Whether `secret` can be guessed in practice: fewer than 8 characters, or under 40 bits (`strength_bits`).
    aPuppet's pins (4 digits, 13 bits) are weak; an 8-character mix of letters and digits (48 bits) is not."""
    return len(secret) < STRONG_LENGTH or strength_bits(secret) < STRONG_BITS


class Resource(Protocol):
    owner: Hashable
    pin: str
    secret: str


class Access:
    def __init__(
        self,
        kind: str,
        *,
        unauthorized: int,
        admin_secret: str,
        report: Callable[[str, JSON], None],
        field: str,
        noun: str,
        viewer_requests: frozenset[str],
        by_address: Throttle | None = None,
        by_resource: Throttle | None = None,
        owner_gone: Callable[[Any], bool] | None = None,
    ) -> None:
        self.kind = kind
        self.unauthorized = unauthorized
        self.admin_secret = admin_secret
        self.report = report
        self.field = field
        self.noun = noun
        self.viewer_requests = viewer_requests
        # (`is None`, not `or`: an empty Throttle is falsy.)
        self.by_address = Throttle(free=5, base_delay=1.0) if by_address is None else by_address
        self.by_resource = Throttle(free=20, base_delay=0.5, max_delay=30.0) if by_resource is None else by_resource
        #: (resource, address) pairs with a recent wrong pin: the ones a resource's lock applies to.
        self.guessers = Throttle(
            free=0, base_delay=600.0, max_delay=600.0, forget_after=600.0, clock=self.by_address.clock
        )
        #: Whether a resource's creator has lost its connection.
        self.owner_gone = owner_gone

    # -- who is asking ---------------------------------------------------------------------------------------
    def is_admin(self, msg: JSON, remote: str) -> bool:
        """Whether the request carries the server's admin secret (as `admin_key` or `secret`); a wrong one counts
        as a failed attempt of its address (`authority`)."""
        return self.authority(msg, remote)

    def authority(self, msg: JSON, remote: str, resource_secret: str = "", report: bool = True) -> bool:
        """Whether the request carries the admin secret or `resource_secret`.

        Values presented in `admin_key` or `secret` that match neither count as a failed attempt of the address;
        while the address is blocked, a request presenting one is refused, unless what it presents is correct and
        strong. Nothing presented, nothing counted."""
        given = [value for value in (msg.get("admin_key"), msg.get("secret")) if value is not None]
        if not given:
            return False
        key = (f"{self.kind}-secret", client_key(remote))
        wait = self.by_address.blocked_for(key)
        for expected in (self.admin_secret, resource_secret):
            # Every comparison is made (constant time each), whatever matched before.
            if sum(same_secret(value, expected) for value in given) and (wait <= 0 or not is_weak(expected)):
                return True
        if wait > 0:
            raise RequestError(self.unauthorized, f"Too many failed attempts, retry in {math.ceil(wait)} s")
        self.by_address.failure(key)
        if report:
            verb = str(msg.get(self.kind) or msg.get("request"))[:32]
            self.report("unauthorized", {"remote": remote, "request": verb})
        return False

    def privileged(self, resource: Resource, requester: Hashable, msg: JSON, remote: str) -> bool:
        """The creator, a holder of the resource's secret, or the admin."""
        return resource.owner == requester or self.authority(msg, remote, resource.secret)

    # -- checks that refuse --------------------------------------------------------------------------------------
    def check_pin(self, resource: Resource, key: str, msg: JSON, remote: str) -> None:
        if not resource.pin:
            return
        source = client_key(remote)
        by_address, by_resource = (f"{self.kind}-pin", source), (f"{self.kind}-pin", key)
        guesser = (f"{self.kind}-pin", key, source)
        correct = same_secret(msg.get("pin"), resource.pin)
        weak = is_weak(resource.pin)
        wait = self.by_address.blocked_for(by_address)
        if weak and self.guessers.blocked_for(guesser) > 0:
            # The resource's lock holds back those who have been guessing on it, never a newcomer.
            wait = max(wait, self.by_resource.blocked_for(by_resource))
        if wait > 0 and (weak or not correct):
            raise RequestError(self.unauthorized, f"Too many wrong pins, retry in {math.ceil(wait)} s")
        if correct:
            # The address's own record stays (a guesser could otherwise clear it with a pin it knows).
            self.guessers.success(guesser)
            return
        self.by_address.failure(by_address)
        if weak:
            self.by_resource.failure(by_resource)
            self.guessers.failure(guesser)
        self.report("wrong_pin", {self.field: key, "remote": remote})
        raise RequestError(self.unauthorized, "Unauthorized (wrong pin)")

    def check_authority(self, resource: Resource, key: str, requester: Hashable, msg: JSON, remote: str) -> None:
        """Destroy, edit, kick, announce: only the privileged; wrong secrets slowed down per address."""
        if resource.owner == requester or self.authority(msg, remote, resource.secret, report=False):
            return
        verb = str(msg.get(self.kind) or msg.get("request"))[:32]
        self.report("unauthorized", {self.field: key, "remote": remote, "request": verb})
        raise RequestError(self.unauthorized, f"Unauthorized (wrong secret, or not the {self.noun}'s creator)")

    def check_viewer(self, verb: str) -> None:
        """A viewer session's request: only those that reach a device with its password."""
        if verb not in self.viewer_requests:
            raise RequestError(self.unauthorized, f"Unauthorized ('{verb}' needs the API secret)")

    def viewer_missed(self, remote: str) -> None:
        """A viewer session asked for a resource that does not exist: a guess. A blocked address is told so (and
        learns nothing of what exists)."""
        key = (f"{self.kind}-pin", client_key(remote))
        wait = self.by_address.blocked_for(key)
        if wait > 0:
            raise RequestError(self.unauthorized, f"Too many failed attempts, retry in {math.ceil(wait)} s")
        self.by_address.failure(key)

    # -- reclaiming ----------------------------------------------------------------------------------------------
    def reclaimable(self, resource: Resource, requester: Hashable, msg: JSON) -> bool:
        """Only `owner_gone` decides whether the creator is gone: it asks the Gateway how long the creator's session
        has been silent, and a session with an open WebSocket is never silent."""
        return (
            self.owner_gone is not None
            and resource.owner != requester
            and bool(resource.pin)
            and same_secret(msg.get("pin"), resource.pin)
            and self.owner_gone(resource.owner)
        )
