"""`liveview.devices`: a gateway snapshot (sessions, rooms, mountpoints) becomes devices with their viewers."""

from __future__ import annotations

from typing import Any

from apuppet.ops.liveview import STREAMING, TEXTROOM, devices

T0 = 1_800_000_000.0


def snapshot(**extra: Any) -> dict[str, Any]:
    sessions = [
        {
            "session": "agent001",
            "address": "10.0.0.5",
            "since": T0,
            "viewer": False,
            "transport": "http",
            "ending": None,
        },
        {
            "session": "viewer01",
            "address": "192.0.2.7",
            "since": T0 + 10,
            "viewer": True,
            "transport": "websocket",
            "ending": None,
        },
        {
            "session": "viewer02",
            "address": "192.0.2.8",
            "since": T0 + 20,
            "viewer": True,
            "transport": "http",
            "ending": "operator",
        },
    ]
    room = {
        "room": "4815162342",
        "description": "Room 4815162342",
        "since": T0 + 1,
        "protected": True,
        "owner": {"session": "agent001", "last_input": None},
        "participants": [
            {
                "username": "device:Pixel",
                "display": "Pixel 7",
                "address": "10.0.0.5",
                "since": T0 + 2,
                "device": True,
                "session": "agent001",
                "last_input": None,
            },
            {
                "username": "admin:ab12",
                "display": "Support",
                "address": "192.0.2.7",
                "since": T0 + 11,
                "device": False,
                "session": "viewer01",
                "last_input": T0 + 30,
            },
        ],
    }
    mountpoint = {
        "id": "4815162342",
        "name": "4815162342",
        "description": "4815162342",
        "since": T0 + 1.5,
        "protected": True,
        "owner": {"session": "agent001"},
        "viewers": [
            {"session": "viewer01", "address": "192.0.2.7", "since": T0 + 12, "state": "playing"},
            {"session": "viewer02", "address": "192.0.2.8", "since": T0 + 21, "state": "starting"},
        ],
        "video_age_ms": 40,
    }
    lone = {
        "id": "77",
        "name": "77",
        "description": "Janus client",
        "since": T0 + 50,
        "protected": False,
        "owner": {},
        "viewers": [],
    }
    plugins = {TEXTROOM: {"rooms": [room]}, STREAMING: {"mountpoints": [mountpoint, lone]}}
    return {"sessions": sessions, "plugins": plugins, **extra}


def test_a_room_and_its_mountpoint_are_one_device_with_its_viewers() -> None:
    phone, lone = devices(snapshot())
    assert (phone["id"], phone["name"], phone["since"], phone["session"]) == (
        "4815162342",
        "Pixel 7",
        T0 + 1,
        "agent001",
    )
    assert (phone["address"], phone["transport"]) == ("10.0.0.5", "http")
    assert phone["room"] == {"participants": 2, "protected": True}
    assert phone["video"] == {"viewers": 2, "age_ms": 40}
    first, second = phone["viewers"]
    # In the room and watching: one viewer, its earliest "since", its session's transport.
    assert first == {
        "session": "viewer01",
        "name": "Support",
        "username": "admin:ab12",
        "address": "192.0.2.7",
        "since": T0 + 10,
        "transport": "websocket",
        "in_room": True,
        "video": "playing",
        "last_input": T0 + 30,
        "ending": None,
    }
    # Watching only, and being ended.
    assert (second["session"], second["in_room"], second["video"], second["ending"]) == (
        "viewer02",
        False,
        "starting",
        "operator",
    )
    # A mountpoint without a room is a device too, named by its description.
    assert (lone["id"], lone["name"], lone["room"], lone["session"], lone["viewers"]) == (
        "77",
        "Janus client",
        None,
        None,
        [],
    )


def test_nothing_running_is_no_device() -> None:
    assert devices({"sessions": [], "plugins": {}}) == []
