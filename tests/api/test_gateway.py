"""The Janus core without sockets: envelopes, levels, errors, secrets, expiry and ownership."""

from __future__ import annotations

import pytest

from apuppet.api.errors import JanusError
from apuppet.api.gateway import Gateway
from apuppet.api.limits import Limits
from apuppet.api.throttle import Throttle

from .echo import EchoPlugin

SECRET = "s3cretK7pQ"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def plugin() -> EchoPlugin:
    return EchoPlugin()


@pytest.fixture
def gw(plugin: EchoPlugin, clock: Clock) -> Gateway:
    return Gateway([plugin], api_secret=SECRET, session_timeout=60, clock=clock)


def req(gw: Gateway, verb: str, session=None, handle=None, remote="10.0.0.1", **fields):
    msg = {"janus": verb, "transaction": "483920174652", "apisecret": SECRET, **fields}
    return gw.handle(msg, session_id=session, handle_id=handle, remote=remote)


def create(gw: Gateway) -> int:
    reply = req(gw, "create")
    assert reply["janus"] == "success"
    assert reply["transaction"] == "483920174652"
    return reply["data"]["id"]


def test_create_attach_message_sync_and_async(gw: Gateway, plugin: EchoPlugin) -> None:
    sid = create(gw)
    assert 0 < sid < 2**53
    attach = req(gw, "attach", sid, plugin="janus.plugin.echotest")
    assert attach == {"janus": "success", "session_id": sid, "transaction": "483920174652", "data": attach["data"]}
    hid = attach["data"]["id"]
    assert hid in plugin.attached

    sync = req(gw, "message", sid, hid, body={"sync": 7})
    assert sync["janus"] == "success" and sync["sender"] == hid
    assert sync["plugindata"] == {"plugin": "janus.plugin.echotest", "data": {"echotest": "result", "sync": 7}}

    ack = req(gw, "message", sid, hid, body={"x": 1}, jsep={"type": "offer", "sdp": "v=0\r\n"})
    assert ack["janus"] == "ack"
    [event] = gw.sessions[sid].pop_events(10)
    assert event["janus"] == "event" and event["sender"] == hid and event["transaction"] == "483920174652"
    assert event["plugindata"]["data"]["echo"] == {"x": 1}
    assert event["jsep"]["type"] == "answer"


def test_agent_style_string_ids_in_body_are_tolerated(gw: Gateway) -> None:
    """The Android agent repeats ids as strings in the body; the path ids win (spec §2.2)."""
    sid = create(gw)
    hid = req(gw, "attach", sid, plugin="janus.plugin.echotest")["data"]["id"]
    msg = {
        "janus": "message",
        "transaction": "123456789012",
        "apisecret": SECRET,
        "session_id": "999",
        "handle_id": "888",
        "body": {"sync": 1},
    }
    assert gw.handle(msg, session_id=sid, handle_id=hid)["janus"] == "success"
    # Without path ids (WebSocket), string ids in the body are understood too.
    msg["session_id"], msg["handle_id"] = str(sid), str(hid)
    assert gw.handle(msg)["janus"] == "success"


@pytest.mark.parametrize("secret", ["wrong", SECRET + "x", 12345, SECRET[:-1]])
def test_wrong_secret_is_403(gw: Gateway, secret) -> None:
    reply = gw.handle({"janus": "create", "transaction": "t", "apisecret": secret})
    assert reply["janus"] == "error" and reply["error"]["code"] == 403
    assert reply["transaction"] == "t"
    assert not gw.sessions


@pytest.mark.parametrize("secret", [None, ""])
def test_missing_secret_gives_a_viewer_session_only_when_allowed(gw: Gateway, secret) -> None:
    msg = {"janus": "create", "transaction": "t"}
    if secret is not None:
        msg["apisecret"] = secret
    reply = gw.handle(msg)
    sid = reply["data"]["id"]
    assert gw.sessions[sid].trusted is False
    # A viewer session works without the secret; a wrong one is still refused.
    assert gw.handle({"janus": "keepalive", "transaction": "k"}, session_id=sid)["janus"] == "ack"
    assert gw.handle({"janus": "keepalive", "transaction": "k", "apisecret": "bad"}, session_id=sid)["janus"] == "error"
    gw.poll_session(sid, None)
    # An agent's (trusted) session must keep sending the secret.
    trusted = create(gw)
    assert gw.sessions[trusted].trusted is True
    assert gw.handle({"janus": "keepalive", "transaction": "k"}, session_id=trusted)["error"]["code"] == 403
    with pytest.raises(JanusError):
        gw.poll_session(trusted, None)
    gw.viewer_access = False
    assert gw.handle(dict(msg))["error"]["code"] == 403


def test_info_and_ping_need_no_secret(gw: Gateway) -> None:
    assert gw.handle({"janus": "ping", "transaction": "p"}) == {"janus": "pong", "transaction": "p"}
    info = gw.handle({"janus": "info", "transaction": "i"})
    assert info["janus"] == "server_info" and "janus.plugin.echotest" in info["plugins"]


