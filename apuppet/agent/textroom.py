"""The agent's TextRoom peer: the control channel, set up the way the aPuppet Android agent does (spec §3).

`setup` → the server's data-only offer arrives by poll → answer sent with `ack` → `webrtcup` → the agent opens
its own channel `"Trick"` and sends `list`. Requests go out on `"Trick"`; replies and room events are read on
*every* channel, since Janus answers on a channel it opens itself (spec §3.1). Unlike the Android agent,
replies are matched to requests by transaction and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from .janus import JanusClient, JanusReplyError, transaction

JSON = dict[str, Any]
log = logging.getLogger(__name__)

PLUGIN = "janus.plugin.textroom"
#: Janus textroom error "room already exists".
ROOM_EXISTS = 418


class TextRoomPeer:
    def __init__(self, janus: JanusClient, on_event: Callable[[JSON], None], timeout: float = 15.0) -> None:
        self.janus = janus
        self.on_event = on_event
        self.timeout = timeout
        self.handle: int | None = None
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.failed = asyncio.Event()
        self._pending: dict[str, asyncio.Future[JSON]] = {}

    async def connect(self) -> None:
        janus = self.janus
        self.handle = await janus.attach(PLUGIN)
        await janus.message(self.handle, {"request": "setup"})
        offer = await janus.event(self.handle, lambda e: "jsep" in e, self.timeout)
        # No ICE servers, as the Android agent: the server learns our address from our connectivity checks.
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("datachannel", self._watch)
        pc.on("connectionstatechange", self._state)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["jsep"]["sdp"], type=offer["jsep"]["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        await janus.message(self.handle, {"request": "ack"}, {"type": "answer", "sdp": pc.localDescription.sdp})
        # `result: ok` and `webrtcup` may come in either order.
        seen: set[str] = set()
        while seen != {"ok", "webrtcup"}:
            event = await janus.event(self.handle, None, self.timeout)
            data = event.get("plugindata", {}).get("data", {})
            if event.get("janus") == "webrtcup":
                seen.add("webrtcup")
            elif data.get("result") == "ok":
                seen.add("ok")
            elif "error_code" in data:
                raise JanusReplyError(int(data["error_code"]), str(data.get("error")))
        self.channel = pc.createDataChannel("Trick")
        self._watch(self.channel)
        if self.channel.readyState != "open":
            opened = asyncio.Event()
            self.channel.once("open", opened.set)
            async with asyncio.timeout(self.timeout):
                await opened.wait()
        reply = await self.request({"textroom": "list"})
        if reply.get("textroom") != "success":
            raise JanusReplyError(int(reply.get("error_code", 0)), f"list failed: {reply.get('error')}")

    async def request(self, body: JSON) -> JSON:
        """Send on `Trick` and wait for the `success`/`error` with the same transaction."""
        txn = transaction()
        future: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        self._pending[txn] = future
        try:
            self.send({**body, "transaction": txn})
            async with asyncio.timeout(self.timeout):
                return await future
        finally:
            self._pending.pop(txn, None)

    async def checked(self, body: JSON) -> JSON:
        reply = await self.request(body)
        if reply.get("textroom") == "error":
            raise JanusReplyError(int(reply.get("error_code", 0)), str(reply.get("error", "textroom error")))
        return reply

    def send(self, body: JSON) -> None:
        if self.channel is None or self.channel.readyState != "open":
            raise ConnectionError("the control channel is not open")
        self.channel.send(json.dumps(body))

    def message(self, room: str, text: str) -> None:
        """A room message with `ack: false`, as the agent sends `pong` and the resolution: no reply expected."""
        self.send({"textroom": "message", "room": room, "text": text, "ack": False, "transaction": transaction()})

    async def destroy_room(self, room: str) -> None:
        """Over HTTP on the handle, as the Android agent does (its data-channel variant is disabled)."""
        if self.handle is not None:
            await self.janus.message(self.handle, {"request": "destroy", "room": room})

    async def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        self.channel = None

    # -- incoming ---------------------------------------------------------------------------------------------
    def _watch(self, channel: RTCDataChannel) -> None:
        channel.on("message", self._received)

    def _state(self) -> None:
        if self.pc is not None and self.pc.connectionState in ("failed", "closed"):
            self.failed.set()

    def _received(self, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            log.warning("ignoring a control message that is not JSON")
            return
        if not isinstance(msg, dict):
            return
        txn = msg.get("transaction")
        if msg.get("textroom") in ("success", "error") and isinstance(txn, str) and txn in self._pending:
            future = self._pending[txn]
            if not future.done():
                future.set_result(msg)
            return
        try:
            self.on_event(msg)
        except Exception:
            log.exception("control event handler failed")
