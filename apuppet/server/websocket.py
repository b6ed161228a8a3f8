"""Janus WebSocket transport (subprotocol `janus-protocol`), a thin adapter over the `Gateway`.

Ids travel inside the messages. Events of sessions created (or claimed) on a connection are pushed on it as they
happen, and the sessions go away when the connection closes, as Janus does without session reclaiming.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from ..api.errors import ErrorCode, JanusError
from ..api.gateway import Gateway, error_reply
from .http import json_response, remote_of
from .routing import Routing, SingleNode

log = logging.getLogger(__name__)

#: Events waiting to be written to one connection; a client that stops reading is disconnected past this.
MAX_PENDING = 10_000


class Connection:
    """One WebSocket client: the events of the sessions it creates or claims are pushed on it."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.overflowed = False
        #: Events pushed while a request is being handled wait here, so that the reply goes out first.
        self.held: list[dict[str, Any]] | None = None

    def send(self, event: dict[str, Any]) -> None:
        if self.held is not None:
            self.held.append(event)
            return
        self._enqueue(event)

    def _enqueue(self, event: dict[str, Any]) -> None:
        if self.queue.qsize() >= MAX_PENDING:
            if not self.overflowed:
                self.overflowed = True
                log.warning("websocket client not reading; closing it")
                self.queue.put_nowait(None)
            return
        self.queue.put_nowait(event)

    async def writer(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                await self.ws.close()
                return
            await self.ws.send_str(json.dumps(item, separators=(",", ":")))


class WebSocketTransport:
    def __init__(self, gateway: Gateway, max_message_bytes: int = 1 << 20, heartbeat: float = 30.0) -> None:
        self.gateway = gateway
        self.max_message_bytes = max_message_bytes
        self.heartbeat = heartbeat
        self.connections: set[Connection] = set()
        #: Where requests go: a cluster node's router (apuppet.cluster), or this node.
        self.router: Routing = SingleNode(gateway)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            protocols=("janus-protocol",), max_msg_size=self.max_message_bytes, heartbeat=self.heartbeat
        )
        if not _handshake_is_text(request) or not ws.can_prepare(request).ok:
            return web.json_response(
                error_reply(ErrorCode.TRANSPORT_SPECIFIC, "Use POST, or a WebSocket with subprotocol janus-protocol"),
                status=405,
            )
        remote = remote_of(request)
        try:
            self.gateway.open_websocket(remote)
        except JanusError as exc:
            return json_response(error_reply(exc.code, exc.reason))
        try:
            return await self._serve(request, ws, remote)
        finally:
            self.gateway.close_websocket(remote)

    async def _serve(self, request: web.Request, ws: web.WebSocketResponse, remote: str) -> web.WebSocketResponse:
        await ws.prepare(request)
        conn = Connection(ws)
        self.connections.add(conn)
        writer = asyncio.get_running_loop().create_task(conn.writer())
        try:
            # Frames over `max_message_bytes` or text that is not UTF-8 end the connection (close codes 1009 and
            # 1007, as RFC 6455 requires); anything else gets an error reply and the connection goes on.
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(conn, msg.data, remote)
                elif msg.type == WSMsgType.BINARY:
                    conn.send(error_reply(ErrorCode.INVALID_JSON, "JSON error: binary frames are not accepted"))
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.connections.discard(conn)
            self.gateway.connection_closed(conn)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return ws

    async def _on_text(self, conn: Connection, data: str, remote: str) -> None:
        """One request, answered before the next is read: in a cluster it may wait for another node, and replies
        keep the requests' order. Events it causes at once (a plugin's immediate event) follow its reply."""
        conn.held = []
        try:
            reply = await self.router.receive(data, remote=remote, connection=conn)
        finally:
            held, conn.held = conn.held, None
        conn.send(reply)
        for event in held:
            conn.send(event)

    async def close(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close()


def _handshake_is_text(request: web.Request) -> bool:
    """aiohttp quotes a refused handshake's Upgrade header in its 400 answer and fails to encode one that was not
    UTF-8 (aiohttp keeps such bytes as surrogates): refuse those headers before it tries."""
    for name in ("Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol"):
        value = request.headers.get(name, "")
        if not value.isascii():
            return False
    return True