def test_secret_guessing_is_slowed_down(gw: Gateway, clock: Clock) -> None:
    gw.throttle = Throttle(free=3, base_delay=2.0, clock=clock)
    for _ in range(4):
        assert req(gw, "create", apisecret="bad", remote="6.6.6.6")["error"]["code"] == 403
    # Wrong guesses from that address are refused without being checked now...
    blocked = req(gw, "create", apisecret="guess", remote="6.6.6.6")
    assert blocked["error"]["code"] == 403 and "retry" in blocked["error"]["reason"]
    # ...but the right secret still passes (many phones share one carrier-NAT address).
    assert req(gw, "create", remote="6.6.6.6")["janus"] == "success"
    assert req(gw, "create", remote="7.7.7.7")["janus"] == "success"
    # The right one did not clear the count of wrong ones.
    assert "retry" in req(gw, "create", apisecret="guess", remote="6.6.6.6")["error"]["reason"]
    clock.now += 3
    assert "retry" not in req(gw, "create", apisecret="guess", remote="6.6.6.6")["error"]["reason"]


def test_injected_empty_throttle_is_kept(clock: Clock) -> None:
    """An empty Throttle has len() 0; `secret_throttle or Throttle()` used to swap it for a default one."""
    throttle = Throttle(free=1, clock=clock)
    assert len(throttle) == 0
    gw = Gateway([EchoPlugin()], api_secret=SECRET, clock=clock, secret_throttle=throttle)
    assert gw.throttle is throttle


def test_malformed_and_unknown(gw: Gateway) -> None:
    assert gw.receive(b"{not json")["error"]["code"] == 454
    assert gw.receive(b"\xff\xfe")["error"]["code"] == 454
    assert gw.receive(b"[1,2]")["error"]["code"] == 455
    assert gw.handle({"transaction": "t"})["error"]["code"] == 452
    assert gw.handle({"janus": "create"})["error"]["code"] == 456
    assert gw.handle({"janus": "create", "transaction": 5})["error"]["code"] == 467
    assert req(gw, "frobnicate")["error"]["code"] == 453
    assert req(gw, "attach")["error"]["code"] == 457  # attach needs a session path
    sid = create(gw)
    assert req(gw, "keepalive", sid + 1)["error"]["code"] == 458
    assert req(gw, "message", sid, 42, body={})["error"]["code"] == 459
    assert req(gw, "attach", sid, plugin="janus.plugin.nope")["error"]["code"] == 460
    assert req(gw, "attach", sid)["error"]["code"] == 456
    assert req(gw, "message", sid)["error"]["code"] == 457  # message needs a handle
    hid = req(gw, "attach", sid, plugin="janus.plugin.echotest")["data"]["id"]
    assert req(gw, "message", sid, hid)["error"]["code"] == 456
    assert req(gw, "message", sid, hid, body=[1])["error"]["code"] == 467
    assert req(gw, "message", sid, hid, body={}, jsep={"type": "pranswer", "sdp": "v=0"})["error"]["code"] == 464
    assert req(gw, "message", sid, hid, body={}, jsep={"type": "offer", "sdp": "garbage"})["error"]["code"] == 465
    assert req(gw, "trickle", sid, hid)["error"]["code"] == 456
    assert req(gw, "trickle", sid, hid, candidate="x")["error"]["code"] == 467
    # A plugin that raises gets 462 and the server goes on.
    assert req(gw, "message", sid, hid, body={"crash": True})["error"]["code"] == 462
    assert req(gw, "message", sid, hid, body={"sync": 1})["janus"] == "success"


