"""A Janus client that talks to a `Gateway` object directly (no sockets), for plugin tests.

The plugins' WebRTC side still runs for real (aiortc peers over loopback UDP); only the Janus signalling hop
is in-process, which is what the sans-I/O core is for. Transport tests use real HTTP/WebSocket instead.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

from apuppet.api.gateway import Gateway

JSON = dict[str, Any]


class InProcClient:
    def __init__(self, gateway: Gateway, remote: str = "127.0.0.1") -> None:
        self.gateway = gateway
        self.remote = remote
        self.backlog: dict[int, list[JSON]] = {}

    def request(self, verb: str, session: int | None = None, handle: int | None = None, **fields: Any) -> JSON:
        msg = {"janus": verb, "transaction": secrets.token_hex(6), "apisecret": self.gateway.api_secret, **fields}
        return self.gateway.handle(msg, session_id=session, handle_id=handle, remote=self.remote)

    def create(self) -> int:
        reply = self.request("create")
        assert reply["janus"] == "success", reply
        return int(reply["data"]["id"])

    def attach(self, session: int, plugin: str) -> int:
        reply = self.request("attach", session, plugin=plugin)
        assert reply["janus"] == "success", reply
        return int(reply["data"]["id"])

    def message(self, session: int, handle: int, body: JSON, jsep: JSON | None = None) -> JSON:
        fields: JSON = {"body": body}
        if jsep is not None:
            fields["jsep"] = jsep
        return self.request("message", session, handle, **fields)

    async def event(self, session: int, predicate: Callable[[JSON], bool] | None = None, timeout: float = 10.0) -> JSON:
        """The next queued event of `session` matching `predicate`; others stay in a backlog for later calls."""
        predicate = predicate or (lambda _e: True)
        backlog = self.backlog.setdefault(session, [])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            sess = self.gateway.sessions.get(session)
            if sess is not None:
                backlog.extend(sess.pop_events(1000))
            for i, ev in enumerate(backlog):
                if predicate(ev):
                    return backlog.pop(i)
            if loop.time() > deadline:
                raise TimeoutError(f"no matching event for session {session}; backlog: {backlog!r}")
            await asyncio.sleep(0.01)


def plugin_data(event: JSON) -> JSON:
    return event.get("plugindata", {}).get("data", {})
