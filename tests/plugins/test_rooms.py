"""The TextRoom state machine alone: requests in, replies and addressed events out, no network."""

from __future__ import annotations

import json
import random

import pytest

from apuppet.api.throttle import Throttle
from apuppet.plugins.rooms import MAX_TEXT, Outcome, Rooms, janus_date

AGENT, ADMIN, OTHER = "agent-handle", "admin-handle", "stranger-handle"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rooms(clock: FakeClock) -> Rooms:
    return Rooms(
        "the-admin-secret",
        clock=clock,
        address_throttle=Throttle(free=3, clock=clock),
        room_throttle=Throttle(free=6, base_delay=0.5, max_delay=30, clock=clock),
    )


def dc(rooms: Rooms, peer: str, remote: str = "10.0.0.1", **body: object) -> Outcome:
    body.setdefault("transaction", "t-" + str(body.get("textroom")))
    return rooms.request(peer, body, remote=remote)


def to(outcome: Outcome, peer: str) -> list[dict]:
    return [m for p, m in outcome.events if p == peer]


def agent_room(rooms: Rooms, room: str = "SESSION1", pin: str = "4321") -> None:
    """The agent's own sequence (spec §3.2): create with pin = password, join as device:<name>."""
    created = dc(rooms, AGENT, textroom="create", is_private=False, permanent=False, room=room, pin=pin)
    assert created.reply == {"textroom": "success", "room": room, "permanent": False, "transaction": "t-create"}
    joined = dc(rooms, AGENT, textroom="join", room=room, username="device:Pixel", display="Pixel", pin=pin)
    assert joined.reply == {"textroom": "success", "participants": [], "transaction": "t-join"}


def test_join_echoes_to_joiner_and_broadcasts(rooms: Rooms) -> None:
    agent_room(rooms)
    out = dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S", display="admin:S")
    assert out.reply == {
        "textroom": "success",
        "participants": [{"username": "device:Pixel", "display": "Pixel"}],
        "transaction": "t-join",
    }
    event = {"textroom": "join", "room": "SESSION1", "username": "admin:S", "display": "admin:S"}
    assert to(out, AGENT) == [event]
    assert to(out, ADMIN) == [event]


def test_message_to_everybody_with_from_and_date(rooms: Rooms, clock: FakeClock) -> None:
    agent_room(rooms)
    dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    out = dc(rooms, ADMIN, textroom="message", room="SESSION1", text="tap,10,20,100")
    assert out.reply == {"textroom": "success", "transaction": "t-message"}
    date = janus_date(clock.now)
    assert date.startswith("2027-01-15T") and date.endswith("+0000")
    expected = {"textroom": "message", "room": "SESSION1", "from": "admin:S", "date": date, "text": "tap,10,20,100"}
    assert to(out, AGENT) == [expected] and to(out, ADMIN) == [expected]

    quiet = dc(rooms, AGENT, textroom="message", room="SESSION1", text="pong,1", ack=False)
    assert quiet.reply is None
    assert [m["from"] for _, m in quiet.events] == ["device:Pixel", "device:Pixel"]


def test_private_messages(rooms: Rooms) -> None:
    agent_room(rooms)
    dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    dc(rooms, OTHER, textroom="join", room="SESSION1", pin="4321", username="watcher")
    out = dc(rooms, ADMIN, textroom="message", room="SESSION1", text="psst", to="device:Pixel")
    assert [(p, m["whisper"], m["text"]) for p, m in out.events] == [(AGENT, True, "psst")]
    out = dc(rooms, ADMIN, textroom="message", room="SESSION1", text="hi", tos=["watcher", "nobody", "device:Pixel"])
    assert sorted(p for p, _ in out.events) == sorted([AGENT, OTHER])


def test_leave_frees_username_and_notifies_others(rooms: Rooms) -> None:
    agent_room(rooms)
    dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    out = dc(rooms, ADMIN, textroom="leave", room="SESSION1")
    assert out.reply == {"textroom": "success", "transaction": "t-leave"}
    assert out.events == [(AGENT, {"textroom": "leave", "room": "SESSION1", "username": "admin:S"})]
    again = dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    assert again.reply is not None and again.reply["textroom"] == "success"


