"""Attacks on a real server over loopback: hostile input, resource exhaustion from one address, leaked session
ids, idle and slow connections. Each test is the outside reviewer's reproduction, turned into an assertion."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import aiohttp
import pytest

import apuppet
from apuppet.api.idtag import tag
from apuppet.server import Server
from apuppet.server import http as http_transport

from ..api.echo import EchoPlugin
from .conftest import SECRET, make_config

OTHER = "127.0.0.2"  # a second client address, still loopback


def client_from(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), force_close=True))


async def post(http: aiohttp.ClientSession, url: str, body: object) -> tuple[int, dict]:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    async with http.post(url, data=data) as resp:
        return resp.status, await resp.json(content_type=None)


async def raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(65536), timeout)
    finally:
        writer.close()


def assert_quiet_log(caplog: pytest.LogCaptureFixture, max_lines: int) -> None:
    """No traceback at all, and only a few short lines."""
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in records if r.exc_info], caplog.text
    assert len(records) <= max_lines, caplog.text
    assert all(len(r.getMessage()) < 300 for r in records)


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    overrides = getattr(request, "param", {})
    srv = Server(make_config(**overrides), plugins=[EchoPlugin()], housekeeping_interval=0.1)
    srv.rest.poll_timeout = 1.0
    await srv.start()
    yield srv
    await srv.stop()


# -- 1. hostile input ---------------------------------------------------------------------------------------------
async def test_hostile_http_input_gets_4xx_and_one_short_line(
    server: Server, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    base = server.url + "janus"
    # JSON nested thousands of levels deep: was a RecursionError and a 500.
    for deep in ("[" * 5000, '{"a":' * 5000, "[" * 5000 + "]" * 5000):
        status, reply = await post(http, base, deep)
        assert status == 200 and reply["error"]["code"] == 454
    # Non-ASCII digits in ids ('²'.isdigit() is True, int('²') raises): were 500s.
    async with http.get(base + "/%C2%B2") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == 458
    async with http.post(base + "/%C2%B2", json={"janus": "keepalive", "transaction": "t"}) as resp:
        assert resp.status == 404
    for body_id in ("²", "١٢٣", "9" * 30, -5, 2**64):
        status, reply = await post(http, base, {"janus": "keepalive", "transaction": "t", "session_id": body_id})
        assert status == 200 and reply["error"]["code"] in (457, 458)
    # Bodies in a Content-Encoding the server does not decompress: an error reply, no traceback.
    for encoding, body in (("gzip", b"\x1f\x8bgarbage"), ("deflate", b"garbage"), ("br", b"\xffgarbage")):
        headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
        async with http.post(base, data=body, headers=headers) as resp:
            assert resp.status < 500 and (await resp.json())["error"]["code"] == 454
    gz = zlib.compress(b'{"janus":"ping","transaction":"p"}')
    async with http.post(base, data=gz, headers={"Content-Encoding": "deflate"}) as resp:
        assert resp.status == 200 and (await resp.json())["error"]["code"] == 454
    # The server still serves.
    status, reply = await post(http, base, {"janus": "ping", "transaction": "p"})
    assert reply == {"janus": "pong", "transaction": "p"}
    assert_quiet_log(caplog, max_lines=3)


async def test_malformed_http_is_one_short_line_not_a_traceback(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp logs a traceback at ERROR for each malformed request; repeated, that fills the disk."""
    caplog.set_level(logging.INFO)
    malformed = (
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
        b"POST /janus HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /janus HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /web-admin/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    for _ in range(5):
        for request in malformed:
            assert (await raw(server.port, request)).startswith(b"HTTP/1.0 400")
    assert_quiet_log(caplog, max_lines=len(malformed))
    assert "malformed HTTP request from 127.0.0.1" in caplog.text


async def test_bodies_that_lie_about_their_length_are_answered_at_once(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunk size of 2^64-1 (aiohttp waits for the chunk and does not tell its size) or a `Content-Length` above
    what was sent: a stalled body is answered 408 after `BODY_STALL`, not after the whole `http_body_timeout`
    (30 s here), and a declared length above `max_request_bytes` 413 before any of it is read."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(http_transport, "BODY_STALL", 0.5)
    assert server.config.http_body_timeout == 30
    body = b'{"janus":"ping","transaction":"p"}'
    head = b"POST /janus HTTP/1.1\r\nHost: x\r\n"
    stalled = (
        head + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n" + body + b"\r\n0\r\n\r\n",
        head + b"Content-Length: %d\r\n\r\n" % (len(body) + 10) + body,
    )
    for request in stalled:
        started = time.monotonic()
        reply = await raw(server.port, request, timeout=10)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert b"Request body too slow" in reply
        assert 0.4 < time.monotonic() - started < 3
    declared = server.config.max_request_bytes + 1
    started = time.monotonic()
    reply = await raw(server.port, head + b"Content-Length: %d\r\n\r\n{" % declared, timeout=10)
    assert reply.startswith(b"HTTP/1.1 413") and b"Request too large" in reply, reply[:100]
    assert time.monotonic() - started < 0.4
    # A body sent in pieces with pauses shorter than the stall arrives whole.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 8):
        await asyncio.sleep(0.2)
        writer.write(body[i : i + 8])
    try:
        reply = await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
    assert reply.startswith(b"HTTP/1.1 200") and b'"pong"' in reply
    assert_quiet_log(caplog, max_lines=0)


async def test_metrics_with_a_non_utf8_authorization_header(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xc3\r\nConnection: close\r\n\r\n"
    statuses = [(await raw(server.port, request)).split(b" ", 2)[1] for _ in range(8)]
    # Counted by the throttle like any wrong secret: 401 for the first few, then 429.
    assert statuses[0] == b"401" and statuses[-1] == b"429", statuses
    assert_quiet_log(caplog, max_lines=1)


async def test_backstop_answers_an_unforeseen_error_with_one_line(
    server: Server, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug a client can trigger (here: a plugin that raises on trickle) is a Janus error and one log line per
    address and minute, however often it is triggered."""
    caplog.set_level(logging.INFO)
    base = server.url + "janus"
    _, created = await post(http, base, {"janus": "create", "transaction": "t", "apisecret": SECRET})
    sid = created["data"]["id"]
    _, attached = await post(
        http,
        f"{base}/{sid}",
        {"janus": "attach", "transaction": "a", "apisecret": SECRET, "plugin": "janus.plugin.echotest"},
    )
    hid = attached["data"]["id"]

    def broken(handle: object, candidates: object) -> None:
        raise KeyError("plugin bug")

    server.gateway.plugins["janus.plugin.echotest"].trickle = broken  # type: ignore[method-assign]
    trickle = {"janus": "trickle", "transaction": "t", "apisecret": SECRET, "candidate": {"completed": True}}
    for _ in range(30):
        status, reply = await post(http, f"{base}/{sid}/{hid}", trickle)
        assert status == 200 and reply["error"]["code"] == 490
    assert len([r for r in caplog.records if "KeyError" in r.getMessage()]) == 1
    # A plugin that raises on a message: Janus error 462, one short line.
    crash = {"janus": "message", "transaction": "m", "apisecret": SECRET, "body": {"crash": True}}
    for _ in range(10):
        status, reply = await post(http, f"{base}/{sid}/{hid}", crash)
        assert status == 200 and reply["error"]["code"] == 462
    assert len([r for r in caplog.records if "RuntimeError" in r.getMessage()]) == 1
    # Outside the Janus core (a transport's own code), the server's middleware does the same.
    server.gateway.info = broken  # type: ignore[assignment,method-assign]
    for _ in range(10):
        async with http.get(base + "/info") as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == 490
    assert len([r for r in caplog.records if "GET /janus/info" in r.getMessage()]) == 1
    assert_quiet_log(caplog, max_lines=4)


async def test_hostile_websocket_frames(
    server: Server, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = server.url + "janus"
    async with http.ws_connect(url, protocols=("janus-protocol",)) as ws:
        for frame in ("[" * 5000, '{"janus":"keepalive","transaction":"t","session_id":"²"}', '"\\ud800"'):
            await ws.send_str(frame)
            reply = json.loads((await ws.receive(timeout=5)).data)
            assert reply["janus"] == "error" and reply["error"]["code"] in (454, 455, 457), reply
        await ws.send_bytes(b"\xff\x00")
        assert json.loads((await ws.receive(timeout=5)).data)["error"]["code"] == 454
        # The connection keeps serving.
        await ws.send_str(json.dumps({"janus": "ping", "transaction": "p"}))
        assert json.loads((await ws.receive(timeout=5)).data)["janus"] == "pong"
    # A frame over the size limit, or text that is not UTF-8, ends only its own connection (close codes 1009
    # and 1007, as RFC 6455 wants).
    for frame, code in ((b"x" * (server.config.max_request_bytes + 10), 1009), (b'{"janus":"\xff\xfe"}', 1007)):
        async with http.ws_connect(url, protocols=("janus-protocol",)) as ws:
            await ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == code
    async with http.ws_connect(url, protocols=("janus-protocol",)) as ws:
        await ws.send_str(json.dumps({"janus": "ping", "transaction": "p"}))
        assert json.loads((await ws.receive(timeout=5)).data)["janus"] == "pong"
    assert_quiet_log(caplog, max_lines=2)


# -- 2. the timeout event over HTTP -------------------------------------------------------------------------------
@pytest.mark.parametrize("server", [{"session_timeout": 0.3}], indirect=True)
async def test_long_poll_client_gets_the_timeout_event(server: Server, http: aiohttp.ClientSession) -> None:
    base = server.url + "janus"
    _, created = await post(http, base, {"janus": "create", "transaction": "t", "apisecret": SECRET})
    sid = created["data"]["id"]
    await asyncio.sleep(0.8)
    assert sid not in server.gateway.sessions
    async with http.get(f"{base}/{sid}", params={"apisecret": SECRET, "maxev": "5"}) as resp:
        assert resp.status == 200 and await resp.json() == [{"janus": "timeout", "session_id": sid}]
    async with http.get(f"{base}/{sid}", params={"apisecret": SECRET}) as resp:
        assert resp.status == 404


# -- 4. a wrong secret from an address does not lock out the right one -------------------------------------------
async def test_wrong_secrets_do_not_lock_out_the_right_one(server: Server, http: aiohttp.ClientSession) -> None:
    base = server.url + "janus"
    for _ in range(12):
        _, reply = await post(http, base, {"janus": "create", "transaction": "t", "apisecret": "misconfigured"})
        assert reply["error"]["code"] == 403
    assert "retry" in reply["error"]["reason"]
    status, reply = await post(http, base, {"janus": "create", "transaction": "t", "apisecret": SECRET})
    assert status == 200 and reply["janus"] == "success"
    sid = reply["data"]["id"]
    async with http.get(f"{base}/{sid}", params={"apisecret": SECRET}) as resp:
        assert resp.status == 200
    metrics = server.url + "metrics"
    for _ in range(12):
        async with http.get(metrics, headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status in (401, 429)
    assert resp.status == 429
    # The admin secret is the exception: while the address is blocked even the right one gets 429 (not
    # compared, so a 429 tells a guesser nothing), and passes once the delay is over.
    right = {"Authorization": "Bearer admin-secret-for-tests"}
    async with http.get(metrics, headers=right) as resp:
        assert resp.status == 429
    deadline = time.monotonic() + 30
    while server.admin_throttle.blocked_for("127.0.0.1") > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    async with http.get(metrics, headers=right) as resp:
        assert resp.status == 200


# -- 5. per-address and per-session limits ------------------------------------------------------------------------
LIMITS = {
    "limit_viewer_session_burst": 10,
    "limit_viewer_sessions_per_second": 1.0,
    "limit_viewer_sessions_per_address": 15,
    "limit_sessions_per_address": 20,
    "limit_handles_per_session": 3,
    "limit_polls_per_session": 1,
    "limit_polls_per_address": 2,
    "limit_websockets_per_address": 2,
}


@pytest.mark.parametrize("server", [LIMITS], indirect=True)
async def test_viewer_session_flood_is_capped(
    server: Server, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    base = server.url + "janus"
    started = time.monotonic()
    statuses = []
    for _ in range(200):
        async with http.post(base, json={"janus": "create", "transaction": "t"}) as resp:
            statuses.append(resp.status)
            reply = await resp.json()
    assert statuses.count(200) <= 10 + int(time.monotonic() - started) + 1
    assert statuses[-1] == 429 and reply["error"]["code"] == 429 and "viewer_session_rate" in reply["error"]["reason"]
    # Another address is not affected.
    async with client_from(OTHER) as other:
        status, reply = await post(other, base, {"janus": "create", "transaction": "t"})
        assert status == 200 and reply["janus"] == "success"
    # The log holds a few lines per address and event, not one per request.
    assert len([r for r in caplog.records if "session_created" in r.getMessage()]) <= 21
    assert len([r for r in caplog.records if "limit_reached" in r.getMessage()]) <= 20


@pytest.mark.parametrize("server", [LIMITS], indirect=True)
async def test_sessions_handles_and_polls_are_capped(server: Server, http: aiohttp.ClientSession) -> None:
    base = server.url + "janus"
    create = {"janus": "create", "transaction": "t", "apisecret": SECRET}
    sids = []
    for _ in range(20):
        status, reply = await post(http, base, create)
        assert status == 200
        sids.append(reply["data"]["id"])
    status, reply = await post(http, base, create)
    assert status == 429 and "sessions_per_address" in reply["error"]["reason"]
    async with client_from(OTHER) as other:
        assert (await post(other, base, create))[0] == 200
    # Destroying one frees its place.
    await post(http, f"{base}/{sids.pop()}", {"janus": "destroy", "transaction": "d", "apisecret": SECRET})
    assert (await post(http, base, create))[0] == 200

    attach = {"janus": "attach", "transaction": "a", "apisecret": SECRET, "plugin": "janus.plugin.echotest"}
    for _ in range(3):
        assert (await post(http, f"{base}/{sids[0]}", attach))[0] == 200
    status, reply = await post(http, f"{base}/{sids[0]}", attach)
    assert status == 429 and "handles_per_session" in reply["error"]["reason"]

    poll = {"apisecret": SECRET}
    server.rest.poll_timeout = 3.0
    async with client_from("127.0.0.1") as second, client_from("127.0.0.1") as third:
        first = asyncio.ensure_future(http.get(f"{base}/{sids[0]}", params=poll))
        await asyncio.sleep(0.3)
        async with second.get(f"{base}/{sids[0]}", params=poll) as resp:
            assert resp.status == 429 and "polls_per_session" in (await resp.json())["error"]["reason"]
        other_session = asyncio.ensure_future(second.get(f"{base}/{sids[1]}", params=poll))
        await asyncio.sleep(0.3)
        async with third.get(f"{base}/{sids[2]}", params=poll) as resp:
            assert resp.status == 429 and "polls_per_address" in (await resp.json())["error"]["reason"]
        for task in (first, other_session):
            async with await task as resp:
                assert resp.status == 200
    # Over: the places are free again.
    server.rest.poll_timeout = 0.2
    async with http.get(f"{base}/{sids[2]}", params=poll) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("server", [LIMITS], indirect=True)
async def test_websockets_per_address_are_capped(server: Server, http: aiohttp.ClientSession) -> None:
    url = server.url + "janus"
    first = await http.ws_connect(url, protocols=("janus-protocol",))
    second = await http.ws_connect(url, protocols=("janus-protocol",))
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url, protocols=("janus-protocol",))
    assert refused.value.status == 429
    async with client_from(OTHER) as other, other.ws_connect(url, protocols=("janus-protocol",)) as ws:
        await ws.send_str(json.dumps({"janus": "ping", "transaction": "p"}))
        assert json.loads((await ws.receive(timeout=5)).data)["janus"] == "pong"
    await first.close()
    await asyncio.sleep(0.1)
    third = await http.ws_connect(url, protocols=("janus-protocol",))
    for ws in (second, third):
        await ws.close()


@pytest.mark.parametrize("server", [{"limit_connections_per_address": 3}], indirect=True)
async def test_connections_per_address_are_capped(server: Server) -> None:
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    await asyncio.sleep(0.1)
    refused = await raw(server.port, b"GET /janus/info HTTP/1.1\r\nHost: x\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 429")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=(OTHER, 0))
    writer.write(b"GET /janus/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(65536), 5)).startswith(b"HTTP/1.1 200")
    writer.close()
    for _, w in held:
        w.close()
    await asyncio.sleep(0.2)
    assert (await raw(server.port, b"GET /janus/info HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200")


# -- 6. session ids are bearer tokens ----------------------------------------------------------------------------
async def test_ids_are_logged_as_tags_only(
    server: Server, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base = server.url + "janus"
    _, created = await post(http, base, {"janus": "create", "transaction": "t"})
    sid = created["data"]["id"]
    _, attached = await post(
        http, f"{base}/{sid}", {"janus": "attach", "transaction": "a", "plugin": "janus.plugin.echotest"}
    )
    hid = attached["data"]["id"]
    server.gateway._observe("viewer_watching", {"mountpoint": "1", "handle": hid, "remote": "127.0.0.1"})
    await post(http, f"{base}/{sid}", {"janus": "destroy", "transaction": "d"})
    assert str(sid) not in caplog.text and str(hid) not in caplog.text
    assert f"session={tag(sid)}" in caplog.text and f"handle={tag(hid)}" in caplog.text
    assert len(tag(sid)) == 8 and tag(sid) != tag(sid + 1)


async def test_viewer_session_is_bound_to_its_address(server: Server, http: aiohttp.ClientSession) -> None:
    base = server.url + "janus"
    _, created = await post(http, base, {"janus": "create", "transaction": "t"})
    sid = created["data"]["id"]
    _, attached = await post(
        http, f"{base}/{sid}", {"janus": "attach", "transaction": "a", "plugin": "janus.plugin.echotest"}
    )
    hid = attached["data"]["id"]
    async with client_from(OTHER) as thief:
        for path, body in (
            (f"{base}/{sid}", {"janus": "keepalive", "transaction": "k"}),
            (f"{base}/{sid}", {"janus": "attach", "transaction": "a", "plugin": "janus.plugin.echotest"}),
            (f"{base}/{sid}/{hid}", {"janus": "hangup", "transaction": "h"}),
            (f"{base}/{sid}", {"janus": "destroy", "transaction": "d"}),
            (base, {"janus": "destroy", "transaction": "d", "session_id": sid}),
        ):
            _, reply = await post(thief, path, body)
            assert reply["error"]["code"] == 458, (body, reply)
        async with thief.get(f"{base}/{sid}") as resp:
            assert resp.status == 404
        # A trusted session (made with the secret) stays usable from anywhere: agents roam.
        _, trusted = await post(http, base, {"janus": "create", "transaction": "t", "apisecret": SECRET})
        tsid = trusted["data"]["id"]
        _, reply = await post(thief, f"{base}/{tsid}", {"janus": "keepalive", "transaction": "k", "apisecret": SECRET})
        assert reply["janus"] == "ack"
    assert sid in server.gateway.sessions and not server.gateway.plugins["janus.plugin.echotest"].hangups
    _, reply = await post(http, f"{base}/{sid}", {"janus": "keepalive", "transaction": "k"})
    assert reply["janus"] == "ack"


async def test_viewer_session_is_bound_to_its_websocket(server: Server, http: aiohttp.ClientSession) -> None:
    url = server.url + "janus"
    async with http.ws_connect(url, protocols=("janus-protocol",)) as owner:
        await owner.send_str(json.dumps({"janus": "create", "transaction": "t"}))
        sid = json.loads((await owner.receive(timeout=5)).data)["data"]["id"]
        async with http.ws_connect(url, protocols=("janus-protocol",)) as other:
            for verb in ("keepalive", "claim", "destroy"):
                await other.send_str(json.dumps({"janus": verb, "transaction": "x", "session_id": sid}))
                assert json.loads((await other.receive(timeout=5)).data)["error"]["code"] == 458
        # The same address over HTTP is another transport too.
        _, reply = await post(http, f"{url}/{sid}", {"janus": "keepalive", "transaction": "k"})
        assert reply["error"]["code"] == 458
        await owner.send_str(json.dumps({"janus": "keepalive", "transaction": "k", "session_id": sid}))
        assert json.loads((await owner.receive(timeout=5)).data)["janus"] == "ack"
        # A session with an open WebSocket is not idle, however quiet (plugins' reclaim relies on it).
        server.gateway.clock = lambda: time.monotonic() + 3600
        assert server.gateway.idle_for(sid) == 0.0


# -- 7. idle and slow connections ---------------------------------------------------------------------------------
TIMEOUTS = {"http_idle_timeout": 1.0, "http_header_timeout": 1.0, "http_body_timeout": 1.0}


@pytest.mark.parametrize("server", [TIMEOUTS], indirect=True)
async def test_idle_and_slow_connections_are_closed(server: Server, http: aiohttp.ClientSession) -> None:
    async def read_all(reader: asyncio.StreamReader) -> bytes:
        """What the server sent before it closed the connection (a reset counts as closed)."""
        try:
            return await asyncio.wait_for(reader.read(), 6)
        except ConnectionError:
            return b""

    async def idle() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            return await read_all(reader)
        finally:
            writer.close()

    async def dribble(head: bytes, piece: bytes) -> bytes:
        """A request that starts with `head` and then sends `piece` every 0.15 s for 6 s, far past the timeouts."""
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head)
        try:
            for i in range(40):
                writer.write(piece % i if b"%d" in piece else piece)
                await writer.drain()
                await asyncio.sleep(0.15)
        except ConnectionError:
            pass
        try:
            return await read_all(reader)
        finally:
            writer.close()

    def slow_head() -> Awaitable[bytes]:
        return dribble(b"GET /janus/info HTTP/1.1\r\nHost: x\r\n", b"X-Slow-%d: 1\r\n")

    def slow_body() -> Awaitable[bytes]:
        return dribble(b"POST /janus HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{", b" ")

    async def keep_alive_after_request() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /janus/info HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            return await read_all(reader)
        finally:
            writer.close()

    started = time.monotonic()
    results = await asyncio.gather(idle(), slow_head(), slow_body(), keep_alive_after_request())
    # Each ended well before the 6 s a still-open connection would take to fail the test.
    assert time.monotonic() - started < 5
    assert results[0] == b""  # closed by the server (a TimeoutError would have failed the gather)
    assert results[2] == b"" or b"408" in results[2].split(b"\r\n", 1)[0]
    assert results[3].startswith(b"HTTP/1.1 200")
    assert not server.guard.conns
    headers = {"Authorization": "Bearer admin-secret-for-tests"}
    async with http.get(server.url + "metrics", headers=headers) as resp:
        text = await resp.text()
    assert 'apuppet_connections_closed_total{reason="slow_head"} 1' in text
    # A long poll outlasting the idle timeout is a request being handled, not an idle connection.
    server.rest.poll_timeout = 2.0
    _, created = await post(http, server.url + "janus", {"janus": "create", "transaction": "t", "apisecret": SECRET})
    async with http.get(f"{server.url}janus/{created['data']['id']}", params={"apisecret": SECRET}) as resp:
        assert resp.status == 200 and (await resp.json()) == {"janus": "keepalive"}


def test_no_log_call_passes_a_raw_id() -> None:
    """Every log call in the server passes session and handle ids through `tag()`: a raw `x.id`,
    `session_id` or `handle_id` argument to a logger is a bearer token in the log file."""
    root = Path(apuppet.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if "agent" in path.relative_to(root).parts:
            continue  # the agent logs its own ids on the phone, not on the server
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in {"debug", "info", "warning", "error", "exception", "critical", "log"}:
                continue
            if not (isinstance(node.func.value, ast.Name) and node.func.value.id in {"log", "logger", "logging"}):
                continue
            for arg in node.args[1:]:
                raw = (isinstance(arg, ast.Attribute) and arg.attr == "id") or (
                    isinstance(arg, ast.Name) and arg.id in {"session_id", "handle_id", "sid", "hid"}
                )
                if raw:
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders


async def test_storm_leftovers_are_answered_quietly(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """What bench/storm.py still found in the log: a WebSocket handshake whose Upgrade header is not UTF-8, and a
    client that hangs up in the middle of its body. Each is the client's doing: an answer (or nothing, for a
    client that is gone), and no warning."""
    caplog.set_level(logging.INFO)
    reply = await raw(
        server.port,
        b"GET /janus HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: web\xff\xfesocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Protocol: janus-protocol\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 4"), reply[:80]
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b'POST /janus HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"janus":')
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()  # a reset mid-body
    await asyncio.sleep(0.3)
    async with aiohttp.ClientSession() as http:
        status, answer = await post(http, server.url + "janus", {"janus": "ping", "transaction": "p"})
        assert status == 200 and answer["janus"] == "pong"
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not noisy, caplog.text
