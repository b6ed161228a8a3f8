"""The REST transport over real sockets, including a replay of what the aPuppet Android agent sends."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp

from apuppet.server import Server

from ..api.echo import EchoPlugin
from .conftest import SECRET, make_config

JSON_HEADERS = {"Content-Type": "application/json"}


async def post(http: aiohttp.ClientSession, url: str, body: dict | bytes | str, **kw) -> dict:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    async with http.post(url, data=data, headers=kw.pop("headers", JSON_HEADERS), **kw) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json(content_type=None)


async def open_handle(http: aiohttp.ClientSession, base: str) -> tuple[int, int]:
    """A session with an echo-plugin handle, for the tests that are about what follows."""
    sid = (await post(http, base, {"janus": "create", "transaction": "t", "apisecret": SECRET}))["data"]["id"]
    attach = {"janus": "attach", "transaction": "a", "apisecret": SECRET, "plugin": "janus.plugin.echotest"}
    return sid, (await post(http, f"{base}/{sid}", attach))["data"]["id"]


async def test_android_agent_replay(echo_server: Server, http: aiohttp.ClientSession) -> None:
    """The exact request shapes of the aPuppet agent (spec §2.2-§2.4): 12-digit transactions, string ids in the
    body, apisecret in the poll query, no maxev, one JSON object per poll."""
    base = echo_server.url + "janus"
    created = await post(http, base, {"janus": "create", "transaction": "483920174652", "apisecret": SECRET})
    assert created["janus"] == "success" and created["transaction"] == "483920174652"
    sid = created["data"]["id"]
    assert isinstance(sid, int)
    attached = await post(
        http,
        f"{base}/{sid}",
        {"janus": "attach", "transaction": "100000000001", "apisecret": SECRET, "plugin": "janus.plugin.echotest"},
    )
    hid = attached["data"]["id"]
    body = {
        "janus": "message",
        "transaction": "100000000002",
        "apisecret": SECRET,
        "session_id": str(sid),
        "handle_id": str(hid),
        "body": {"request": "setup"},
    }
    assert (await post(http, f"{base}/{sid}/{hid}", body))["janus"] == "ack"
    body["transaction"] = "100000000003"
    body["body"] = {"request": "second"}
    await post(http, f"{base}/{sid}/{hid}", body)

    for expected in ("100000000002", "100000000003"):
        async with http.get(f"{base}/{sid}", params={"apisecret": SECRET}) as resp:
            assert resp.status == 200
            event = json.loads(await resp.text())
        assert isinstance(event, dict), "without maxev a poll must return one object"
        assert event["janus"] == "event" and event["transaction"] == expected
        assert event["plugindata"]["plugin"] == "janus.plugin.echotest"

    destroyed = await post(http, f"{base}/{sid}", {"janus": "destroy", "transaction": "1", "apisecret": SECRET})
    assert destroyed["janus"] == "success"
    async with http.get(f"{base}/{sid}", params={"apisecret": SECRET}) as resp:
        assert resp.status == 404


async def test_maxev_returns_array_and_idle_poll_keepalive(echo_server: Server, http: aiohttp.ClientSession) -> None:
    base = echo_server.url + "janus"
    sid, hid = await open_handle(http, base)
    for i in range(3):
        await post(
            http,
            f"{base}/{sid}/{hid}",
            {"janus": "message", "transaction": f"m{i}", "apisecret": SECRET, "body": {"i": i}},
        )
    async with http.get(f"{base}/{sid}", params={"apisecret": SECRET, "maxev": "10", "rid": "123"}) as resp:
        events = await resp.json()
    assert [e["transaction"] for e in events] == ["m0", "m1", "m2"]
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with http.get(f"{base}/{sid}", params={"apisecret": SECRET}) as resp:
        assert await resp.json() == {"janus": "keepalive"}
    assert loop.time() - start >= 0.9  # held for the poll timeout, not answered at once


async def test_poll_wakes_on_event(echo_server: Server, http: aiohttp.ClientSession) -> None:
    base = echo_server.url + "janus"
    sid, hid = await open_handle(http, base)
    echo_server.rest.poll_timeout = 20
    poll = asyncio.ensure_future(http.get(f"{base}/{sid}", params={"apisecret": SECRET}))
    await asyncio.sleep(0.2)
    await post(
        http, f"{base}/{sid}/{hid}", {"janus": "message", "transaction": "wake", "apisecret": SECRET, "body": {}}
    )
    resp = await asyncio.wait_for(poll, 5)
    assert (await resp.json())["transaction"] == "wake"
    resp.release()


async def test_secrets_errors_and_garbage(echo_server: Server, http: aiohttp.ClientSession) -> None:
    base = echo_server.url + "janus"
    viewer = await post(http, base, {"janus": "create", "transaction": "t"})  # no secret: a viewer session
    assert echo_server.gateway.sessions[viewer["data"]["id"]].trusted is False
    assert (await post(http, base, {"janus": "create", "transaction": "t", "apisecret": "x"}))["error"]["code"] == 403
    assert (await post(http, base, b"{{{garbage"))["error"]["code"] == 454
    assert (await post(http, base, b"\x00\xff" * 100))["error"]["code"] == 454
    assert (await post(http, base, {"janus": "nope", "transaction": "t", "apisecret": SECRET}))["error"]["code"] == 453
    assert (await post(http, f"{base}/123", {"janus": "keepalive", "transaction": "t", "apisecret": SECRET}))["error"][
        "code"
    ] == 458
    async with http.get(f"{base}/123", params={"apisecret": SECRET}) as resp:
        assert resp.status == 404
    sid = (await post(http, base, {"janus": "create", "transaction": "t", "apisecret": SECRET}))["data"]["id"]
    async with http.get(f"{base}/{sid}", params={"apisecret": "wrong"}) as resp:
        assert (await resp.json())["error"]["code"] == 403
    async with http.post(f"{base}/notanid", data="{}") as resp:
        assert resp.status == 404
    # Oversized request: refused, server fine.
    big = json.dumps({"janus": "create", "transaction": "t", "apisecret": SECRET, "pad": "x" * (2 << 20)})
    # As a stream with its length (aiohttp warns that raw bytes this big would block its client's loop).
    async with http.post(base, data=io.BytesIO(big.encode()), headers=JSON_HEADERS) as resp:
        assert resp.status == 413
    # Raw garbage on the TCP port, and a client that hangs up mid-request.
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
    writer.write(b"\x16\x03\x01 this is not http\r\n\r\n")
    await writer.drain()
    await reader.read(100)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
    writer.write(b'POST /janus HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"janus":')
    await writer.drain()
    writer.close()
    # ... and the server still serves a normal request.
    ok = await post(http, base, {"janus": "create", "transaction": "after", "apisecret": SECRET})
    assert ok["janus"] == "success"


async def test_cors_and_beacon_content_type(echo_server: Server, http: aiohttp.ClientSession) -> None:
    base = echo_server.url + "janus"
    headers = {
        "Origin": "https://admin.example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    async with http.options(base, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert resp.headers["Access-Control-Allow-Methods"] == "POST"
        assert resp.headers["Access-Control-Allow-Headers"] == "content-type"
        assert resp.headers["Access-Control-Max-Age"] == "86400"
    sid = (await post(http, base, {"janus": "create", "transaction": "t", "apisecret": SECRET}))["data"]["id"]
    # navigator.sendBeacon posts text/plain.
    beacon = json.dumps({"janus": "destroy", "transaction": "b", "apisecret": SECRET})
    async with http.post(f"{base}/{sid}", data=beacon, headers={"Content-Type": "text/plain;charset=UTF-8"}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert (await resp.json())["janus"] == "success"
    assert sid not in echo_server.gateway.sessions
    async with http.get(f"{base}/info") as resp:
        info = await resp.json()
        assert info["janus"] == "server_info" and "janus.plugin.echotest" in info["plugins"]


async def test_client_vanishing_mid_poll_loses_no_event(echo_server: Server, http: aiohttp.ClientSession) -> None:
    base = echo_server.url + "janus"
    sid, hid = await open_handle(http, base)
    echo_server.rest.poll_timeout = 30
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_server.port)
    writer.write(f"GET /janus/{sid}?apisecret={SECRET} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    await asyncio.sleep(1.5)  # the server notices within a second
    await post(
        http, f"{base}/{sid}/{hid}", {"janus": "message", "transaction": "kept", "apisecret": SECRET, "body": {}}
    )
    async with http.get(f"{base}/{sid}", params={"apisecret": SECRET}) as resp:
        assert (await resp.json())["transaction"] == "kept"
    session = echo_server.gateway.sessions[sid]
    assert not session._listeners


async def test_session_expiry_over_http(http: aiohttp.ClientSession) -> None:
    plugin = EchoPlugin()
    async with Server(make_config(session_timeout=0.5), plugins=[plugin], housekeeping_interval=0.1) as server:
        base = server.url + "janus"
        sid = (await post(http, base, {"janus": "create", "transaction": "t", "apisecret": SECRET}))["data"]["id"]
        await post(
            http,
            f"{base}/{sid}",
            {"janus": "attach", "transaction": "t", "apisecret": SECRET, "plugin": "janus.plugin.echotest"},
        )
        await asyncio.sleep(1.2)
        assert sid not in server.gateway.sessions and not plugin.attached
        # The next poll learns why, as from Janus; the one after finds no session.
        async with http.get(f"{base}/{sid}", params={"apisecret": SECRET}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"janus": "timeout", "session_id": sid}
        async with http.get(f"{base}/{sid}", params={"apisecret": SECRET}) as resp:
            assert resp.status == 404


async def test_many_concurrent_sessions(echo_server: Server, http: aiohttp.ClientSession) -> None:
    base = echo_server.url + "janus"
    echo_server.rest.poll_timeout = 10

    async def one(i: int) -> str:
        sid, hid = await open_handle(http, base)
        poll = asyncio.ensure_future(http.get(f"{base}/{sid}", params={"apisecret": SECRET}))
        await post(
            http,
            f"{base}/{sid}/{hid}",
            {"janus": "message", "transaction": f"m{i}", "apisecret": SECRET, "body": {"i": i}},
        )
        async with await poll as resp:
            event = await resp.json()
        await post(http, f"{base}/{sid}", {"janus": "destroy", "transaction": "d", "apisecret": SECRET})
        return event["transaction"]

    results = await asyncio.gather(*(one(i) for i in range(100)))
    assert results == [f"m{i}" for i in range(100)]
    assert not echo_server.gateway.sessions


async def test_web_routes_and_legacy_port(http: aiohttp.ClientSession) -> None:
    async with Server(make_config(api_http=True, api_http_port=0), plugins=[EchoPlugin()]) as server:
        assert len(server.ports) == 2
        async with http.get(server.url + "?session=12345678&pin=Ab3d", allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "/web-admin/?session=12345678&pin=Ab3d"
        for port in server.ports.values():
            async with http.post(f"http://127.0.0.1:{port}/janus", json={"janus": "ping", "transaction": "p"}) as r:
                assert (await r.json())["janus"] == "pong"
