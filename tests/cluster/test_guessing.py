"""The cluster's guessing limits, sans-I/O (`apuppet/cluster/guessing.py`): the shared throttle's memory of the
cluster's blocks, its queue of failures for Redis, the block messages; and the counting script on a real
redis-server, against the single node's `Throttle`."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from apuppet.api.throttle import Throttle
from apuppet.cluster.guessing import (
    BLOCKED,
    BLOCKED_SCRIPT,
    BLOCKS_PER_MESSAGE,
    FAIL_SCRIPT,
    MAX_CLIENT,
    REPORTED_PER_SECOND,
    SharedThrottle,
    blocked_key,
    blocks_messages,
    client_of,
    guess_key,
    parse_blocks,
)

from .conftest import RedisProcess

ADDRESS = "203.0.113.7"
OTHER = "2001:db8:1:2::/64"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shared(kind: str = "admin", **policy: object) -> tuple[SharedThrottle, Clock]:
    clock = Clock()
    return SharedThrottle(kind, clock=clock, **policy), clock  # type: ignore[arg-type]


def test_an_address_the_cluster_blocked_is_refused_here_though_it_never_failed_here() -> None:
    admin, clock = shared("admin")
    admin.learn(ADDRESS, 16.0)
    assert admin.blocked_for(ADDRESS) == 16.0
    assert admin.blocked_for(OTHER) == 0.0
    assert len(admin) == 0  # nothing counted here
    clock.now += 10
    assert admin.blocked_for(ADDRESS) == 6.0
    clock.now += 6
    assert admin.blocked_for(ADDRESS) == 0.0
    assert ADDRESS not in admin.blocks  # forgotten once over
    # The API secret's keys name the address last.
    api, _ = shared("api")
    api.learn(ADDRESS, 4.0)
    assert api.blocked_for(("apisecret", ADDRESS)) == 4.0
    assert api.blocked_for(("apisecret", OTHER)) == 0.0


def test_the_longer_of_the_node_s_own_delay_and_the_cluster_s_holds() -> None:
    admin, _ = shared("admin", free=5, base_delay=1.0)
    for _ in range(7):
        admin.failure(ADDRESS)
    assert admin.blocked_for(ADDRESS) == 2.0  # the node's own count, as on a single server
    admin.learn(ADDRESS, 0.5)
    assert admin.blocked_for(ADDRESS) == 2.0
    admin.learn(ADDRESS, 30.0)
    assert admin.blocked_for(ADDRESS) == 30.0
    admin.learn(ADDRESS, 5.0)  # a late message does not shorten a block
    assert admin.blocked_for(ADDRESS) == 30.0


def test_failures_are_queued_per_client_for_redis_and_wake_the_reporter() -> None:
    api, _ = shared("api", free=5)
    woken: list[None] = []
    api.on_failure = lambda: woken.append(None)
    for _ in range(3):
        api.failure(("apisecret", ADDRESS))
    api.failure(("apisecret", OTHER))
    assert len(woken) == 4
    assert api.take() == {ADDRESS: 3, OTHER: 1}
    assert api.take() == {}
    # A key that names no address counts on this node only: limited here, never sent to Redis.
    for key in (("apisecret", ""), ("apisecret", "x" * (MAX_CLIENT + 1)), 42):
        for _ in range(6):
            api.failure(key)
        assert api.blocked_for(key) == 1.0
    assert api.take() == {}
    assert len(woken) == 4


def test_the_queue_and_the_blocks_kept_are_bounded() -> None:
    admin, clock = shared("admin", max_keys=4)
    for i in range(10):
        admin.failure(f"198.51.100.{i}")
    assert admin.take() == {f"198.51.100.{i}": 1 for i in range(4)}
    for i in range(10):
        admin.learn(f"198.51.100.{i}", 10.0 + i)
    assert len(admin.blocks) <= 4
    assert "198.51.100.9" in admin.blocks  # the block that lasts longest is kept
    clock.now += 100
    admin.learn(ADDRESS, 1.0)  # the ended ones go first
    assert list(admin.blocks) == [ADDRESS]


def test_a_node_reports_a_bounded_number_of_distinct_clients_a_second() -> None:
    """Many addresses at once (IPv6) must not make a node create counters in Redis as fast as it answers: those
    over the share count on the node only (its own throttle still limits each)."""
    admin, clock = shared("admin", free=0, reported_per_second=3)
    for i in range(5):
        admin.failure(f"198.51.100.{i}")
    admin.failure("198.51.100.0")  # one counted in this second already is counted again
    assert admin.take() == {"198.51.100.0": 2, "198.51.100.1": 1, "198.51.100.2": 1}
    admin.failure("198.51.100.1")  # after the report too
    admin.failure("198.51.100.4")
    assert admin.take() == {"198.51.100.1": 1}
    assert admin.blocked_for("198.51.100.4") == 2.0  # the node's own count: its 2nd failure
    clock.now += 1.0  # the next second has its own share
    for i in range(3, 7):
        admin.failure(f"198.51.100.{i}")
    assert admin.take() == {f"198.51.100.{i}": 1 for i in range(3, 6)}
    assert SharedThrottle("api").reported_per_second == REPORTED_PER_SECOND


def test_learnt_blocks_last_no_longer_than_the_policy_s_longest_delay_and_nonsense_is_ignored() -> None:
    admin, _ = shared("admin", max_delay=300.0)
    admin.learn(ADDRESS, 1e9)
    assert admin.blocked_for(ADDRESS) == 300.0
    for client, seconds in ((OTHER, 0.0), (OTHER, -5.0), ("", 5.0), ("y" * (MAX_CLIENT + 1), 5.0)):
        admin.learn(client, seconds)
    assert list(admin.blocks) == [ADDRESS]


def test_a_shared_throttle_takes_the_node_s_policy_and_knows_only_two_kinds() -> None:
    local = Throttle(free=3, base_delay=0.5, max_delay=60.0, forget_after=120.0, max_keys=10)
    made = SharedThrottle.like("api", local)
    assert (made.free, made.base_delay, made.max_delay, made.forget_after, made.max_keys, made.clock) == (
        3,
        0.5,
        60.0,
        120.0,
        10,
        local.clock,
    )
    try:
        SharedThrottle("pin")
    except ValueError as exc:
        assert "pin" in str(exc)
    else:
        raise AssertionError("an unknown kind was accepted")


def test_keys_name_the_kind_and_the_client() -> None:
    assert guess_key("api", OTHER) == "apuppet:guess:api:2001:db8:1:2::/64"
    assert blocked_key("admin") == "apuppet:blocked:admin"
    assert client_of(("apisecret", ADDRESS)) == client_of(ADDRESS) == ADDRESS
    assert client_of(("apisecret", 7)) is None and client_of(()) is None


def test_block_messages_go_in_bounded_parts_and_only_sound_entries_are_read_back() -> None:
    many = [(f"10.0.{i // 256}.{i % 256}", 1000 + i) for i in range(BLOCKS_PER_MESSAGE + 3)]
    messages = blocks_messages({"api": many, "admin": [(ADDRESS, 16000)]})
    assert [m["type"] for m in messages] == [BLOCKED, BLOCKED]
    read = [block for m in messages for block in parse_blocks(m)]
    expected = [("api", c, ms / 1000) for c, ms in many] + [("admin", ADDRESS, 16.0)]
    assert sorted(read) == sorted(expected)
    assert blocks_messages({}) == []
    bad = {
        "blocks": {
            "pin": [[ADDRESS, 1000]],  # not a kind shared
            "api": [
                [ADDRESS],
                [ADDRESS, "1000"],
                [ADDRESS, True],
                [ADDRESS, float("inf")],
                [ADDRESS, -1],
                ["", 1000],
                [5, 1000],
                "x",
                [OTHER, 2500],
            ],
            "admin": "x",
        }
    }
    assert parse_blocks(bad) == [("api", OTHER, 2.5)]
    assert parse_blocks({"blocks": []}) == [] and parse_blocks({}) == []


async def test_the_script_counts_as_a_single_node_s_throttle_does(redis_server: RedisProcess) -> None:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        fail, blocked = client.register_script(FAIL_SCRIPT), client.register_script(BLOCKED_SCRIPT)
        local = Throttle(free=5, base_delay=1.0, max_delay=300.0, clock=lambda: 0.0)
        policy = [5, 1000, 300_000, 600_000, 100]

        async def count(client_key: str, n: int) -> int:
            keys = [guess_key("admin", client_key), blocked_key("admin")]
            return int(await fail(keys=keys, args=[n, *policy, client_key]))

        # One failure at a time, up to and past the longest delay.
        for _ in range(16):
            assert await count(ADDRESS, 1) == round(local.failure("x") * 1000)
        assert await count(ADDRESS, 1) == 300_000
        # Failures reported together count as many reported one by one.
        assert await count(OTHER, 9) == 8000  # over the free 5 by 4: 2^3 s
        assert await client.get(guess_key("admin", OTHER)) == "9"
        assert 599_000 < await client.pttl(guess_key("admin", OTHER)) <= 600_000  # forgotten 10 min after the last
        # Under the free failures: counted, nobody blocked.
        assert await count("198.51.100.1", 2) == 0
        found = await blocked(keys=[blocked_key("admin")], args=[100])
        left = dict(zip(found[::2], (int(ms) for ms in found[1::2]), strict=True))
        assert set(left) == {ADDRESS, OTHER}
        assert 299_000 < left[ADDRESS] <= 300_000 and 7_000 < left[OTHER] <= 8000
        assert await blocked(keys=[blocked_key("api")], args=[100]) == []
        assert 299_000 < await client.pttl(blocked_key("admin")) <= 300_000  # the longest delay, from the last block
    finally:
        await client.aclose()


async def test_the_blocked_set_goes_with_its_last_block(redis_server: RedisProcess) -> None:
    """Nobody needs to block again, or start, to clear it: Redis keeps nothing of a guessing burst once its delays
    and counters ran out."""
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        fail = client.register_script(FAIL_SCRIPT)
        policy = [0, 100, 200, 300, 100]  # no free failure, 100 ms doubling to 200 ms, forgotten after 300 ms
        for address, n in ((ADDRESS, 1), (OTHER, 3)):
            keys = [guess_key("api", address), blocked_key("api")]
            assert await fail(keys=keys, args=[n, *policy, address]) == (100 if n == 1 else 200)
        assert 0 < await client.pttl(blocked_key("api")) <= 200
        await asyncio.sleep(0.25)
        assert await client.exists(blocked_key("api")) == 0
        await asyncio.sleep(0.1)
        assert await client.keys("*") == []  # the counters too
    finally:
        await client.aclose()