def test_trickle_hangup_detach(gw: Gateway, plugin: EchoPlugin) -> None:
    sid = create(gw)
    hid = req(gw, "attach", sid, plugin="janus.plugin.echotest")["data"]["id"]
    cand = {"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    assert req(gw, "trickle", sid, hid, candidate=cand)["janus"] == "ack"
    assert req(gw, "trickle", sid, hid, candidates=[{"completed": True}])["janus"] == "ack"
    assert plugin.trickled == [cand, {"completed": True}]
    assert req(gw, "hangup", sid, hid)["janus"] == "success"
    assert plugin.hangups == [hid]
    assert req(gw, "detach", sid, hid)["janus"] == "success"
    assert plugin.detached == [hid]
    assert gw.sessions[sid].pop_events(5) == [{"janus": "detached", "session_id": sid, "sender": hid}]
    assert req(gw, "message", sid, hid, body={})["error"]["code"] == 459


def test_destroy_releases_every_handle(gw: Gateway, plugin: EchoPlugin) -> None:
    sid = create(gw)
    hids = [req(gw, "attach", sid, plugin="janus.plugin.echotest")["data"]["id"] for _ in range(3)]
    assert req(gw, "destroy", sid)["janus"] == "success"
    assert sorted(plugin.detached) == sorted(hids)
    assert not plugin.attached and not gw.sessions
    assert req(gw, "keepalive", sid)["error"]["code"] == 458


def test_session_timeout_and_keepalive(gw: Gateway, plugin: EchoPlugin, clock: Clock) -> None:
    kept, idle = create(gw), create(gw)
    req(gw, "attach", idle, plugin="janus.plugin.echotest")
    for _ in range(3):
        clock.now += 40
        assert req(gw, "keepalive", kept)["janus"] == "ack"
        gw.expire()
    assert kept in gw.sessions and idle not in gw.sessions
    assert len(plugin.detached) == 1
    # A long poll keeps a session alive as well (the agent never sends keepalive).
    clock.now += 50
    gw.poll_session(kept, SECRET)
    clock.now += 50
    assert gw.expire() == []
    clock.now += 61
    assert gw.expire() == [kept]


def test_event_queue_is_bounded(gw: Gateway) -> None:
    sid = create(gw)
    hid = req(gw, "attach", sid, plugin="janus.plugin.echotest")["data"]["id"]
    session = gw.sessions[sid]
    handle = session.handles[hid]
    for i in range(session.events.maxlen + 10):
        handle.push_event({"n": i})
    assert len(session.events) == session.events.maxlen
    assert session.dropped_events == 10
    assert session.pop_events(1)[0]["plugindata"]["data"]["n"] == 10


def test_many_sessions_lifecycle_leaves_nothing(gw: Gateway, plugin: EchoPlugin) -> None:
    for _ in range(500):
        sid = create(gw)
        hid = req(gw, "attach", sid, plugin="janus.plugin.echotest")["data"]["id"]
        req(gw, "message", sid, hid, body={"x": 1})
        req(gw, "destroy", sid)
    assert not gw.sessions and not plugin.attached and len(plugin.detached) == 500


def test_an_ipv6_prefix_is_one_client_for_the_limits(plugin: EchoPlugin, clock: Clock) -> None:
    """Rotating through the addresses of one's own /64 (2^64 of them) must not reset the per-address caps."""
    limits = Limits(viewer_sessions_per_address=3, viewer_session_burst=100)
    gw = Gateway([plugin], api_secret=SECRET, clock=clock, limits=limits)
    viewer = {"janus": "create", "transaction": "t"}
    made = [gw.handle(dict(viewer), remote=f"2001:db8:1:2::{n:x}") for n in range(1, 5)]
    assert [r["janus"] for r in made] == ["success", "success", "success", "error"]
    assert made[-1]["error"]["code"] == 429
    # Another /64 is another client, and a destroyed session gives its place back to its prefix.
    assert gw.handle(dict(viewer), remote="2001:db8:1:3::1")["janus"] == "success"
    first = made[0]["data"]["id"]
    gw.handle({"janus": "destroy", "transaction": "d"}, session_id=first, remote="2001:db8:1:2::1")
    assert gw.handle(dict(viewer), remote="2001:db8:1:2::99")["janus"] == "success"


def test_a_viewer_session_answers_its_creators_prefix_only(gw: Gateway) -> None:
    """A browser's IPv6 temporary address may change between two long polls; another prefix is a stranger."""
    sid = gw.handle({"janus": "create", "transaction": "t"}, remote="2001:db8:1:2::1")["data"]["id"]
    keepalive = {"janus": "keepalive", "transaction": "k"}
    assert gw.handle(dict(keepalive), session_id=sid, remote="2001:db8:1:2::beef")["janus"] == "ack"
    assert gw.handle(dict(keepalive), session_id=sid, remote="2001:db8:1:3::1")["error"]["code"] == 458
    assert gw.handle(dict(keepalive), session_id=sid, remote="10.0.0.1")["error"]["code"] == 458


def test_polls_and_websockets_are_counted_by_the_core(plugin: EchoPlugin, clock: Clock) -> None:
    """The transports only open and close; the caps and their 429 are the gateway's, like every other limit."""
    gw = Gateway([plugin], api_secret=SECRET, clock=clock, limits=Limits(polls_per_session=1, websockets_per_address=1))
    session = gw.sessions[create(gw)]
    gw.open_poll(session, "10.0.0.1")
    with pytest.raises(JanusError) as refused:
        gw.open_poll(session, "10.0.0.1")
    assert refused.value.code == 429 and "polls_per_session" in refused.value.reason
    gw.close_poll(session, "10.0.0.1")
    gw.open_poll(session, "10.0.0.1")
    gw.open_websocket("2001:db8::1")
    with pytest.raises(JanusError):
        gw.open_websocket("2001:db8::2")  # the same /64
    gw.open_websocket("10.0.0.2")
    gw.close_websocket("2001:db8::1")
    gw.open_websocket("2001:db8::2")


def test_parse_gives_the_json_or_the_error_reply_a_transport_sends() -> None:
    assert Gateway.parse(b'{"janus": "ping"}') == ({"janus": "ping"}, None)
    assert Gateway.parse(b"[1]") == ([1], None)  # JSON, not an object: the dispatch refuses it
    for bad in (b"{", b"\xff", b"[" * 200 + b"]" * 200):
        message, refused = Gateway.parse(bad)
        assert message is None and refused is not None and refused["error"]["code"] == 454
