"""The agent's streaming-plugin side: one RTP mountpoint per session, created as the Android agent does (§4.1)."""

from __future__ import annotations

from typing import Any

from .janus import JanusClient, JanusReplyError

PLUGIN = "janus.plugin.streaming"


def create_request(session_id: str, password: str) -> dict[str, Any]:
    """The Android agent's `create` body, field for field (audio off, video PT 100, port chosen by the server)."""
    return {
        "request": "create",
        "type": "rtp",
        "description": session_id,
        "permanent": False,
        "is_private": False,
        "audio": False,
        "video": True,
        "data": False,
        "id": session_id,
        "name": session_id,
        "pin": password,
        "audioport": 0,
        "audiopt": 0,
        "videoport": 0,
        "videopt": 100,
        "videortpmap": "H264/90000",
        "videobufferkf": False,
    }


class Mountpoint:
    def __init__(self, janus: JanusClient) -> None:
        self.janus = janus
        self.handle: int | None = None
        self.id: str | None = None
        self.video_port = 0

    async def create(self, session_id: str, password: str) -> int:
        self.handle = await self.janus.attach(PLUGIN)
        reply = await self.janus.message(self.handle, create_request(session_id, password))
        stream = reply.get("plugindata", {}).get("data", {}).get("stream")
        if not isinstance(stream, dict) or not isinstance(stream.get("video_port"), int):
            raise JanusReplyError(0, "the server did not return stream.video_port")
        self.id = session_id
        self.video_port = stream["video_port"]
        return self.video_port

    async def destroy(self) -> None:
        if self.handle is not None and self.id is not None:
            await self.janus.message(self.handle, {"request": "destroy", "id": self.id})
            self.id = None
