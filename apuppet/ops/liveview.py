"""What the operator console shows live, sans-I/O: devices and their viewers, made from the gateway's snapshot.

aPuppet agents name their textroom room and their mountpoint with the same id (the Session ID the phone shows),
so a device is a room holding a `device:` participant, joined with the mountpoint of the same id; a mountpoint
without a room is a device too (a Janus client streaming only). A viewer is a Janus session taking part in a
device's room or watching its video, whichever it does, named by its session tag (never the id: ids are bearer
tokens) and shown with its address, since when, its Janus transport and, while watching, the video's state.
Nothing here carries a pin or secret: the plugins' snapshots leave them out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ..api.gateway import Gateway
from ..api.idtag import tag
from ..api.session import Session

JSON = dict[str, Any]

TEXTROOM = "janus.plugin.textroom"
STREAMING = "janus.plugin.streaming"


def snapshot(
    gateway: Gateway, wall_clock: Callable[[], float] = time.time, transports: Mapping[Session, str] | None = None
) -> JSON:
    """The gateway's sessions and each plugin's `snapshot()`: tags, never ids; UNIX times. `transports`: the
    transport of sessions whose client is elsewhere (a cluster node's guests), which their own does not tell."""
    offset = wall_clock() - gateway.clock()
    transports = transports or {}
    sessions = [
        {
            "session": tag(s.id),
            "address": s.remote,
            "since": s.created + offset,
            "viewer": not s.trusted,
            "transport": transports.get(s) or ("websocket" if s.connection is not None else "http"),
            "ending": s.ending[1] if s.ending is not None else None,
        }
        for s in gateway.sessions.values()
    ]
    return {"sessions": sessions, "plugins": {name: p.snapshot() for name, p in gateway.plugins.items()}}


def devices(snapshot: JSON) -> list[JSON]:
    """The devices of a gateway-wide `snapshot`, oldest first."""
    sessions = {s["session"]: s for s in snapshot.get("sessions", [])}
    plugins = snapshot.get("plugins", {})
    rooms = plugins.get(TEXTROOM, {}).get("rooms", [])
    mountpoints = {m["id"]: m for m in plugins.get(STREAMING, {}).get("mountpoints", [])}
    found: list[JSON] = []
    for room in rooms:
        device = next((p for p in room["participants"] if p["device"]), None)
        mountpoint = mountpoints.pop(room["room"], None)
        found.append(_device(room["room"], room, device, mountpoint, sessions))
    for key, mountpoint in mountpoints.items():
        found.append(_device(key, None, None, mountpoint, sessions))
    found.sort(key=lambda d: d["since"])
    return found


def _device(key: str, room: JSON | None, device: JSON | None, mountpoint: JSON | None, sessions: JSON) -> JSON:
    owner = (room or mountpoint or {}).get("owner", {}).get("session")
    if device is not None:
        name = device.get("display") or device["username"].split(":", 1)[1] or key
    else:
        name = (mountpoint or room or {}).get("description") or key
    since = min(x["since"] for x in (room, mountpoint, device) if x is not None)
    viewers: dict[str, JSON] = {}
    for p in room["participants"] if room is not None else []:
        if p["device"]:
            continue
        viewer = _viewer(viewers, p.get("session") or f"user:{p['username']}", sessions)
        viewer.update(
            name=p.get("display") or p["username"],
            username=p["username"],
            address=p["address"] or viewer["address"],
            since=min(viewer["since"] or p["since"], p["since"]),
            in_room=True,
            last_input=p.get("last_input"),
        )
    for w in mountpoint["viewers"] if mountpoint is not None else []:
        viewer = _viewer(viewers, w["session"], sessions)
        viewer.update(
            address=viewer["address"] or w["address"],
            since=min(viewer["since"] or w["since"], w["since"]),
            video=w["state"],
        )
    owner_session = sessions.get(owner or "", {})
    return {
        "id": key,
        "name": name,
        "since": since,
        "session": owner,
        "address": (device or {}).get("address") or owner_session.get("address", ""),
        "transport": owner_session.get("transport", ""),
        "room": None if room is None else {"participants": len(room["participants"]), "protected": room["protected"]},
        "video": None
        if mountpoint is None
        else {"viewers": len(mountpoint["viewers"]), "age_ms": mountpoint.get("video_age_ms")},
        "ending": owner_session.get("ending"),
        "viewers": sorted(viewers.values(), key=lambda v: v["since"] or 0),
    }


def _viewer(viewers: dict[str, JSON], session_tag: str, sessions: JSON) -> JSON:
    if session_tag not in viewers:
        session = sessions.get(session_tag, {})
        viewers[session_tag] = {
            "session": session_tag if session else None,
            "name": "",
            "username": "",
            "address": session.get("address", ""),
            "since": session.get("since"),
            "transport": session.get("transport", ""),
            "in_room": False,
            "video": None,
            "last_input": None,
            "ending": session.get("ending"),
        }
    return viewers[session_tag]
