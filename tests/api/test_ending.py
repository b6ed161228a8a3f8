"""`Endings`, sans-I/O: a session ended on purpose is told why through its plugins, then destroyed after a grace;
viewer sessions over `max_session_minutes` or idle past `viewer_idle_minutes` are ended, agents never."""

from __future__ import annotations

import json
from typing import Any

from apuppet.api.ending import IDLE, OPERATOR, TIME_LIMIT, Endings, minutes
from apuppet.api.gateway import Gateway
from apuppet.api.idtag import tag
from apuppet.api.plugin import JSON, Plugin, PluginResult
from apuppet.api.session import Handle, Session

SECRET = "s3cret"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class InputPlugin(Plugin):
    """Records evictions; `{"input": true}` counts as a person's input, anything else as a heartbeat."""

    name = "janus.plugin.input"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.inputs: dict[Handle, float] = {}
        self.evicted: list[tuple[int, str, str]] = []
        self.detached: list[int] = []

    def message(self, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> PluginResult | None:
        if body.get("input"):
            self.inputs[handle] = self.clock()
        return PluginResult({"ok": True})

    def last_input(self, handle: Handle) -> float | None:
        return self.inputs.get(handle)

    def evict(self, handle: Handle, reason: str, message: str) -> None:
        self.evicted.append((handle.id, reason, message))
        handle.push_event({"kicked": reason, "message": message})

    def detach(self, handle: Handle) -> None:
        self.detached.append(handle.id)


def setup(**limits: float) -> tuple[Gateway, Endings, InputPlugin, Clock, list[tuple[str, JSON]]]:
    clock = Clock()
    plugin = InputPlugin(clock)
    gateway = Gateway([plugin], api_secret=SECRET, clock=clock)
    events: list[tuple[str, JSON]] = []
    gateway.observers.append(lambda name, fields: events.append((name, fields)))
    return gateway, Endings(gateway, grace=2.0, **limits), plugin, clock, events


def request(gateway: Gateway, body: JSON, session: int | None = None, handle: int | None = None) -> JSON:
    return gateway.receive(
        json.dumps({"transaction": "t", **body}), session_id=session, handle_id=handle, remote="192.0.2.1"
    )


def open_session(gateway: Gateway, trusted: bool) -> tuple[Session, int]:
    secret: dict[str, Any] = {"apisecret": SECRET} if trusted else {}
    sid = request(gateway, {"janus": "create", **secret})["data"]["id"]
    hid = request(gateway, {"janus": "attach", "plugin": "janus.plugin.input", **secret}, sid)["data"]["id"]
    return gateway.sessions[sid], hid


def test_an_ended_session_hears_why_then_goes_after_the_grace() -> None:
    gateway, endings, plugin, clock, events = setup()
    session, handle = open_session(gateway, trusted=False)
    assert endings.find(tag(session.id)) is session
    assert endings.end(session, OPERATOR, "An operator ended this session.")
    assert plugin.evicted == [(handle, OPERATOR, "An operator ended this session.")]
    assert session.events[-1]["plugindata"]["data"] == {
        "kicked": OPERATOR,
        "message": "An operator ended this session.",
    }
    assert ("session_ended", {"session": tag(session.id), "reason": OPERATOR, "remote": "192.0.2.1"}) in events
    assert not endings.end(session, OPERATOR, "again")  # once
    clock.now += 1.9
    endings.sweep()
    assert session.id in gateway.sessions  # still there: the client may be reading the event
    clock.now += 0.2
    endings.sweep()
    assert session.id not in gateway.sessions and session.destroyed
    assert plugin.detached == [handle]
    assert events[-1] == ("session_destroyed", {"session": tag(session.id), "reason": OPERATOR, "remote": "192.0.2.1"})
    assert endings.find(tag(session.id)) is None


def test_a_client_that_destroys_its_session_meanwhile_is_fine() -> None:
    gateway, endings, _, clock, _ = setup()
    session, _ = open_session(gateway, trusted=False)
    endings.end(session, OPERATOR, "bye")
    request(gateway, {"janus": "destroy"}, session.id)
    clock.now += 5
    assert endings.sweep() == [] and not gateway.sessions


def test_viewer_sessions_end_at_the_time_limit_agents_never() -> None:
    gateway, endings, plugin, clock, _ = setup(max_viewer_session=180.0)
    viewer, handle = open_session(gateway, trusted=False)
    agent, _ = open_session(gateway, trusted=True)
    clock.now += 179
    request(gateway, {"janus": "message", "body": {"input": True}}, viewer.id, handle)  # busy or not
    assert endings.sweep() == []
    clock.now += 1
    assert endings.sweep() == [viewer]
    assert plugin.evicted == [(handle, TIME_LIMIT, "The session reached its time limit of 3 minutes.")]
    clock.now += 3
    endings.sweep()
    assert viewer.destroyed and not agent.destroyed
    clock.now += 10_000
    request(gateway, {"janus": "keepalive", "apisecret": SECRET}, agent.id)
    assert endings.sweep() == [] and not agent.destroyed


def test_idle_counts_input_not_heartbeats() -> None:
    gateway, endings, plugin, clock, _ = setup(viewer_idle=60.0)
    busy, busy_handle = open_session(gateway, trusted=False)
    quiet, quiet_handle = open_session(gateway, trusted=False)
    for _ in range(5):
        clock.now += 20
        request(gateway, {"janus": "message", "body": {"input": True}}, busy.id, busy_handle)
        request(gateway, {"janus": "message", "body": {"ping": True}}, quiet.id, quiet_handle)  # heartbeat only
        endings.sweep()
    assert [e[0] for e in plugin.evicted] == [quiet_handle]
    assert plugin.evicted[0][1:] == (IDLE, "Disconnected after 1 minute without input.")
    clock.now += 59
    assert endings.sweep() == []
    clock.now += 1
    assert endings.sweep() == [busy]


def test_limits_read_like_the_config() -> None:
    assert minutes(60) == "1 minute"
    assert minutes(1800) == "30 minutes"
    assert minutes(3) == "0.05 minutes"


def test_an_ending_session_may_only_poll_hang_up_and_destroy() -> None:
    gateway, endings, plugin, clock, _ = setup()
    session, handle = open_session(gateway, trusted=False)
    endings.end(session, OPERATOR, "bye")
    for body, target in (
        ({"janus": "message", "body": {"input": True}}, handle),
        ({"janus": "attach", "plugin": "janus.plugin.input"}, None),
        ({"janus": "trickle", "candidate": {"completed": True}}, handle),
    ):
        reply = request(gateway, body, session.id, target)
        assert reply["error"] == {"code": 403, "reason": "Session ended (operator)"}, body
    assert plugin.inputs == {} and len(session.handles) == 1  # nothing reached the plugin
    assert request(gateway, {"janus": "keepalive"}, session.id)["janus"] == "ack"
    assert request(gateway, {"janus": "hangup"}, session.id, handle)["janus"] == "success"
    assert request(gateway, {"janus": "destroy"}, session.id)["janus"] == "success"
    assert session.destroyed
