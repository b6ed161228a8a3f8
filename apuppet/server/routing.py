"""Where the transports hand a request and a long poll: this node's gateway, or a cluster node's router.

Both have the same two calls, `receive` and `poll`, so the HTTP and WebSocket transports have one path whatever the
deployment: a single node is `SingleNode` (nothing waits for another node; one coroutine more per request, ~1 µs),
a cluster node is `apuppet.cluster.router.Router`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from ..api.gateway import Gateway
from ..api.plugin import JSON
from ..api.session import Connection

if TYPE_CHECKING:
    from ..cluster.router import Router


class SingleNode:
    """This process is the only node: every session is the gateway's."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def receive(
        self,
        data: bytes | str,
        *,
        session_id: int | None = None,
        handle_id: int | None = None,
        remote: str = "",
        connection: Connection | None = None,
    ) -> JSON:
        """`Gateway.receive`: the session, if any, is here."""
        return self.gateway.receive(
            data, session_id=session_id, handle_id=handle_id, remote=remote, connection=connection
        )

    async def poll(
        self, session_id: int | None, secret: Any, remote: str, maxev: int | None, closed: Callable[[], bool]
    ) -> tuple[int, Any] | None:
        """None: the transport polls the gateway itself (`Router.poll` answers for sessions held elsewhere)."""
        return None


Routing: TypeAlias = "SingleNode | Router"
