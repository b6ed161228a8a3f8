"""`Logins`: the admin secret buys a random token; wrong secrets are throttled; tokens expire and are revoked."""

from __future__ import annotations

import pytest

from apuppet.api.throttle import Throttle
from apuppet.ops.logins import MAX_LOGINS, LoginRefused, Logins, MemoryLoginStore

SECRET = "Zq8-admin-secret-for-tests"


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_right_secret_buys_a_token_that_is_not_the_secret() -> None:
    logins = Logins(SECRET)
    login = await logins.log_in(SECRET, "192.0.2.1")
    assert SECRET not in login.token and SECRET not in login.csrf
    assert len(login.token) >= 40 and login.token != login.csrf
    assert await logins.check(login.token) == login
    assert (await logins.log_in(SECRET, "192.0.2.1")).token != login.token  # one token per login
    assert await logins.check("not-a-token") is None and await logins.check(None) is None


async def test_no_secret_no_console() -> None:
    logins = Logins("")
    assert not logins.enabled
    with pytest.raises(LoginRefused) as refused:
        await logins.log_in("", "192.0.2.1")
    assert refused.value.status == 403


async def test_a_blocked_address_is_refused_without_comparing_until_its_delay_is_over() -> None:
    clock = Clock()
    logins = Logins(SECRET, throttle=Throttle(clock=clock), clock=clock)
    statuses = []
    for _ in range(7):
        with pytest.raises(LoginRefused) as refused:
            await logins.log_in("guess", "192.0.2.1")
        statuses.append(refused.value.status)
    assert statuses == [401] * 6 + [429]  # the sixth wrong one blocks the address for a second
    # While blocked, the right secret gets the same 429 as a wrong one: a 429 tells a guesser nothing.
    with pytest.raises(LoginRefused) as blocked:
        await logins.log_in(SECRET, "192.0.2.1")
    assert blocked.value.status == 429 and "retry in 1 s" in blocked.value.reason
    # Throttled per address: the operator elsewhere is not locked out by a stranger's guesses.
    with pytest.raises(LoginRefused) as other:
        await logins.log_in("guess", "198.51.100.1")
    assert other.value.status == 401
    assert (await logins.log_in(SECRET, "198.51.100.2")).token
    # Once the delay is over, the right secret passes from that address too.
    clock.now += 1.01
    assert (await logins.log_in(SECRET, "192.0.2.1")).token
    # A refused attempt while blocked did not count (the delay does not grow from being asked).
    with pytest.raises(LoginRefused) as again:
        await logins.log_in("guess", "192.0.2.1")
    assert again.value.status == 401
    clock.now += 2.01  # the seventh wrong one: a delay of 2 s
    with pytest.raises(LoginRefused) as later:
        await logins.log_in("guess", "192.0.2.1")
    assert later.value.status == 401


async def test_the_throttle_counts_the_client_key_given() -> None:
    logins = Logins(SECRET)
    for n in range(6):
        with pytest.raises(LoginRefused):
            await logins.log_in("guess", f"2001:db8::{n}", client="2001:db8::/64")
    with pytest.raises(LoginRefused) as refused:
        await logins.log_in("guess", "2001:db8::99", client="2001:db8::/64")
    assert refused.value.status == 429


async def test_tokens_expire_when_unused_and_after_their_lifetime() -> None:
    clock = Clock()
    logins = Logins(SECRET, clock=clock, idle_timeout=60, lifetime=300)
    login = await logins.log_in(SECRET, "192.0.2.1")
    clock.now += 59
    assert await logins.check(login.token) == login  # use keeps it alive
    clock.now += 59
    assert await logins.valid(login)
    clock.now += 61
    assert await logins.check(login.token) is None and not await logins.valid(login)
    kept = await logins.log_in(SECRET, "192.0.2.1")
    for _ in range(6):
        clock.now += 50
        assert await logins.check(kept.token) == kept
    clock.now += 1
    assert await logins.check(kept.token) is None  # past 300 s after it was made, however used


async def test_logout_revokes_and_csrf_is_compared() -> None:
    store = MemoryLoginStore()
    logins = Logins(SECRET, store=store)
    login = await logins.log_in(SECRET, "192.0.2.1")
    assert Logins.csrf_ok(login, login.csrf)
    assert not Logins.csrf_ok(login, None) and not Logins.csrf_ok(login, login.token)
    assert not Logins.csrf_ok(login, "\udcff")  # not UTF-8: unequal, not an exception
    await logins.log_out(login.token)
    assert await logins.check(login.token) is None and len(store) == 0
    await logins.log_out(login.token)  # twice is harmless


async def test_the_store_holds_a_hash_of_the_token_and_at_most_max_logins() -> None:
    store = MemoryLoginStore()
    logins = Logins(SECRET, store=store)
    first = await logins.log_in(SECRET, "192.0.2.1")
    held = repr(store._logins)
    assert first.token not in held and logins.store_key(first.token) in held and first.csrf in held
    for _ in range(MAX_LOGINS):
        await logins.log_in(SECRET, "192.0.2.1")
    assert len(store) == MAX_LOGINS
    assert await logins.check(first.token) is None  # the oldest went


async def test_a_record_that_is_not_a_login_is_no_login() -> None:
    store = MemoryLoginStore()
    logins = Logins(SECRET, store=store)
    await store.add(logins.store_key("forged"), {"csrf": "x"}, 60)
    assert await logins.check("forged") is None and len(store) == 0


async def test_a_new_admin_secret_leaves_the_logins_of_the_old_one_unknown() -> None:
    store = MemoryLoginStore()
    login = await Logins(SECRET, store=store).log_in(SECRET, "192.0.2.1")
    assert await Logins("another-" + SECRET, store=store).check(login.token) is None
    assert await Logins(SECRET, store=store).check(login.token) == login
