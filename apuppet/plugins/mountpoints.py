"""Streaming mountpoints, sans-I/O: request validation, the registry, and who may do what.

Requests, replies and error codes are Janus 0.10's streaming plugin ones (the aPuppet agent reads
`stream.video_port`, the web-admin branches on 455 and shows the text of 457). Where Janus trusts everybody,
this core does not: only the session that created a mountpoint (or a holder of its `secret`, or of the
server's admin secret) may destroy or edit it, `list` and `info` hide private and pin-protected mountpoints
from others, wrong pins are slowed down per address and per mountpoint, and a viewer session (created
without the API secret) may only watch.

Sockets and peer connections are not here: `create` asks the caller's `bind` callback for the ingest port, and
`watch` only checks that the viewer may watch.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ..api.throttle import Throttle
from .access import Access
from .fields import Fields, RequestError

JSON = dict[str, Any]
MountpointId = str | int
Owner = Hashable

MAX_NAME = 128
MAX_DESCRIPTION = 256
MAX_FMTP = 512
MAX_ID = 2**63 - 1
#: Bounds that keep one client from taking every port of the range.
MAX_MOUNTPOINTS = 10_000
MAX_MOUNTPOINTS_PER_OWNER = 8
#: What a viewer session (one created without the API secret) may ask: watching a device with its password.
VIEWER_REQUESTS = frozenset({"watch", "start", "pause", "stop"})
DEFAULT_VIDEO_PT = 100
DEFAULT_RTPMAP = "H264/90000"


class StreamingError(IntEnum):
    """Janus' streaming plugin error codes."""

    NO_MESSAGE = 450
    INVALID_JSON = 451
    INVALID_REQUEST = 452
    MISSING_ELEMENT = 453
    INVALID_ELEMENT = 454
    NO_SUCH_MOUNTPOINT = 455
    CANT_CREATE = 456
    UNAUTHORIZED = 457
    CANT_SWITCH = 458
    UNKNOWN_ERROR = 470


def error(code: int, reason: str) -> JSON:
    return {"streaming": "event", "error_code": int(code), "error": reason}


def mountpoint_key(value: MountpointId) -> str:
    """`"42"` and `42` name the same mountpoint: the agent sends strings, other Janus clients numbers."""
    return str(value)


@dataclass(slots=True, eq=False)
class Mountpoint:
    id: MountpointId
    owner: Owner
    name: str
    description: str
    pin: str
    secret: str
    is_private: bool
    video_port: int
    videopt: int
    videortpmap: str
    videofmtp: str
    videobufferkf: bool
    #: When it was created (UNIX seconds, the registry's clock).
    since: float = 0.0

    def protected(self) -> bool:
        return self.is_private or bool(self.pin)

    def created(self) -> JSON:
        """Janus 0.10's reply to `create` (spec §4.1)."""
        return {
            "streaming": "created",
            "created": self.name,
            "permanent": False,
            "stream": {
                "id": self.id,
                "type": "live",
                "description": self.description,
                "is_private": self.is_private,
                "video_port": self.video_port,
            },
        }


