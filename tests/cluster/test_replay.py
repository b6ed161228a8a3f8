"""Single use of signed bus messages: the receiver's memory of ids (`ReplayGuard`, sans-I/O), the destination
channel under the signature, and, between real nodes on a real redis-server, a captured call published again, on its
own channel or another node's, or to a node restarted under the same name, is dropped and counted, not executed
again."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from apuppet.cluster.bus import MAX_AGE, START_SKEW, RedisBus, bus_key, sign, unseal
from apuppet.cluster.directory import channel
from apuppet.cluster.replay import ReplayGuard, Verdict
from apuppet.server import Server

from ..server.viewer import until
from .conftest import SECRET, RedisProcess, node_config

FRESH, STALE, REPLAYED, EARLY = Verdict.FRESH, Verdict.STALE, Verdict.REPLAYED, Verdict.EARLY


def test_an_id_is_admitted_once() -> None:
    guard = ReplayGuard(60.0)
    assert guard.admit("a", 1000.0, 1000.5) is FRESH
    assert guard.admit("a", 1000.0, 1001.0) is REPLAYED
    assert guard.admit("a", 1000.0, 1059.0) is REPLAYED  # the whole window long
    assert guard.admit("b", 1000.0, 1001.0) is FRESH
    assert len(guard) == 2


def test_ids_are_forgotten_when_the_window_refuses_their_messages_anyway() -> None:
    guard = ReplayGuard(60.0)
    for i in range(100):
        assert guard.admit(f"id-{i}", 1000.0 + i / 2, 1050.0) is FRESH
    assert len(guard) == 100
    guard.admit("later", 1100.0, 1100.0)  # ids stamped before 1040 are gone
    assert len(guard) == 21
    assert guard.admit("id-5", 1002.5, 1100.0) is STALE  # and their messages are refused as too old
    assert guard.admit("id-90", 1045.0, 1100.0) is REPLAYED
    assert guard.forgotten == 0 and guard.floor == -math.inf


def test_nothing_stamped_before_the_guard_s_start_is_admitted() -> None:
    """A process' memory of ids starts empty: what came before it is refused by its stamp."""
    guard = ReplayGuard(60.0, since=999.0)
    assert guard.admit("before", 998.9, 1000.0) is EARLY
    assert guard.admit("since", 999.0, 1000.0) is FRESH
    assert len(guard) == 1
    assert guard.admit("too-old", 930.0, 1000.0) is STALE  # the window first, as without a start


def test_stamps_outside_the_window_either_way_are_stale() -> None:
    guard = ReplayGuard(60.0)
    for stamp in (939.0, 1061.0, math.nan, math.inf, -math.inf):
        assert guard.admit("x", stamp, 1000.0) is STALE
    assert len(guard) == 0
    assert guard.admit("x", 940.0, 1000.0) is FRESH  # a clock a minute behind is still heard
    assert guard.admit("y", 1060.0, 1000.0) is FRESH  # and one ahead


def test_at_the_cap_the_oldest_id_goes_and_the_window_shortens_with_it() -> None:
    guard = ReplayGuard(60.0, cap=3)
    for i, stamp in enumerate((1000.0, 1002.0, 1001.0)):  # stamps from several senders arrive out of order
        assert guard.admit(f"id-{i}", stamp, 1003.0) is FRESH
    assert guard.admit("id-3", 1003.0, 1003.0) is FRESH  # no refusal of fresh messages: the oldest goes
    assert len(guard) == 3 and guard.forgotten == 1 and guard.floor == 1000.0
    # The forgotten id cannot come back: its stamp is at or below the floor.
    assert guard.admit("id-0", 1000.0, 1004.0) is STALE
    assert guard.admit("new", 1000.0, 1004.0) is STALE  # nor anything as old, however new its id
    # A new message older than all remembered is the one refused, and nothing is forgotten for it.
    assert guard.admit("older", 1000.5, 1004.0) is STALE
    assert len(guard) == 3 and guard.forgotten == 1 and guard.floor == 1000.5
    assert {guard.admit(i, s, 1004.0) for i, s in (("id-1", 1002.0), ("id-2", 1001.0), ("id-3", 1003.0))} == {REPLAYED}


