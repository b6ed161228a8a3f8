"""The sans-I/O half of the cluster: who is alive, where a handle goes, and the worker slices."""

from __future__ import annotations

import pytest

from apuppet.cluster.bus import MAX_AGE, bus_key, sign, unseal
from apuppet.cluster.directory import Directory, channel
from apuppet.cluster.workers import MIN_PORTS_PER_WORKER, parse_worker, port_slices, worker_config
from apuppet.config import Config


def test_an_entry_of_a_node_that_is_not_alive_counts_as_gone() -> None:
    d = Directory("a", incarnation="a1")
    assert d.update_live({"b": "b1", "c": "c1"}) == set()
    assert d.live == {"a": "a1", "b": "b1", "c": "c1"}
    assert d.holder("b") == "b"
    assert d.holder("a") is None  # held here
    assert d.holder(None) is None
    assert d.update_live({"b": "b1"}) == {"c"}  # c died
    assert d.holder("c") is None
    # A name missing from the last heartbeat is worth one look (a node that joined since), not one that is known.
    assert d.unknown("c") and d.unknown("new") and not d.unknown("b") and not d.unknown("a") and not d.unknown(None)


def test_a_fresh_handle_follows_its_sessions_bound_handle_and_forgets_on_detach() -> None:
    d = Directory("a", live={"a": "", "b": ""})
    assert d.fresh(1, 10) and d.affinity(1) is None
    d.bound[(1, 10)] = "b"
    d.used.add((1, 11))
    assert not d.fresh(1, 10) and not d.fresh(1, 11) and d.fresh(1, 12)
    assert d.affinity(1) == "b" and d.affinity(2) is None
    d.update_live({})  # b died: nothing follows it any more
    assert d.affinity(1) is None
    assert d.bindings_to({"b"}) == [(1, 10)]
    assert d.forget_handle(1, 10) == "b" and d.forget_handle(1, 11) is None
    assert d.fresh(1, 10) and d.fresh(1, 11)


def test_guests_are_found_by_their_node() -> None:
    d = Directory("a", guests={5: "b", 6: "c", 7: "b"})
    assert sorted(d.guests_of({"b"})) == [5, 7]


def test_a_node_back_under_its_name_is_gone_then_joined() -> None:
    """A worker restarted by `--workers` keeps its name: its new incarnation is what tells it from the dead one."""
    d = Directory("a", incarnation="a1")
    d.update_live({"w-1": "old"})
    d.bound[(1, 10)] = "w-1"
    assert d.update_live({"w-1": "new"}) == {"w-1"}  # its guests, bindings and calls go
    assert d.holder("w-1") == "w-1" and d.live["w-1"] == "new"  # and it serves anew at once
    assert d.update_live({"w-1": "new"}) == set()


def test_guest_entries_whose_session_went_are_stale() -> None:
    d = Directory("a", guests={5: "b", 6: "c"})
    assert d.stale_guests({6: object(), 7: object()}) == [5]


def test_bus_messages_are_signed_and_anything_else_is_refused() -> None:
    key, other, to = bus_key("secret-1"), bus_key("secret-2"), channel("b")
    wire = sign(key, {"type": "event", "sid": 1}, to)
    opened = unseal(key, wire)
    assert opened is not None and opened.message == {"type": "event", "sid": 1} and opened.target == to
    assert unseal(other, wire) is None  # another cluster's (or a forger's) key
    assert unseal(key, '{"type": "event", "sid": 1}') is None  # unsigned
    mac, stamp, body = wire.split(" ", 2)
    assert unseal(key, f"{mac} {stamp} {body.replace('1', '2')}") is None  # altered
    assert unseal(key, f"{mac} {float(stamp) + MAX_AGE:.3f} {body}") is None  # stamped anew
    old = unseal(key, sign(key, {"type": "event"}, to, now=1000.0))
    assert old is not None and old.stamp == 1000.0  # its age is the receiver's `ReplayGuard`'s to judge
    assert unseal(key, sign(key, {"x": 1}, to).replace(" ", "  ", 1)) is None
    assert "secret-1" not in wire


def test_port_slices_are_disjoint_and_cover_the_range() -> None:
    slices = port_slices((10000, 10500), 2)
    assert slices == [(10000, 10250), (10251, 10500)]
    four = port_slices((10000, 10500), 4)
    assert four[0][0] == 10000 and four[-1][1] == 10500
    assert all(a[1] + 1 == b[0] for a, b in zip(four, four[1:], strict=False))
    with pytest.raises(ValueError, match="too few for 3 workers"):
        port_slices((10000, 10000 + 3 * MIN_PORTS_PER_WORKER - 2), 3)


def test_worker_config_and_argument() -> None:
    config = Config(rtp_port_range="20000-20099", redis_url="redis://127.0.0.1:6379/0", workers=2, node_name="h")
    second = worker_config(config, *parse_worker("2/2"))
    assert (second.rtp_port_range, second.node_name, second.workers) == ("20050-20099", "h-2", 1)
    for bad in ("0/2", "3/2", "x/2", "2"):
        with pytest.raises(ValueError):
            parse_worker(bad)


def test_config_refuses_workers_without_redis_and_a_url_that_is_not_redis() -> None:
    from apuppet.config import ConfigError, validate

    with pytest.raises(ConfigError, match="workers above 1 need redis_url"):
        validate({"workers": 2})
    with pytest.raises(ConfigError, match="redis_url"):
        validate({"redis_url": "http://127.0.0.1:6379"})
    assert validate({"redis_url": "redis://:pw@10.0.0.5:6379/0", "workers": 4}).workers == 4


def test_a_server_without_redis_url_does_not_load_redis_py() -> None:
    """Without `redis_url` nothing of the cluster's I/O is loaded: the server is the single process it was."""
    import subprocess
    import sys

    probe = (
        "import sys; from apuppet.config import Config; from apuppet.server import Server; import apuppet.cli; "
        "Server(Config(bind='127.0.0.1', web_http_port=0, api_secret='s' * 16, admin_secret='a' * 24)); "
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith(('redis.', 'apuppet.cluster.'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