class Mountpoints:
    """Every mountpoint of the server."""

    def __init__(
        self,
        admin_secret: str = "",
        *,
        address_throttle: Throttle | None = None,
        mountpoint_throttle: Throttle | None = None,
        owner_gone: Callable[[Any], bool] | None = None,
        port_range: tuple[int, int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.mountpoints: dict[str, Mountpoint] = {}
        #: Where a requested `videoport` must lie (the firewall's UDP range); None: anywhere.
        self.port_range = port_range
        self.reports: list[tuple[str, JSON]] = []
        self.access = Access(
            "streaming",
            unauthorized=StreamingError.UNAUTHORIZED,
            admin_secret=admin_secret,
            report=lambda name, fields: self._report(name, **fields),
            field="id",
            noun="mountpoint",
            viewer_requests=VIEWER_REQUESTS,
            by_address=address_throttle,
            by_resource=mountpoint_throttle,
            owner_gone=owner_gone,
        )

    # -- requests (synchronous in Janus) ---------------------------------------------------------------------
    def create(self, owner: Owner, msg: JSON, remote: str, bind: Callable[[int], int]) -> Mountpoint:
        """Validate a `create`, take the ingest port (`bind(requested)` returns the bound port), register."""
        kind = msg.get("type")
        if kind is None:
            raise RequestError(StreamingError.MISSING_ELEMENT, "Missing mandatory element (type)")
        if kind != "rtp":
            raise RequestError(StreamingError.INVALID_ELEMENT, f"Unsupported type {str(kind)[:32]} (only rtp)")
        if _flag(msg, "permanent", False):
            raise RequestError(StreamingError.INVALID_ELEMENT, "Permanent mountpoints are not supported")
        if _flag(msg, "audio", False) or _flag(msg, "data", False):
            raise RequestError(StreamingError.INVALID_ELEMENT, "Only video mountpoints are supported")
        if not _flag(msg, "video", False):
            raise RequestError(StreamingError.INVALID_ELEMENT, "Can't add 'rtp' stream, no audio, video or data")
        mp_id: MountpointId
        if msg.get("id") is None:
            mp_id = secrets.randbelow(2**53 - 1) + 1
            while mountpoint_key(mp_id) in self.mountpoints:
                mp_id = secrets.randbelow(2**53 - 1) + 1
        else:
            mp_id = _mountpoint_id(msg)
        if mountpoint_key(mp_id) in self.mountpoints:
            raise RequestError(StreamingError.CANT_CREATE, "A stream with the provided ID already exists")
        if len(self.mountpoints) >= MAX_MOUNTPOINTS or len(self.owned_by(owner)) >= MAX_MOUNTPOINTS_PER_OWNER:
            raise RequestError(StreamingError.CANT_CREATE, "Too many mountpoints")
        videoport = _int(msg, "videoport", 0, 0, 65535)
        if videoport and self.port_range is not None and not self.port_range[0] <= videoport <= self.port_range[1]:
            low, high = self.port_range
            raise RequestError(
                StreamingError.INVALID_ELEMENT, f"Invalid element (videoport should be 0 or {low} to {high})"
            )
        videopt = _int(msg, "videopt", DEFAULT_VIDEO_PT, 0, 127)
        rtpmap = _text(msg, "videortpmap", MAX_NAME) or DEFAULT_RTPMAP
        if not rtpmap.upper().startswith("H264/"):
            raise RequestError(StreamingError.INVALID_ELEMENT, "Only H264 video is supported (videortpmap)")
        description = _text(msg, "description", MAX_DESCRIPTION)
        name = _text(msg, "name", MAX_NAME)
        mountpoint = Mountpoint(
            id=mp_id,
            owner=owner,
            name=name or str(mp_id),
            description=description or name or str(mp_id),
            pin=_text(msg, "pin", MAX_NAME) or "",
            secret=_text(msg, "secret", MAX_NAME) or "",
            is_private=_flag(msg, "is_private", False),
            video_port=0,
            videopt=videopt,
            videortpmap=rtpmap,
            videofmtp=_text(msg, "videofmtp", MAX_FMTP) or "",
            videobufferkf=_flag(msg, "videobufferkf", False),
            since=self.clock(),
        )
        try:
            mountpoint.video_port = bind(videoport)
        except OSError as exc:
            reason = f"Can't bind the video port: {exc.strerror or exc}"
            raise RequestError(StreamingError.CANT_CREATE, reason) from None
        self.mountpoints[mountpoint_key(mp_id)] = mountpoint
        self._report("mountpoint_created", id=mountpoint_key(mp_id), remote=remote, protected=mountpoint.protected())
        return mountpoint

    def reclaim(self, owner: Owner, msg: JSON, remote: str) -> Mountpoint | None:
        """Before a `create`: when the id is taken by a mountpoint whose creator is gone and the request carries its
        pin (an agent reconnecting after a network loss), remove the old one and return it for tear-down."""
        if msg.get("id") is None:
            return None
        existing = self.mountpoints.get(mountpoint_key(_mountpoint_id(msg)))
        if existing is None or not self.access.reclaimable(existing, owner, msg):
            return None
        self._report("mountpoint_reclaimed", id=mountpoint_key(existing.id), remote=remote)
        return self.remove(existing, "reclaimed")

    def destroy(self, owner: Owner, msg: JSON, remote: str) -> Mountpoint:
        mountpoint = self.get(msg)
        self.access.check_authority(mountpoint, mountpoint_key(mountpoint.id), owner, msg, remote)
        return self.remove(mountpoint, "destroyed")

    def edit(self, owner: Owner, msg: JSON, remote: str) -> Mountpoint:
        mountpoint = self.get(msg)
        self.access.check_authority(mountpoint, mountpoint_key(mountpoint.id), owner, msg, remote)
        description = _text(msg, "new_description", MAX_DESCRIPTION)
        pin = _text(msg, "new_pin", MAX_NAME)
        secret = _text(msg, "new_secret", MAX_NAME)
        is_private = msg.get("new_is_private")
        if is_private is not None and not isinstance(is_private, bool):
            raise RequestError(StreamingError.INVALID_ELEMENT, "Invalid element (new_is_private should be a boolean)")
        if description is not None:
            mountpoint.description = description
        if pin is not None:
            mountpoint.pin = pin
        if secret is not None:
            mountpoint.secret = secret
        if is_private is not None:
            mountpoint.is_private = is_private
        self._report("mountpoint_edited", id=mountpoint_key(mountpoint.id), remote=remote)
        return mountpoint

    def listing(self, owner: Owner, msg: JSON, extra: Callable[[Mountpoint], JSON], remote: str = "") -> list[JSON]:
        admin = self.access.is_admin(msg, remote)
        return [
            {"id": m.id, "type": "live", "description": m.description, "enabled": True, **extra(m)}
            for m in self.mountpoints.values()
            if admin or m.owner == owner or not m.protected()
        ]

    def visible(self, owner: Owner, msg: JSON, remote: str) -> Mountpoint:
        """`info`: others see a protected mountpoint only with its pin (a wrong one counts as a guess)."""
        mountpoint = self.get(msg)
        if self.access.privileged(mountpoint, owner, msg, remote):
            return mountpoint
        if mountpoint.is_private and not mountpoint.pin:
            raise RequestError(StreamingError.NO_SUCH_MOUNTPOINT, f"No such mountpoint/stream {mountpoint.id}")
        self.access.check_pin(mountpoint, mountpoint_key(mountpoint.id), msg, remote)
        return mountpoint

    def privileged(self, mountpoint: Mountpoint, owner: Owner, msg: JSON, remote: str) -> bool:
        """Whether `info` may show the ingest details (port, payload type) to this requester."""
        return self.access.privileged(mountpoint, owner, msg, remote)

    # -- watching ---------------------------------------------------------------------------------------------
    def watchable(self, msg: JSON, remote: str, trusted: bool = True) -> Mountpoint:
        """`watch`: the mountpoint and its pin. For a viewer session, watching one that does not exist counts as a
        wrong guess too, so that mountpoint ids cannot be enumerated quickly."""
        if not trusted:
            self.access.check_viewer("watch")
        try:
            mountpoint = self.get(msg)
        except RequestError:
            if not trusted:
                self.access.viewer_missed(remote)
            raise
        self.access.check_pin(mountpoint, mountpoint_key(mountpoint.id), msg, remote)
        return mountpoint

    # -- registry ----------------------------------------------------------------------------------------------
    def get(self, msg: JSON) -> Mountpoint:
        mp_id = _mountpoint_id(msg)
        mountpoint = self.mountpoints.get(mountpoint_key(mp_id))
        if mountpoint is None:
            raise RequestError(StreamingError.NO_SUCH_MOUNTPOINT, f"No such mountpoint/stream {mp_id}")
        return mountpoint

    def owned_by(self, owner: Owner) -> list[Mountpoint]:
        return [m for m in self.mountpoints.values() if m.owner == owner]

    def remove(self, mountpoint: Mountpoint, reason: str) -> Mountpoint:
        self.mountpoints.pop(mountpoint_key(mountpoint.id), None)
        self._report("mountpoint_destroyed", id=mountpoint_key(mountpoint.id), reason=reason)
        return mountpoint

    def take_reports(self) -> list[tuple[str, JSON]]:
        reports, self.reports = self.reports, []
        return reports

    def snapshot(self, extra: Callable[[Mountpoint], JSON]) -> list[JSON]:
        """Every mountpoint for the operator console, `extra(mountpoint)` adding what the caller knows (owner,
        viewers, video age). Never a pin, secret or the ingest port: only whether it is protected."""
        return [
            {
                "id": mountpoint_key(m.id),
                "name": m.name,
                "description": m.description,
                "since": m.since,
                "protected": m.protected(),
                **extra(m),
            }
            for m in self.mountpoints.values()
        ]

    # -- helpers -------------------------------------------------------------------------------------------------
    def _report(self, name: str, **fields: Any) -> None:
        self.reports.append((name, fields))


FIELDS = Fields(StreamingError.MISSING_ELEMENT, StreamingError.INVALID_ELEMENT)
_text = FIELDS.text
_flag = FIELDS.flag
_int = FIELDS.integer


def _mountpoint_id(msg: JSON) -> MountpointId:
    return FIELDS.identifier(msg, "id", MAX_ID, MAX_NAME)
