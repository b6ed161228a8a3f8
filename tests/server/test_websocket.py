"""The WebSocket transport over real sockets: subprotocol, ids in messages, pushed events, cleanup on close."""

from __future__ import annotations

import asyncio

import aiohttp

from apuppet.server import Server

from .conftest import SECRET


async def ws_request(ws: aiohttp.ClientWebSocketResponse, **msg) -> dict:
    await ws.send_json({"apisecret": SECRET, **msg})
    return await asyncio.wait_for(ws.receive_json(), 5)


async def test_websocket_session_flow(echo_server: Server, http: aiohttp.ClientSession) -> None:
    plugin = echo_server.plugins[0]
    url = echo_server.url.replace("http", "ws") + "janus"
    async with http.ws_connect(url, protocols=("janus-protocol",)) as ws:
        assert ws.protocol == "janus-protocol"
        sid = (await ws_request(ws, janus="create", transaction="c"))["data"]["id"]
        attach = await ws_request(ws, janus="attach", transaction="a", session_id=sid, plugin="janus.plugin.echotest")
        hid = attach["data"]["id"]
        ack = await ws_request(ws, janus="message", transaction="m", session_id=sid, handle_id=hid, body={"hi": 1})
        assert ack["janus"] == "ack"
        event = await asyncio.wait_for(ws.receive_json(), 5)  # pushed, no polling
        assert event["janus"] == "event" and event["transaction"] == "m" and event["sender"] == hid
        assert (await ws_request(ws, janus="keepalive", transaction="k", session_id=sid))["janus"] == "ack"
        await ws.send_str("not json at all")
        assert (await asyncio.wait_for(ws.receive_json(), 5))["error"]["code"] == 454
        await ws.send_bytes(b"\x00\x01")
        assert (await asyncio.wait_for(ws.receive_json(), 5))["error"]["code"] == 454
        assert (await ws_request(ws, janus="create", transaction="x", apisecret="bad"))["error"]["code"] == 403
        assert hid in plugin.attached
    # Closing the socket destroys its sessions and detaches their handles, as Janus does.
    for _ in range(50):
        if sid not in echo_server.gateway.sessions:
            break
        await asyncio.sleep(0.05)
    assert sid not in echo_server.gateway.sessions
    assert hid in plugin.detached and not echo_server.websocket.connections


async def test_plain_get_on_janus_is_refused(echo_server: Server, http: aiohttp.ClientSession) -> None:
    async with http.get(echo_server.url + "janus") as resp:
        assert resp.status == 405
        assert (await resp.json())["janus"] == "error"


async def test_many_websocket_clients(echo_server: Server, http: aiohttp.ClientSession) -> None:
    url = echo_server.url.replace("http", "ws") + "janus"

    async def client(i: int) -> None:
        async with http.ws_connect(url, protocols=("janus-protocol",)) as ws:
            sid = (await ws_request(ws, janus="create", transaction=f"c{i}"))["data"]["id"]
            hid = (
                await ws_request(ws, janus="attach", transaction="a", session_id=sid, plugin="janus.plugin.echotest")
            )["data"]["id"]
            await ws_request(ws, janus="message", transaction=f"m{i}", session_id=sid, handle_id=hid, body={})
            event = await asyncio.wait_for(ws.receive_json(), 5)
            assert event["transaction"] == f"m{i}"

    await asyncio.gather(*(client(i) for i in range(50)))
    for _ in range(50):
        if not echo_server.gateway.sessions:
            break
        await asyncio.sleep(0.05)
    assert not echo_server.gateway.sessions
