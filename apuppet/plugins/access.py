"""Who may reach a room or a mountpoint, and who may change it: one policy for both plugins.

Janus lets anybody do anything. Here:
* reaching a protected resource takes its pin, and wrong pins are slowed down per address *and* per resource
  (an address gets few free failures; a resource more, so that a stranger's failures do not lock out the real
  viewer, but with a short ceiling, which still caps guessing spread over many addresses);
* changing it (destroy, edit, kick…) takes being its creator, or its `secret`, or the server's admin secret;
  wrong secrets are slowed down per address;
* a viewer session (no API secret) may make only the requests that reach a device with its password, and its
  requests for resources that do not exist count as guesses, so that ids cannot be enumerated quickly;
* a trusted client that presents the pin may take over a resource whose creator is gone (an aPuppet agent
  reconnecting with the same ids after a network loss).

Each plugin reports refusals with its own Janus error code, and its operator events name the resource with its
own field (`room`, `id`), hence the parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol

from ..api.throttle import Throttle
from .fields import JSON, RequestError, same_secret


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
        guessing_request: str,
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
        self.guessing_request = guessing_request
        # (`is None`, not `or`: an empty Throttle is falsy.)
        self.by_address = Throttle(free=5, base_delay=1.0) if by_address is None else by_address
        self.by_resource = Throttle(free=20, base_delay=0.5, max_delay=30.0) if by_resource is None else by_resource
        #: Whether a resource's creator has lost its connection.
        self.owner_gone = owner_gone

    # -- who is asking ---------------------------------------------------------------------------------------
    def is_admin(self, msg: JSON) -> bool:
        return same_secret(msg.get("admin_key"), self.admin_secret) or same_secret(msg.get("secret"), self.admin_secret)

    def privileged(self, resource: Resource, requester: Hashable, msg: JSON) -> bool:
        """The creator, a holder of the resource's secret, or the admin."""
        return resource.owner == requester or self.is_admin(msg) or same_secret(msg.get("secret"), resource.secret)

    # -- checks that refuse --------------------------------------------------------------------------------------
    def check_pin(self, resource: Resource, key: str, msg: JSON, remote: str) -> None:
        if not resource.pin:
            return
        by_address, by_resource = (f"{self.kind}-pin", remote), (f"{self.kind}-pin", key)
        wait = max(self.by_address.blocked_for(by_address), self.by_resource.blocked_for(by_resource))
        if wait > 0:
            raise RequestError(self.unauthorized, f"Too many wrong pins, retry in {wait:.0f} s")
        if same_secret(msg.get("pin"), resource.pin):
            self.by_address.success(by_address)
            return
        self.by_address.failure(by_address)
        self.by_resource.failure(by_resource)
        self.report("wrong_pin", {self.field: key, "remote": remote})
        raise RequestError(self.unauthorized, "Unauthorized (wrong pin)")

    def check_authority(self, resource: Resource, key: str, requester: Hashable, msg: JSON, remote: str) -> None:
        """Destroy, edit, kick, announce: only the privileged; wrong secrets slowed down per address."""
        if resource.owner == requester:
            return
        throttle_key = (f"{self.kind}-secret", remote)
        wait = self.by_address.blocked_for(throttle_key)
        if wait > 0:
            raise RequestError(self.unauthorized, f"Too many failed attempts, retry in {wait:.0f} s")
        if self.privileged(resource, requester, msg):
            return
        self.by_address.failure(throttle_key)
        verb = str(msg.get(self.kind) or msg.get("request"))
        self.report("unauthorized", {self.field: key, "remote": remote, "request": verb})
        raise RequestError(self.unauthorized, f"Unauthorized (wrong secret, or not the {self.noun}'s creator)")

    def check_viewer(self, verb: str, remote: str | None = None) -> None:
        """A viewer session's request: only those that reach a device with its password, and (given `remote`)
        not while its address is blocked for guessing."""
        if verb not in self.viewer_requests:
            raise RequestError(self.unauthorized, f"Unauthorized ('{verb}' needs the API secret)")
        if remote is not None and verb == self.guessing_request:
            wait = self.by_address.blocked_for((f"{self.kind}-pin", remote))
            if wait > 0:
                raise RequestError(self.unauthorized, f"Too many failed attempts, retry in {wait:.0f} s")

    def viewer_missed(self, remote: str) -> None:
        """A viewer session asked for a resource that does not exist: a guess."""
        self.by_address.failure((f"{self.kind}-pin", remote))

    # -- reclaiming ----------------------------------------------------------------------------------------------
    def reclaimable(self, resource: Resource, requester: Hashable, msg: JSON) -> bool:
        return (
            self.owner_gone is not None
            and resource.owner != requester
            and bool(resource.pin)
            and same_secret(msg.get("pin"), resource.pin)
            and self.owner_gone(resource.owner)
        )
