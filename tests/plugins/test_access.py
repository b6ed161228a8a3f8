"""The access policy shared by rooms and mountpoints, on its own (the plugins' own tests cover it in context)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from apuppet.api.throttle import Throttle
from apuppet.plugins.access import Access
from apuppet.plugins.fields import RequestError


@dataclass
class Thing:
    owner: str
    pin: str = "4321"
    secret: str = "thing-secret"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, gone: set[str] | None = None) -> tuple[Access, list]:
    reports: list = []
    access = Access(
        "demo",
        unauthorized=499,
        admin_secret="admin",
        report=lambda name, fields: reports.append((name, fields)),
        field="thing",
        noun="thing",
        viewer_requests=frozenset({"reach"}),
        guessing_request="reach",
        by_address=Throttle(free=2, clock=clock),
        by_resource=Throttle(free=4, clock=clock),
        owner_gone=None if gone is None else gone.__contains__,
    )
    return access, reports


def refused(call) -> str:
    with pytest.raises(RequestError) as info:
        call()
    assert info.value.code == 499
    return info.value.reason


def test_who_may_change_a_resource() -> None:
    clock = Clock()
    access, reports = make(clock)
    thing = Thing("alice")
    access.check_authority(thing, "t1", "alice", {}, "10.0.0.1")
    access.check_authority(thing, "t1", "bob", {"secret": "thing-secret"}, "10.0.0.1")
    access.check_authority(thing, "t1", "bob", {"admin_key": "admin"}, "10.0.0.1")
    for _ in range(3):
        assert "creator" in refused(lambda: access.check_authority(thing, "t1", "bob", {"secret": "x"}, "6.6.6.6"))
    # Blocked now, even with the right secret, for that address only.
    assert "retry" in refused(lambda: access.check_authority(thing, "t1", "bob", {"secret": "thing-secret"}, "6.6.6.6"))
    access.check_authority(thing, "t1", "bob", {"secret": "thing-secret"}, "7.7.7.7")
    assert reports[0] == ("unauthorized", {"thing": "t1", "remote": "6.6.6.6", "request": "None"})


def test_pins_are_throttled_per_address_and_per_resource() -> None:
    clock = Clock()
    access, reports = make(clock)
    thing = Thing("alice")
    access.check_pin(Thing("alice", pin=""), "open", {}, "1.1.1.1")  # no pin, nothing to check
    for remote in ("1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4", "5.5.5.5"):
        assert refused(lambda r=remote: access.check_pin(thing, "t1", {"pin": "0000"}, r)) == "Unauthorized (wrong pin)"
    # Five failures from five addresses: the resource is blocked for everybody for a moment...
    assert "retry" in refused(lambda: access.check_pin(thing, "t1", {"pin": "4321"}, "9.9.9.9"))
    clock.now += 2
    access.check_pin(thing, "t1", {"pin": "4321"}, "9.9.9.9")
    assert {name for name, _ in reports} == {"wrong_pin"} and all("pin" not in f for _, f in reports)


def test_viewer_gate_and_guessing() -> None:
    clock = Clock()
    access, _ = make(clock)
    assert "needs the API secret" in refused(lambda: access.check_viewer("destroy"))
    access.check_viewer("reach", "8.8.8.8")
    for _ in range(3):
        access.viewer_missed("8.8.8.8")
    assert "retry" in refused(lambda: access.check_viewer("reach", "8.8.8.8"))
    access.check_viewer("reach")  # the verb gate alone (asynchronous requests check guessing later)


def test_reclaim_needs_a_gone_owner_and_the_pin() -> None:
    gone: set[str] = set()
    access, _ = make(Clock(), gone)
    thing = Thing("alice")
    assert not access.reclaimable(thing, "bob", {"pin": "4321"})
    gone.add("alice")
    assert access.reclaimable(thing, "bob", {"pin": "4321"})
    assert not access.reclaimable(thing, "bob", {"pin": "0000"})
    assert not access.reclaimable(Thing("alice", pin=""), "bob", {"pin": ""})
    assert not make(Clock())[0].reclaimable(thing, "bob", {"pin": "4321"})  # no liveness source: never
