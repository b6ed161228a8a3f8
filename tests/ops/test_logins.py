"""`Logins`: the admin secret buys a random token; wrong secrets are throttled; tokens expire and are revoked."""

from __future__ import annotations

import pytest

from apuppet.api.throttle import Throttle
from apuppet.ops.logins import LoginRefused, Logins

SECRET = "Zq8-admin-secret-for-tests"


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_right_secret_buys_a_token_that_is_not_the_secret() -> None:
    logins = Logins(SECRET)
    login = logins.log_in(SECRET, "192.0.2.1")
    assert SECRET not in login.token and SECRET not in login.csrf
    assert len(login.token) >= 40 and login.token != login.csrf
    assert logins.check(login.token) is login
    assert logins.log_in(SECRET, "192.0.2.1").token != login.token  # one token per login
    assert logins.check("not-a-token") is None and logins.check(None) is None


def test_no_secret_no_console() -> None:
    logins = Logins("")
    assert not logins.enabled
    with pytest.raises(LoginRefused) as refused:
        logins.log_in("", "192.0.2.1")
    assert refused.value.status == 403


def test_wrong_secrets_are_throttled_but_the_right_one_still_passes() -> None:
    clock = Clock()
    logins = Logins(SECRET, throttle=Throttle(clock=clock), clock=clock)
    statuses = []
    for _ in range(7):
        with pytest.raises(LoginRefused) as refused:
            logins.log_in("guess", "192.0.2.1")
        statuses.append(refused.value.status)
    assert statuses[:5] == [401] * 5 and 429 in statuses[5:]
    # Throttled per address: another address still gets a plain 401.
    with pytest.raises(LoginRefused) as other:
        logins.log_in("guess", "198.51.100.1")
    assert other.value.status == 401
    # The operator behind the guessing address is not locked out.
    assert logins.log_in(SECRET, "192.0.2.1").token
    # A refused guess while blocked does not count (the delay does not grow from being asked).
    clock.now += 3600
    with pytest.raises(LoginRefused) as later:
        logins.log_in("guess", "192.0.2.1")
    assert later.value.status == 401


def test_the_throttle_counts_the_client_key_given() -> None:
    logins = Logins(SECRET)
    for n in range(6):
        with pytest.raises(LoginRefused):
            logins.log_in("guess", f"2001:db8::{n}", client="2001:db8::/64")
    with pytest.raises(LoginRefused) as refused:
        logins.log_in("guess", "2001:db8::99", client="2001:db8::/64")
    assert refused.value.status == 429


def test_tokens_expire_when_unused_and_after_their_lifetime() -> None:
    clock = Clock()
    logins = Logins(SECRET, clock=clock, idle_timeout=60, lifetime=300)
    login = logins.log_in(SECRET, "192.0.2.1")
    clock.now += 59
    assert logins.check(login.token) is login  # use keeps it alive
    clock.now += 59
    assert logins.valid(login)
    clock.now += 61
    assert logins.check(login.token) is None and not logins.valid(login)
    kept = logins.log_in(SECRET, "192.0.2.1")
    for _ in range(6):
        clock.now += 50
        assert logins.check(kept.token) is kept
    clock.now += 1
    assert logins.check(kept.token) is None  # past 300 s after it was made, however used


def test_logout_revokes_and_csrf_is_compared() -> None:
    logins = Logins(SECRET)
    login = logins.log_in(SECRET, "192.0.2.1")
    assert Logins.csrf_ok(login, login.csrf)
    assert not Logins.csrf_ok(login, None) and not Logins.csrf_ok(login, login.token)
    assert not Logins.csrf_ok(login, "\udcff")  # not UTF-8: unequal, not an exception
    logins.log_out(login.token)
    assert logins.check(login.token) is None and len(logins) == 0
    logins.log_out(login.token)  # twice is harmless
