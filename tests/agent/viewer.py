"""A viewer for end-to-end tests: what the web-admin does, over real HTTP, with aiortc peers.

It joins the device's room as `admin:<n>` through the textroom plugin, watches the mountpoint through the
streaming plugin, decodes the video with aiortc (PyAV) and sends commands as room messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from apuppet.agent.janus import JanusClient
from apuppet.agent.textroom import TextRoomPeer

Frame = np.ndarray


class Viewer:
    def __init__(self, server_url: str, secret: str, session: str, password: str, name: str = "admin:test") -> None:
        self.server_url = server_url
        self.secret = secret
        self.session = session
        self.password = password
        self.name = name
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.frame: Frame | None = None
        self.frames = 0
        self._http: aiohttp.ClientSession | None = None
        self.janus: JanusClient | None = None
        self.room: TextRoomPeer | None = None
        self.pc: RTCPeerConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.participants: list[dict[str, Any]] = []

    async def __aenter__(self) -> Viewer:
        try:
            return await self._enter()
        except BaseException:
            # A refused join (a wrong password) must not leave the HTTP session and the peer open.
            await self.__aexit__()
            raise

    async def _enter(self) -> Viewer:
        self._http = aiohttp.ClientSession()
        self.janus = JanusClient(self._http, self.server_url, self.secret)
        await self.janus.create()
        self.room = TextRoomPeer(self.janus, self._event)
        await self.room.connect()
        reply = await self.room.checked(
            {
                "textroom": "join",
                "room": self.session,
                "pin": self.password,
                "username": self.name,
                "display": self.name,
            }
        )
        self.participants = reply.get("participants", [])
        await self._watch()
        return self

    async def _watch(self) -> None:
        assert self.janus is not None
        handle = await self.janus.attach("janus.plugin.streaming")
        reply = await self.janus.message(handle, {"request": "watch", "id": self.session, "pin": self.password})
        offer = reply if "jsep" in reply else await self.janus.event(handle, lambda e: "jsep" in e)
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        offer["jsep"]["sdp"] = with_h264_fmtp(offer["jsep"]["sdp"])

        @pc.on("track")
        def on_track(track: Any) -> None:
            self._reader = asyncio.get_running_loop().create_task(self._read(track))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["jsep"]["sdp"], type=offer["jsep"]["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.janus.message(handle, {"request": "start"}, {"type": "answer", "sdp": self.pc.localDescription.sdp})

    async def _read(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            self.frame = frame.to_ndarray(format="rgb24")
            self.frames += 1

    def _event(self, msg: dict[str, Any]) -> None:
        if msg.get("textroom") == "message" and msg.get("from") != self.name:
            self.messages.put_nowait(msg)

    def send(self, text: str) -> None:
        assert self.room is not None
        self.room.message(self.session, text)

    async def message(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.messages.get()
                if predicate(msg["text"]):
                    return str(msg["text"])

    async def until(self, predicate: Callable[[Frame], bool], timeout: float = 10.0) -> Frame:
        """The first decoded frame (from now on) for which `predicate` holds."""
        async with asyncio.timeout(timeout):
            seen = self.frames
            while True:
                if self.frame is not None and self.frames > seen and predicate(self.frame):
                    return self.frame
                await asyncio.sleep(0.02)

    async def leave(self) -> None:
        if self.room is not None:
            with contextlib.suppress(Exception):
                await self.room.checked({"textroom": "leave", "room": self.session})

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self.room is not None:
            await self.room.close()
        if self.janus is not None:
            await self.janus.close()
        if self._http is not None:
            await self._http.close()


def with_h264_fmtp(sdp: str) -> str:
    """Janus' streaming offer has no `a=fmtp` for H.264 (spec §4.2); browsers cope, aiortc refuses to match
    the codec. Test-side only: give it the parameters the agent's stream really has."""
    match = re.search(r"a=rtpmap:(\d+) H264/90000\r\n", sdp)
    if match is None or f"a=fmtp:{match.group(1)} " in sdp:
        return sdp
    fmtp = f"a=fmtp:{match.group(1)} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
    return sdp[: match.end()] + fmtp + sdp[match.end() :]


def color(frame: Frame, x: int, y: int, size: int = 6) -> np.ndarray:
    """Mean colour of a small square: robust to H.264 noise."""
    return frame[y - size : y + size, x - size : x + size].reshape(-1, 3).mean(axis=0)


def near(frame: Frame, x: int, y: int, expected: tuple[int, int, int], tolerance: float = 40) -> bool:
    return bool(np.abs(color(frame, x, y) - np.asarray(expected)).max() <= tolerance)
