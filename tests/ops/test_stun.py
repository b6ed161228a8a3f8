"""The STUN client against a real responder over loopback UDP, and its codec against malformed input."""

from __future__ import annotations

import socket

import pytest
from aioice import stun as aioice_stun

from apuppet.ops import stun

from .responder import StunResponder


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("stun:stun.example.org", stun.StunServer("stun.example.org", 3478)),
        ("stun:stun.example.org:19302", stun.StunServer("stun.example.org", 19302)),
        ("stun:[2001:db8::1]:3479", stun.StunServer("2001:db8::1", 3479)),
        ("stuns:stun.example.org", stun.StunServer("stun.example.org", 5349, secure=True)),
    ],
)
def test_parse_url(url: str, expected: stun.StunServer) -> None:
    assert stun.parse_url(url) == expected
    assert stun.parse_url(str(expected)) == expected


@pytest.mark.parametrize("url", ["", "turn:x", "stun:", "stun:host:0", "stun:host:http", "stun:[::1", "stun:[::1]x"])
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(stun.StunError):
        stun.parse_url(url)


def test_codec_round_trip() -> None:
    request, tid = stun.binding_request()
    reply = stun.binding_response(request, ("203.0.113.7", 40000))
    assert reply is not None
    assert stun.mapped_address(reply, tid) == ("203.0.113.7", 40000)
    # Somebody else's transaction, garbage and a request are not the answer.
    _, other = stun.binding_request()
    assert stun.mapped_address(reply, other) is None
    assert stun.mapped_address(b"\x00" * 7, tid) is None
    assert stun.mapped_address(request, tid) is None
    assert stun.binding_response(b"not stun", ("1.2.3.4", 1)) is None
    assert stun.binding_response(reply, ("1.2.3.4", 1)) is None


def test_error_response_is_reported() -> None:
    request, tid = stun.binding_request()
    error = aioice_stun.Message(
        message_method=aioice_stun.Method.BINDING,
        message_class=aioice_stun.Class.ERROR,
        transaction_id=tid,
        attributes={"ERROR-CODE": (400, "Bad Request")},
    )
    with pytest.raises(stun.StunError, match="400 Bad Request"):
        stun.mapped_address(bytes(error), tid)


def test_query_real_responder() -> None:
    with StunResponder() as responder:
        host, port = stun.query(stun.parse_url(responder.url), timeout=10)
    assert host == "127.0.0.1" and port > 0


def test_query_ignores_strays_then_times_out() -> None:
    with StunResponder(silent=True) as responder:
        with pytest.raises(stun.StunError, match="no answer"):
            stun.query(stun.parse_url(responder.url), timeout=0.6, attempts=3)
        # Retransmitted: UDP may drop a request.
        assert responder.requests >= 2


def test_query_nobody_listening() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Closed port: Linux reports ICMP port unreachable, or the wait times out; either way a StunError.
    with pytest.raises(stun.StunError):
        stun.query(stun.StunServer("127.0.0.1", port), timeout=0.6)


def test_query_unresolvable() -> None:
    with pytest.raises(stun.StunError, match="cannot resolve"):
        stun.query(stun.StunServer("does-not-exist.invalid", 3478), timeout=1)
