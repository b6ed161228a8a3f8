"""No client input may reach aiortc's loops as an exception (issue 16 §2).

aiortc calls the data channel's `message` handler from its SCTP/DTLS receive loop; an exception raised there
ends the loop, and the channel, still open in appearance, never answers again. These tests send every kind of
garbage on one real data channel (real aiortc peers over loopback UDP) and then a valid request on the SAME channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from apuppet.api.gateway import Gateway
from apuppet.media import contain
from apuppet.media.contain import contained
from apuppet.plugins.textroom import TextRoomPlugin
from tests.plugins import test_textroom
from tests.plugins.test_textroom import DataPeer, agent_online, agent_transaction, connected

# The TextRoom tests' fixtures: a Gateway with the plugin, and the peers closed after each test.
clock, server, peers = test_textroom.clock, test_textroom.server, test_textroom.peers

JSON = dict[str, Any]

DEEP = 5000


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


#: Values of every wrong type (and a few wrong values of the right type) for each field.
BAD_VALUES: list[Any] = [
    0, -1, 2**70, 1.5, True, False, "", "x" * 5000, "\ud800", "device:x", [], {}, ["a", 1], {"a": [1, {"b": None}]},
    json.loads(nested(400)),
]  # fmt: skip

#: Every data-channel request with the fields it reads.
REQUESTS: dict[str, list[str]] = {
    "list": ["admin_key"],
    "exists": ["room"],
    "create": ["room", "pin", "secret", "description", "is_private", "permanent", "admin_key"],
    "join": ["room", "username", "display", "pin"],
    "message": ["room", "text", "to", "tos", "ack"],
    "announcement": ["room", "text", "secret", "admin_key"],
    "leave": ["room"],
    "kick": ["room", "username", "secret", "admin_key"],
    "destroy": ["room", "secret", "admin_key"],
    "listparticipants": ["room", "pin", "admin_key"],
}


async def test_garbage_on_a_data_channel_never_silences_it(
    server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer], caplog: pytest.LogCaptureFixture
) -> None:
    gateway, plugin = server
    agent = await connected(gateway, peers, agent=True)
    room, password = await agent_online(agent)
    attacker = await connected(gateway, peers, agent=False, remote="127.0.0.9")
    contain.failures.clear()
    caplog.set_level(logging.DEBUG)

    async def answered(request: JSON | str | bytes) -> JSON:
        assert attacker.own is not None
        attacker.own.send(request if isinstance(request, str | bytes) else json.dumps(request))
        _, reply = await attacker.recv(lambda m: "error_code" in m or m.get("textroom") == "success", timeout=5)
        return reply

    # Not JSON, or not an object: each gets an error of its own, the transaction-less kind.
    garbage: list[str | bytes] = [
        nested(DEEP),
        '{"a":' * DEEP + "1" + "}" * DEEP,
        '{"textroom":"join","room":' + nested(DEEP) + "}",
        b"\xc3\x28\xff\xfe",
        b"\x00" * 100,
        bytes(range(256)),
        "x" * 70_000,
        b"{" * 70_000,
        "1" * 5000,
        "[]",
        "null",
        '"text"',
        "{not json",
    ]
    for item in garbage:
        reply = await answered(item)
        assert reply["textroom"] == "error" and reply["error_code"] in (412, 414), (item[:20], reply)

    # A transaction of every wrong type: refused, and never echoed back.
    for value in [v for v in BAD_VALUES if not isinstance(v, str)]:
        reply = await answered({"textroom": "exists", "room": room, "transaction": value})
        assert reply["error_code"] in (413, 414) and "transaction" not in reply

    # Every field of every request with every wrong type: each request is answered, none with an internal error.
    valid = {"room": room, "username": "viewer", "display": "V", "pin": password, "text": "hi"}
    for verb, fields in REQUESTS.items():
        for field in ["textroom", *fields]:
            for value in BAD_VALUES:
                if field == "ack" and value is False:
                    continue  # a valid value that asks for no reply
                body = {**valid, "textroom": verb, field: value}
                reply = await attacker.request(body)
                assert reply.get("error_code") != 499, (verb, field, value, reply)
    assert contain.failures == {}, "an exception escaped a handler"

    # The same channel still answers, and the device is untouched.
    t = agent_transaction()
    attacker.send({"textroom": "exists", "room": room, "transaction": t})
    assert await attacker.reply(t) == {"textroom": "success", "room": room, "exists": True, "transaction": t}
    assert plugin.rooms.rooms[room].owner is not None and "device:Pixel 7" in plugin.rooms.rooms[room].participants
    assert (await agent.request({"textroom": "list"}))["textroom"] == "success"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_failing_handler_is_contained_answered_and_logged_once(
    server: tuple[Gateway, TextRoomPlugin], peers: list[DataPeer], caplog: pytest.LogCaptureFixture
) -> None:
    """A bug of ours in a request handler: the request gets a 499 with its transaction, the channel stays, and the
    log gets one short line per 10 s, without a traceback or the request's content."""
    gateway, plugin = server
    peer = await connected(gateway, peers, agent=False)
    contain.failures.clear()
    contain._last_logged.clear()

    def broken(remote: str, handle: Any, message: Any) -> None:
        raise KeyError("secret-pin-1234")

    plugin.dispatch = broken  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="apuppet.media.contain")
    for _ in range(5):
        t = agent_transaction()
        peer.send({"textroom": "list", "transaction": t})
        reply = await peer.reply(t)
        assert reply == {"textroom": "error", "error_code": 499, "error": "Internal error", "transaction": t}
    lines = [r.getMessage() for r in caplog.records if r.name == "apuppet.media.contain"]
    assert len(lines) == 1 and "KeyError" in lines[0] and "secret-pin" not in lines[0], lines
    assert not any(r.exc_info for r in caplog.records)
    assert contain.failures == {"textroom request": 5}


async def test_contained_callbacks_never_raise_into_the_emitter() -> None:
    """What aiortc sees of a failing handler, sync or async: nothing; the error answer is still sent."""
    answers: list[str] = []

    def sync_fail(data: str) -> None:
        raise RecursionError(data)

    async def async_fail(data: str) -> None:
        await asyncio.sleep(0)
        raise ValueError(data)

    contain.failures.clear()
    for callback in (sync_fail, async_fail):
        contained(callback, "test callback", on_error=lambda exc: answers.append(type(exc).__name__))("boom")
    await asyncio.sleep(0.05)
    assert answers == ["RecursionError", "ValueError"]
    assert contain.failures == {"test callback": 2}
