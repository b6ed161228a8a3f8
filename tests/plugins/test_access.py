"""The access policy shared by rooms and mountpoints, on its own (the plugins' own tests cover it in context)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from apuppet.api.throttle import Throttle
from apuppet.netaddr import client_key
from apuppet.plugins.access import Access, is_weak, strength_bits
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
    # Blocked now, for that address only: wrong secrets, and the right one where it is weak ("admin", 5 letters)…
    assert "retry" in refused(lambda: access.check_authority(thing, "t1", "bob", {"secret": "guess"}, "6.6.6.6"))
    assert "retry" in refused(lambda: access.check_authority(thing, "t1", "bob", {"admin_key": "admin"}, "6.6.6.6"))
    # …but a correct strong secret ("thing-secret", 70 bits) goes through.
    access.check_authority(thing, "t1", "bob", {"secret": "thing-secret"}, "6.6.6.6")
    assert reports[0] == ("unauthorized", {"thing": "t1", "remote": "6.6.6.6", "request": "None"})


def test_weak_and_strong_secrets() -> None:
    assert is_weak("4321") and is_weak("12345678901") and is_weak("abcdefgh") and is_weak("Ab1!")
    assert not is_weak("Kp7qX2mz") and not is_weak("1234567890123") and not is_weak("correct horse")
    assert round(strength_bits("4321"), 1) == 13.3 and strength_bits("") == 0.0


def test_wrong_admin_keys_are_throttled_and_a_right_strong_one_goes_through() -> None:
    clock = Clock()
    access, reports = make(clock)
    access.admin_secret = "Adm1n-Secret-For-Tests"
    assert not access.is_admin({}, "6.6.6.6") and not access.is_admin({"admin_key": "guess"}, "6.6.6.6")
    assert not access.is_admin({"admin_key": "guess2"}, "6.6.6.6") and not access.is_admin({"secret": "g3"}, "6.6.6.6")
    assert "retry" in refused(lambda: access.is_admin({"admin_key": "guess4"}, "6.6.6.6"))
    assert "retry" in refused(lambda: access.is_admin({"secret": "guess4"}, "6.6.6.6"))
    assert access.is_admin({"admin_key": "Adm1n-Secret-For-Tests"}, "6.6.6.6")
    assert not access.is_admin({"admin_key": 1234}, "7.7.7.7")  # any type: counted, never an exception
    assert [name for name, _ in reports] == ["unauthorized"] * 4 and "guess" not in repr(reports)


def test_strangers_wrong_pins_never_lock_out_a_newcomer_with_the_right_one() -> None:
    clock = Clock()
    access, reports = make(clock)
    thing = Thing("alice")
    access.check_pin(Thing("alice", pin=""), "open", {}, "1.1.1.1")  # no pin, nothing to check
    for remote in ("1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4", "5.5.5.5", "6.6.6.6"):
        assert refused(lambda r=remote: access.check_pin(thing, "t1", {"pin": "0000"}, r)) == "Unauthorized (wrong pin)"
    # The resource is locked now, for those who have been guessing on it (even with the right pin)…
    assert "retry" in refused(lambda: access.check_pin(thing, "t1", {"pin": "4321"}, "1.1.1.1"))
    assert "retry" in refused(lambda: access.check_pin(thing, "t1", {"pin": "0001"}, "2.2.2.2"))
    # …not for an address that never guessed.
    access.check_pin(thing, "t1", {"pin": "4321"}, "9.9.9.9")
    clock.now += 2
    access.check_pin(thing, "t1", {"pin": "4321"}, "1.1.1.1")
    assert {name for name, _ in reports} == {"wrong_pin"} and all("pin" not in f for _, f in reports)


def test_a_blocked_address_gets_in_with_a_strong_pin_only() -> None:
    clock = Clock()
    access, _ = make(clock)
    weak, strong = Thing("alice"), Thing("alice", pin="Kp7qX2mz")
    for _ in range(3):
        refused(lambda: access.check_pin(weak, "w", {"pin": "0000"}, "6.6.6.6"))
    assert "retry" in refused(lambda: access.check_pin(weak, "w", {"pin": "4321"}, "6.6.6.6"))
    assert "retry" in refused(lambda: access.check_pin(strong, "s", {"pin": "guess"}, "6.6.6.6"))
    access.check_pin(strong, "s", {"pin": "Kp7qX2mz"}, "6.6.6.6")
    # A strong pin has no per-resource lock: guesses from many addresses lock out nobody.
    for i in range(10):
        refused(lambda i=i: access.check_pin(strong, "s", {"pin": "guess"}, f"10.0.0.{i}"))
    access.check_pin(strong, "s", {"pin": "Kp7qX2mz"}, "10.0.0.1")


def test_an_ipv6_prefix_guesses_as_one_address() -> None:
    """Rotating through the 2^64 addresses of one's own IPv6 prefix gains nothing."""
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1" and client_key("not-an-ip") == "not-an-ip"
    access, _ = make(Clock())
    thing = Thing("alice", pin="Kp7qX2mz")
    for i in range(3):
        refused(lambda i=i: access.check_pin(thing, "t1", {"pin": "guess"}, f"2001:db8:1:2::{i}"))
    assert "retry" in refused(lambda: access.check_pin(thing, "t1", {"pin": "guess"}, "2001:db8:1:2::ffff"))
    assert "wrong pin" in refused(lambda: access.check_pin(thing, "t1", {"pin": "guess"}, "2001:db8:1:3::1"))


def test_viewer_gate_and_guessing() -> None:
    clock = Clock()
    access, _ = make(clock)
    assert "needs the API secret" in refused(lambda: access.check_viewer("destroy"))
    access.check_viewer("reach")
    for _ in range(3):
        access.viewer_missed("8.8.8.8")
    assert "retry" in refused(lambda: access.viewer_missed("8.8.8.8"))
    assert "retry" in refused(lambda: access.check_pin(Thing("alice"), "t1", {"pin": "4321"}, "8.8.8.8"))


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