def test_errors_use_janus_codes(rooms: Rooms) -> None:
    agent_room(rooms)

    def code(out: Outcome) -> int:
        assert out.reply is not None and out.reply["textroom"] == "error", out.reply
        return out.reply["error_code"]

    assert code(dc(rooms, ADMIN, textroom="join", room="NOPE", username="a")) == 417
    assert code(dc(rooms, OTHER, textroom="create", room="SESSION1")) == 418
    assert code(dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="0000", username="a")) == 419
    assert code(dc(rooms, AGENT, textroom="join", room="SESSION1", pin="4321", username="device:Pixel")) == 421
    dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    assert code(dc(rooms, OTHER, textroom="join", room="SESSION1", pin="4321", username="admin:S")) == 420
    assert code(dc(rooms, OTHER, textroom="join", room="SESSION1", pin="4321", username="device:Pixel")) == 419
    assert code(dc(rooms, OTHER, textroom="message", room="SESSION1", text="x")) == 422
    assert code(dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321")) == 413
    assert code(dc(rooms, ADMIN, textroom="join", room=["x"], username="a")) == 414
    assert code(dc(rooms, ADMIN, textroom="frobnicate")) == 415
    assert code(rooms.request(ADMIN, {"textroom": "list"})) == 413  # no transaction on the data channel
    assert code(rooms.request(ADMIN, ["not", "an", "object"])) == 412
    # Nothing of that changed the room.
    assert list(rooms.rooms["SESSION1"].participants) == ["device:Pixel", "admin:S"]


def test_text_size_is_limited(rooms: Rooms) -> None:
    agent_room(rooms)
    out = dc(rooms, AGENT, textroom="message", room="SESSION1", text="x" * (MAX_TEXT + 1))
    assert out.reply is not None and out.reply["error_code"] == 414 and out.events == []
    out = dc(rooms, AGENT, textroom="message", room="SESSION1", text="x" * MAX_TEXT)
    assert out.reply is not None and out.reply["textroom"] == "success"


def test_only_creator_secret_or_admin_destroys_or_kicks(rooms: Rooms) -> None:
    agent_room(rooms)
    dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    # A participant who knows the pin is still a stranger to the room's ownership.
    for verb, extra in (("destroy", {}), ("kick", {"username": "device:Pixel"})):
        out = dc(rooms, ADMIN, textroom=verb, room="SESSION1", **extra)
        assert out.reply is not None and out.reply["error_code"] == 419 and out.events == []
    assert "SESSION1" in rooms.rooms

    kicked = dc(rooms, OTHER, textroom="kick", room="SESSION1", username="admin:S", admin_key="the-admin-secret")
    assert kicked.reply == {"textroom": "success", "transaction": "t-kick"}
    assert {p for p, _ in kicked.events} == {AGENT, ADMIN}
    assert list(rooms.rooms["SESSION1"].participants) == ["device:Pixel"]

    out = dc(rooms, AGENT, textroom="destroy", room="SESSION1")
    assert out.reply == {"textroom": "success", "room": "SESSION1", "permanent": False, "transaction": "t-destroy"}
    assert out.events == [(AGENT, {"textroom": "destroyed", "room": "SESSION1"})]
    assert rooms.rooms == {}


def test_room_secret_holder_may_destroy(rooms: Rooms) -> None:
    dc(rooms, AGENT, textroom="create", room=7, secret="s3cret")
    assert dc(rooms, OTHER, textroom="destroy", room="7", secret="wrong").reply["error_code"] == 419  # type: ignore[index]
    assert dc(rooms, OTHER, textroom="destroy", room="7", secret="s3cret").reply["textroom"] == "success"  # type: ignore[index]


def test_http_shapes(rooms: Rooms) -> None:
    """Over the Janus API the verb is `request` and create/destroy answer `created`/`destroyed` (agent teardown)."""
    created = rooms.request(AGENT, {"request": "create", "room": "R"}, verb_key="request")
    assert created.reply == {"textroom": "created", "room": "R", "permanent": False}
    destroyed = rooms.request(AGENT, {"request": "destroy", "room": "R"}, verb_key="request")
    assert destroyed.reply == {"textroom": "destroyed", "room": "R", "permanent": False}


def test_list_hides_protected_rooms_from_strangers(rooms: Rooms) -> None:
    agent_room(rooms, "PINNED")
    dc(rooms, AGENT, textroom="create", room="HIDDEN", is_private=True)
    dc(rooms, OTHER, textroom="create", room="OPEN")

    def listed(peer: str, **extra: object) -> set:
        out = dc(rooms, peer, textroom="list", **extra)
        assert out.reply is not None
        return {entry["room"] for entry in out.reply["list"]}

    assert listed(OTHER) == {"OPEN"}
    assert listed(AGENT) == {"PINNED", "HIDDEN", "OPEN"}
    assert listed(OTHER, admin_key="the-admin-secret") == {"PINNED", "HIDDEN", "OPEN"}
    dc(rooms, ADMIN, textroom="join", room="PINNED", pin="4321", username="admin:S")
    assert listed(ADMIN) == {"PINNED", "OPEN"}
    entry = next(e for e in dc(rooms, AGENT, textroom="list").reply["list"] if e["room"] == "PINNED")  # type: ignore[index]
    assert entry == {"room": "PINNED", "description": "Room PINNED", "pin_required": True, "num_participants": 2}


def test_listparticipants_and_exists(rooms: Rooms) -> None:
    agent_room(rooms)
    assert dc(rooms, OTHER, textroom="exists", room="SESSION1").reply["exists"] is True  # type: ignore[index]
    assert dc(rooms, OTHER, textroom="exists", room="NOPE").reply["exists"] is False  # type: ignore[index]
    assert dc(rooms, OTHER, textroom="listparticipants", room="SESSION1").reply["error_code"] == 419  # type: ignore[index]
    out = dc(rooms, OTHER, textroom="listparticipants", room="SESSION1", pin="4321")
    assert out.reply is not None and out.reply["participants"] == [{"username": "device:Pixel", "display": "Pixel"}]


def test_string_and_integer_room_ids_name_the_same_room(rooms: Rooms) -> None:
    out = dc(rooms, AGENT, textroom="create", room=1234)
    assert out.reply is not None and out.reply["room"] == 1234
    assert dc(rooms, OTHER, textroom="create", room="1234").reply["error_code"] == 418  # type: ignore[index]
    joined = dc(rooms, ADMIN, textroom="join", room="1234", username="a")
    assert joined.reply is not None and joined.reply["textroom"] == "success"
    assert joined.events[0][1]["room"] == 1234
    assert dc(rooms, AGENT, textroom="create").reply["room"] > 0  # type: ignore[index]


def test_wrong_pins_are_slowed_down_per_address(rooms: Rooms, clock: FakeClock) -> None:
    agent_room(rooms)
    join = {"textroom": "join", "room": "SESSION1", "username": "admin:S"}
    for _ in range(3):
        assert dc(rooms, ADMIN, remote="10.6.6.6", pin="0000", **join).reply["error_code"] == 419  # type: ignore[index]
    dc(rooms, ADMIN, remote="10.6.6.6", pin="0001", **join)
    # Blocked now: even the right pin is refused from that address until the delay passes.
    blocked = dc(rooms, ADMIN, remote="10.6.6.6", pin="4321", **join).reply
    assert blocked is not None and blocked["error_code"] == 419 and "retry" in blocked["error"]
    ok = dc(rooms, ADMIN, remote="10.7.7.7", pin="4321", **join).reply
    assert ok is not None and ok["textroom"] == "success"
    clock.now += 3
    dc(rooms, ADMIN, textroom="leave", room="SESSION1")
    assert dc(rooms, ADMIN, remote="10.6.6.6", pin="4321", **join).reply["textroom"] == "success"  # type: ignore[index]


def test_wrong_pins_are_slowed_down_per_room(rooms: Rooms) -> None:
    """Guessing from many addresses still hits the room's own limit, but only the guessers do."""
    agent_room(rooms)
    for i in range(7):
        dc(rooms, ADMIN, remote=f"10.1.0.{i}", textroom="join", room="SESSION1", username="a", pin="0000")
    reply = dc(rooms, ADMIN, remote="10.1.0.1", textroom="join", room="SESSION1", username="a", pin="0001").reply
    assert reply is not None and reply["error_code"] == 419 and "retry" in reply["error"]
    reply = dc(rooms, ADMIN, remote="10.2.0.1", textroom="join", room="SESSION1", username="a", pin="4321").reply
    assert reply is not None and reply["textroom"] == "success"


def test_vanished_peer_leaves_and_owner_takes_rooms_along(rooms: Rooms) -> None:
    agent_room(rooms)
    dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    assert rooms.drop_peer(ADMIN) == [(AGENT, {"textroom": "leave", "room": "SESSION1", "username": "admin:S"})]
    dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    events = rooms.drop_peer(AGENT) + rooms.drop_owner(AGENT)
    assert events == [
        (ADMIN, {"textroom": "leave", "room": "SESSION1", "username": "device:Pixel"}),
        (ADMIN, {"textroom": "destroyed", "room": "SESSION1"}),
    ]
    assert rooms.rooms == {}
    # The stale-room 418 of aPuppet's reconnect is gone.
    agent_room(rooms)


def test_outputs_are_json_serialisable_and_independent(rooms: Rooms) -> None:
    agent_room(rooms)
    out = dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    first, second = (m for _, m in out.events)
    first["mutated"] = True
    assert "mutated" not in second
    json.dumps([m for _, m in out.events] + [out.reply])


def test_reports_for_operators_never_carry_pins(rooms: Rooms) -> None:
    agent_room(rooms)
    dc(rooms, ADMIN, remote="10.9.9.9", textroom="join", room="SESSION1", pin="0000", username="admin:S")
    dc(rooms, ADMIN, remote="10.9.9.9", textroom="join", room="SESSION1", pin="4321", username="admin:S")
    dc(rooms, OTHER, remote="10.6.6.6", textroom="destroy", room="SESSION1", secret="guess")
    dc(rooms, ADMIN, textroom="leave", room="SESSION1")
    rooms.drop_peer(AGENT)
    rooms.drop_owner(AGENT)
    reports = rooms.take_reports()
    assert [name for name, _ in reports] == [
        "room_created",
        "participant_joined",
        "wrong_pin",
        "participant_joined",
        "unauthorized",
        "participant_left",
        "participant_left",
        "room_destroyed",
    ]
    assert reports[3][1] == {"room": "SESSION1", "username": "admin:S", "display": None, "remote": "10.9.9.9"}
    assert [f["reason"] for n, f in reports if n == "participant_left"] == ["left", "hangup"]
    assert reports[-1][1] == {"room": "SESSION1", "reason": "creator gone"}
    assert "4321" not in repr(reports) and "0000" not in repr(reports) and "guess" not in repr(reports)
    assert rooms.take_reports() == []


def test_random_requests_never_raise(rooms: Rooms) -> None:
    """Whatever a client sends, the answer is a reply (or a deliberate silence), never an exception."""
    rng = random.Random(7)
    values: list[object] = [None, True, 0, -1, 2**70, 1.5, "", "SESSION1", "x" * 300, [], ["a"], {}, {"a": 1}, "4321"]
    verbs = ["list", "exists", "create", "join", "message", "announcement", "leave", "kick", "destroy"]
    verbs += ["listparticipants", "LIST", "", "nope"]
    fields = ["room", "pin", "secret", "username", "display", "text", "to", "tos", "ack", "is_private", "admin_key"]
    agent_room(rooms)
    for i in range(3000):
        peer = rng.choice([AGENT, ADMIN, OTHER])
        body: dict[str, object] = {f: rng.choice(values) for f in rng.sample(fields, rng.randrange(len(fields)))}
        body["textroom" if i % 2 else "request"] = rng.choice(verbs + values)  # type: ignore[operator]
        if rng.random() < 0.9:
            body["transaction"] = str(i)
        out = rooms.request(peer, body, remote=f"10.0.{i % 7}.1", verb_key="textroom" if i % 2 else "request")
        assert out.reply is None or out.reply["textroom"] in ("success", "error", "created", "destroyed")
        json.dumps([m for _, m in out.events])
        if i % 500 == 0:
            rooms.drop_peer(rng.choice([AGENT, ADMIN, OTHER]))


def test_viewer_sessions_reach_a_device_only_with_its_pin(rooms: Rooms, clock: FakeClock) -> None:
    """A session created without the API secret (the web-admin) may join, talk and leave; nothing else."""
    agent_room(rooms)

    def viewer(remote: str = "10.9.9.9", **body: object) -> Outcome:
        body.setdefault("transaction", "v")
        return rooms.request(ADMIN, body, remote=remote, trusted=False)

    for verb, extra in [
        ("create", {"room": "MINE"}),
        ("list", {}),
        ("destroy", {"room": "SESSION1"}),
        ("exists", {"room": "SESSION1"}),
        ("listparticipants", {"room": "SESSION1"}),
        ("kick", {"room": "SESSION1", "username": "device:Pixel"}),
        ("announcement", {"room": "SESSION1", "text": "hi"}),
    ]:
        reply = viewer(textroom=verb, **extra).reply
        assert reply["error_code"] == 419 and "API secret" in reply["error"], verb
    assert "MINE" not in rooms.rooms and "SESSION1" in rooms.rooms

    joined = viewer(textroom="join", room="SESSION1", pin="4321", username="admin:x")
    assert joined.reply["textroom"] == "success"
    assert viewer(textroom="message", room="SESSION1", text="tap,1,2,3").reply["textroom"] == "success"
    assert viewer(textroom="leave", room="SESSION1").reply["textroom"] == "success"

    # Guessing room ids is slowed down like guessing pins (3 free failures per address here, then a delay).
    for i in range(4):
        assert viewer("6.6.6.6", textroom="join", room=f"NOPE{i}", pin="1", username="a").reply["error_code"] == 417
    blocked = viewer("6.6.6.6", textroom="join", room="SESSION1", pin="4321", username="admin:y").reply
    assert blocked["error_code"] == 419 and "retry" in blocked["error"]
    clock.now += 5
    assert viewer("6.6.6.6", textroom="join", room="SESSION1", pin="4321", username="admin:y").reply["textroom"] == (
        "success"
    )


def test_a_gone_creators_room_is_reclaimed_with_its_pin(clock: FakeClock) -> None:
    gone: set[str] = set()
    rooms = Rooms("adm", clock=clock, owner_gone=lambda owner: owner in gone)
    agent_room(rooms)
    dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    create = {"textroom": "create", "room": "SESSION1", "pin": "4321"}
    assert dc(rooms, OTHER, **create).reply["error_code"] == 418  # the creator is alive
    gone.add(AGENT)
    assert dc(rooms, OTHER, **{**create, "pin": "0000"}).reply["error_code"] == 418
    out = dc(rooms, OTHER, **create)
    assert out.reply["textroom"] == "success"
    # Whoever was in the old room hears it go.
    assert to(out, ADMIN) == [{"textroom": "destroyed", "room": "SESSION1"}]
    assert rooms.rooms["SESSION1"].owner == OTHER and not rooms.rooms["SESSION1"].participants
    # The reclaiming agent is the creator now: it may join as the device.
    joined = dc(rooms, OTHER, textroom="join", room="SESSION1", pin="4321", username="device:Pixel 7")
    assert joined.reply is not None and joined.reply["textroom"] == "success"


def test_names_that_are_not_unicode_are_refused_where_they_come_in(rooms: Rooms) -> None:
    """A lone surrogate (JSON "\\ud800") parses into a str that UTF-8 cannot encode; bench/storm.py saw one reach
    the audit database's INSERT. It is refused at the door, with the textroom invalid-element code."""
    agent_room(rooms)
    bad = json.loads('"admin:\\ud800"')
    for field in ("username", "display"):
        body = {"username": "admin:S", "display": "S", field: bad}
        out = dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", **body)
        assert out.reply["textroom"] == "error" and out.reply["error_code"] == 414, out.reply
        assert "Unicode" in out.reply["error"]
    assert dc(rooms, OTHER, textroom="exists", room=json.loads('"SESSION\\udfff"')).reply["error_code"] == 414
    # The same person with a proper name gets in.
    joined = dc(rooms, ADMIN, textroom="join", room="SESSION1", pin="4321", username="admin:S")
    assert joined.reply["textroom"] == "success"
