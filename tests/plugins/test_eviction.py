"""The registries' side of the operator console, sans-I/O: `Rooms.evict` (a viewer kicked with the reason, the
device told `leave`; a device's rooms destroyed with the reason), heartbeats that are not input, and the
snapshots the console is built from, which never carry a pin or secret."""

from __future__ import annotations

import json

from apuppet.plugins.mountpoints import Mountpoints
from apuppet.plugins.rooms import Outcome, Rooms

AGENT, ADMIN, SECOND = "agent-handle", "admin-handle", "second-handle"
PIN, SECRET = "pin-4321-x", "room-secret-y"
T0 = 1_800_000_000.0


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


def dc(rooms: Rooms, peer: str, **body: object) -> Outcome:
    return rooms.request(peer, {"transaction": "t", **body}, remote=f"10.0.0.{len(peer)}")


def device_with_viewers(clock: Clock) -> Rooms:
    rooms = Rooms("admin", clock=clock)
    dc(rooms, AGENT, textroom="create", room="S1", pin=PIN, secret=SECRET)
    dc(rooms, AGENT, textroom="join", room="S1", username="device:Pixel", display="Pixel 7", pin=PIN)
    clock.now += 5
    dc(rooms, ADMIN, textroom="join", room="S1", username="admin:a", display="Support", pin=PIN)
    dc(rooms, SECOND, textroom="join", room="S1", username="admin:b", pin=PIN)
    rooms.take_reports()
    return rooms


def test_an_evicted_viewer_is_kicked_with_the_reason_the_others_see_it_leave() -> None:
    rooms = device_with_viewers(Clock())
    events = rooms.evict(ADMIN, "operator", "An operator ended this session.")
    assert (
        ADMIN,
        {
            "textroom": "kicked",
            "room": "S1",
            "username": "admin:a",
            "reason": "operator",
            "message": "An operator ended this session.",
        },
    ) in events
    # The device and the other viewer get Janus' `leave`, which the aPuppet agent acts on (it ignores `kicked`).
    assert (AGENT, {"textroom": "leave", "room": "S1", "username": "admin:a"}) in events
    assert (SECOND, {"textroom": "leave", "room": "S1", "username": "admin:a"}) in events
    assert len(events) == 3
    assert "admin:a" not in rooms.rooms["S1"].participants
    assert rooms.take_reports() == [("participant_left", {"room": "S1", "username": "admin:a", "reason": "operator"})]
    assert rooms.evict(ADMIN, "operator", "again") == []  # nothing left to evict


def test_an_evicted_device_takes_its_room_with_it_and_everyone_hears_why() -> None:
    rooms = device_with_viewers(Clock())
    events = rooms.evict(AGENT, "operator", "An operator closed the device's session.")
    destroyed = {
        "textroom": "destroyed",
        "room": "S1",
        "reason": "operator",
        "message": "An operator closed the device's session.",
    }
    assert {p for p, e in events if e == destroyed} == {AGENT, ADMIN, SECOND}
    # No `leave` of the device first: the page would take it for a phone that lost its network.
    assert not [e for _, e in events if e["textroom"] == "leave"]
    assert rooms.rooms == {}


def test_heartbeats_are_not_input() -> None:
    rooms = device_with_viewers(Clock())
    assert not dc(rooms, ADMIN, textroom="message", room="S1", text="ping,1700000000000", ack=False).input
    assert not dc(rooms, AGENT, textroom="message", room="S1", text="pong,1700000000000", ack=False).input
    assert dc(rooms, ADMIN, textroom="message", room="S1", text="tap,10,20,50", ack=False).input
    assert dc(rooms, ADMIN, textroom="message", room="S1", text="key,ping,", ack=False).input
    assert not dc(rooms, ADMIN, textroom="join", room="S1", username="x", pin=PIN).input


def test_room_snapshot_has_who_and_since_never_pins() -> None:
    clock = Clock()
    rooms = device_with_viewers(clock)
    snapshot = rooms.snapshot(lambda peer: {"session": f"tag-of-{peer}"})
    assert snapshot == [
        {
            "room": "S1",
            "description": "Room S1",
            "since": T0,
            "protected": True,
            "owner": {"session": "tag-of-agent-handle"},
            "participants": [
                {
                    "username": "device:Pixel",
                    "display": "Pixel 7",
                    "address": "10.0.0.12",
                    "since": T0,
                    "device": True,
                    "session": "tag-of-agent-handle",
                },
                {
                    "username": "admin:a",
                    "display": "Support",
                    "address": "10.0.0.12",
                    "since": T0 + 5,
                    "device": False,
                    "session": "tag-of-admin-handle",
                },
                {
                    "username": "admin:b",
                    "display": None,
                    "address": "10.0.0.13",
                    "since": T0 + 5,
                    "device": False,
                    "session": "tag-of-second-handle",
                },
            ],
        }
    ]
    assert PIN not in json.dumps(snapshot) and SECRET not in json.dumps(snapshot)


def test_mountpoint_snapshot_never_has_pin_secret_or_port() -> None:
    clock = Clock()
    mountpoints = Mountpoints("admin", clock=clock)
    body = {
        "type": "rtp",
        "video": True,
        "id": "S1",
        "name": "S1",
        "description": "Pixel",
        "pin": PIN,
        "secret": SECRET,
    }
    mountpoints.create(AGENT, body, "10.0.0.1", bind=lambda port: 10_123)
    snapshot = mountpoints.snapshot(lambda m: {"viewers": []})
    assert snapshot == [
        {"id": "S1", "name": "S1", "description": "Pixel", "since": T0, "protected": True, "viewers": []}
    ]
    assert (
        PIN not in json.dumps(snapshot) and SECRET not in json.dumps(snapshot) and "10123" not in json.dumps(snapshot)
    )