def test_a_forgotten_id_stays_refused_when_the_clock_steps_back() -> None:
    """Evicting the oldest stamp first already refuses a forgotten id while the memory is full, and the window
    refuses it once the memory has room again; the floor is what still refuses it after this host's wall clock
    stepped back (NTP) and brought its stamp into the window again."""
    guard = ReplayGuard(60.0, cap=3)
    for nonce, stamp in (("a", 1000.0), ("b", 1001.0), ("c", 1040.0)):
        assert guard.admit(nonce, stamp, 1040.0) is FRESH
    assert guard.admit("d", 1050.0, 1050.0) is FRESH  # "a" forgotten
    assert guard.admit("c", 1040.0, 1061.5) is REPLAYED  # and "b" expired: room again
    assert len(guard) == 2
    assert guard.admit("a", 1000.0, 1030.0) is STALE  # the clock back by 31.5 s


def test_a_flood_of_valid_ids_stays_bounded_and_no_id_is_ever_admitted_twice() -> None:
    guard = ReplayGuard(MAX_AGE, cap=500)
    now, stamps = 5000.0, []
    for i in range(20_000):  # 2 000 messages a second for 10 s: 40 times the cap within the window
        now += 0.0005
        stamps.append(round(now, 3))
        assert guard.admit(f"m{i}", stamps[-1], now) is FRESH
        assert len(guard) <= 500
    # Each one, published again now, is refused: the recent as seen, the forgotten as too old.
    verdicts = [guard.admit(f"m{i}", stamps[i], now) for i in range(0, 20_000, 7)]
    assert FRESH not in verdicts
    assert verdicts[-1] is REPLAYED and verdicts[0] is STALE
    assert now - guard.floor < 0.3  # the window left: cap / rate = 0.25 s
    with pytest.raises(ValueError):
        ReplayGuard(0.0)
    with pytest.raises(ValueError):
        ReplayGuard(60.0, cap=0)


def test_each_signed_message_has_its_own_id_under_the_signature() -> None:
    key, to = bus_key("secret-1"), channel("node-b")
    first, second = sign(key, {"type": "end", "sid": 1}, to), sign(key, {"type": "end", "sid": 1}, to)
    opened, again = unseal(key, first), unseal(key, second)
    assert opened is not None and again is not None
    assert opened.message == again.message == {"type": "end", "sid": 1}
    assert opened.nonce != again.nonce and len(opened.nonce) >= 16
    # A replay cannot pass for new by taking another id: the id is signed.
    mac, stamp, nonce, payload = first.split(" ", 3)
    assert unseal(key, f"{mac} {stamp} {again.nonce} {payload}") is None
    assert unseal(bus_key("secret-2"), first) is None


def test_a_message_is_sealed_for_one_channel() -> None:
    """The channel is under the signature, compared whole by the receiver (`RedisBus._deliver`)."""
    key, to, other = bus_key("secret-1"), channel("node-b"), channel("node-c")
    wire = sign(key, {"type": "contest", "kind": "room", "key": "1234"}, to)
    opened = unseal(key, wire)
    assert opened is not None and opened.target == to and opened.target not in (other, channel("node-b "))
    assert opened.message == {"type": "contest", "kind": "room", "key": "1234"}
    # Nor can the address be changed: it is signed.
    assert unseal(key, wire.replace(to, other)) is None
    # Any character may be in a node's name: the channel is a JSON string, not a field between spaces.
    odd = channel('a "b" [c], d')
    opened = unseal(key, sign(key, {"type": "event"}, odd))
    assert opened is not None and opened.target == odd and opened.message == {"type": "event"}


def counter(server: Server) -> list[dict[str, Any]]:
    """The calls of service `test.count` on `server`, which answers with their number."""
    assert server.cluster is not None
    calls: list[dict[str, Any]] = []

    async def count(call: dict[str, Any]) -> dict[str, Any]:
        calls.append(call)
        return {"n": len(calls)}

    server.cluster.router.services["test.count"] = count
    return calls


async def test_a_captured_call_published_again_is_dropped_and_counted(
    nodes: list[Server], redis_server: RedisProcess, rtp_slices: list[tuple[int, int]]
) -> None:
    a, b = nodes
    c = Server(node_config(redis_server.url, rtp_slices[2], "node-c"))
    await c.start()
    assert a.cluster is not None and b.cluster is not None and c.cluster is not None
    calls, on_a, on_c = counter(b), counter(a), counter(c)
    spy = aioredis.from_url(redis_server.url, decode_responses=True)
    pubsub = spy.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(channel("node-b"))  # whoever can read Redis sees node B's messages
        assert await a.cluster.router.ask("node-b", "test.count", {}) == {"n": 1}
        captured = None
        async with asyncio.timeout(10):
            while captured is None:
                message = await pubsub.get_message(timeout=1.0)
                opened = unseal(bus_key(SECRET), message["data"]) if message is not None else None
                if opened is not None and opened.message.get("op") == "test.count":
                    captured = message["data"]
        rejected = b.cluster.router.metrics()["cluster_messages_rejected_total"]
        assert await spy.publish(channel("node-b"), captured) == 2  # node B and the spy got it again
        # B handles its channel in order: once the next call is answered, the replay was dealt with.
        assert await a.cluster.router.ask("node-b", "test.count", {}) == {"n": 2}
        assert len(calls) == 2
        metrics = b.cluster.router.metrics()
        assert metrics["cluster_messages_rejected_total"] == rejected + 1
        assert metrics["cluster_messages_replayed_total"] == 1 and metrics["cluster_messages_misdirected_total"] == 0
        # Another node has not seen its id, and the sender itself never received it: the address refuses it.
        for node, elsewhere, other in ((c, on_c, a), (a, on_a, b)):
            assert node.cluster is not None and other.cluster is not None
            rejected = node.cluster.router.metrics()["cluster_messages_rejected_total"]
            assert await spy.publish(channel(node.cluster.name), captured) == 1
            assert await other.cluster.router.ask(node.cluster.name, "test.count", {}) == {"n": 1}
            assert len(elsewhere) == 1 and elsewhere[0]["from"] == other.cluster.name  # the republished did not run
            metrics = node.cluster.router.metrics()
            assert metrics["cluster_messages_rejected_total"] == rejected + 1
            assert metrics["cluster_messages_misdirected_total"] == 1
            assert metrics["cluster_messages_replayed_total"] == 0
        assert len(calls) == 2
        # A memory at its cap forgets the oldest id for a new one, and says so.
        assert b.cluster.router.metrics()["cluster_replay_ids_forgotten_total"] == 0
        b.cluster.bus.seen.cap = len(b.cluster.bus.seen)
        assert await a.cluster.router.ask("node-b", "test.count", {}) == {"n": 3}
        assert b.cluster.router.metrics()["cluster_replay_ids_forgotten_total"] >= 1
    finally:
        await pubsub.aclose()
        await spy.aclose()
        await c.stop()


async def test_a_message_captured_before_a_node_restarts_under_its_name_is_refused(redis_server: RedisProcess) -> None:
    """A worker restarted by `workers` has the name, hence the channel, of the one before and an empty memory of
    ids: the stamp is what refuses what was captured before it subscribed."""
    key, inbox = bus_key(SECRET), channel("w1")
    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    sender = RedisBus(redis_server.url, "sender", lambda m: None, key)
    first = RedisBus(redis_server.url, "w1", before.append, key)
    spy = aioredis.from_url(redis_server.url, decode_responses=True)
    pubsub = spy.pubsub(ignore_subscribe_messages=True)
    running = [sender, first]
    try:
        await sender.start()
        await first.start()
        await pubsub.subscribe(inbox)
        assert await sender.publish("w1", {"type": "end-session", "n": 1}) == 2
        captured = None
        async with asyncio.timeout(10):
            while captured is None:
                message = await pubsub.get_message(timeout=1.0)
                captured = message["data"] if message is not None else None
        await until(lambda: before == [{"type": "end-session", "n": 1}], timeout=5.0)
        running.remove(first)
        await first.close()
        await first.close()  # a second close does nothing (a node's stop may follow a failed start's)
        await asyncio.sleep(START_SKEW + 0.2)  # a restart takes longer than the allowance
        starting = time.time()
        second = RedisBus(redis_server.url, "w1", after.append, key)
        await second.start()
        running.append(second)
        assert await spy.publish(inbox, captured) == 2
        # A sender whose clock is behind by less than the allowance is still heard.
        behind = sign(key, {"type": "event", "n": 2}, inbox, now=starting - START_SKEW / 4)
        assert await spy.publish(inbox, behind) == 2
        assert await sender.publish("w1", {"type": "event", "n": 3}) == 2
        # One channel, delivered in order: once the last is in, the others were dealt with.
        await until(lambda: len(after) >= 2, timeout=5.0)
        assert after == [{"type": "event", "n": 2}, {"type": "event", "n": 3}]
        assert second.replayed == 1 and second.rejected == 1
    finally:
        await pubsub.aclose()
        await spy.aclose()
        for bus in running:
            await bus.close()
