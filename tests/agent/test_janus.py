"""The agent's Janus REST client against the real server: wire shape, errors, and noticing a lost session."""

import asyncio
import contextlib
import json

import aiohttp
import pytest
from aiohttp import web

from apuppet.agent.janus import MAX_QUEUED_EVENTS, JanusClient, JanusReplyError, SessionLost, api_url, transaction
from apuppet.server import Server

from .conftest import SECRET, free_port, server_config


def test_api_url_drops_the_path_like_the_android_agent():
    assert api_url("https://srv.example.org/web-admin/") == "https://srv.example.org/janus"
    assert api_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/janus"
    assert api_url("http://[::1]:8080/x/") == "http://[::1]:8080/janus"
    for bad in ("ftp://x/", "srv.example.org", "http:///path"):
        with pytest.raises(ValueError):
            api_url(bad)


def test_transaction_is_twelve_digits():
    txns = {transaction() for _ in range(100)}
    assert len(txns) == 100 and all(len(t) == 12 and t.isdigit() for t in txns)


async def test_session_handles_and_events(server: Server):
    async with aiohttp.ClientSession() as http:
        client = JanusClient(http, server.url, SECRET)
        sid = await client.create()
        assert sid in server.gateway.sessions
        handle = await client.attach("janus.plugin.textroom")
        assert (await client.message(handle, {"request": "setup"}))["janus"] == "ack"
        event = await client.event(handle, lambda e: "jsep" in e)
        assert event["jsep"]["type"] == "offer"
        with pytest.raises(JanusReplyError):
            await client.attach("janus.plugin.nope")
        await client.close()
        assert sid not in server.gateway.sessions


async def test_wrong_secret_is_a_janus_error(server: Server):
    async with aiohttp.ClientSession() as http:
        client = JanusClient(http, server.url, "wrong")
        with pytest.raises(JanusReplyError) as info:
            await client.create()
        assert info.value.code == 403


async def test_lost_session_is_noticed_on_the_poll():
    port = free_port()
    srv = Server(server_config(port))
    await srv.start()
    async with aiohttp.ClientSession() as http:
        client = JanusClient(http, srv.url, SECRET, poll_retry=0.1)
        await client.create()
        await srv.stop()
        srv = Server(server_config(port))
        await srv.start()
        try:
            async with asyncio.timeout(5):
                await client.lost.wait()
            with pytest.raises(SessionLost):
                await client.attach("janus.plugin.textroom")
        finally:
            await client.close()
            await srv.stop()


async def test_unreachable_server_is_lost_after_a_while():
    port = free_port()
    srv = Server(server_config(port))
    await srv.start()
    async with aiohttp.ClientSession() as http:
        client = JanusClient(http, srv.url, SECRET, poll_retry=0.05, lost_after=0.5)
        await client.create()
        await srv.stop()
        async with asyncio.timeout(5):
            await client.lost.wait()
        await client.close()


async def test_request_bodies_are_json_built_and_carry_string_ids():
    """Against a recording stand-in for the HTTP endpoint: checks the exact bytes the agent sends."""
    seen: list[dict] = []

    async def janus(request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        seen.append({"path": request.path, **body})
        if body["janus"] == "create":
            return web.json_response({"janus": "success", "transaction": body["transaction"], "data": {"id": 7}})
        if body["janus"] == "attach":
            return web.json_response({"janus": "success", "transaction": body["transaction"], "data": {"id": 9}})
        return web.json_response({"janus": "ack", "transaction": body["transaction"]})

    finished = asyncio.Event()

    async def poll(request: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await finished.wait()
        return web.json_response({"janus": "keepalive"})

    app = web.Application()
    app.router.add_post("/janus", janus)
    app.router.add_post("/janus/{s}", janus)
    app.router.add_post("/janus/{s}/{h}", janus)
    app.router.add_get("/janus/{s}", poll)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            client = JanusClient(http, f"http://127.0.0.1:{port}/web-admin/", 'se"cr\\et')
            await client.create()
            await client.attach("janus.plugin.textroom")
            await client.message(9, {"textroom": "join", "username": 'device:"evil",x'})
            await client.close(destroy=False)
    finally:
        finished.set()
        await runner.cleanup()
    assert [s["path"] for s in seen] == ["/janus", "/janus/7", "/janus/7/9"]
    assert all(s["apisecret"] == 'se"cr\\et' for s in seen)
    assert seen[2]["session_id"] == "7" and seen[2]["handle_id"] == "9"
    assert seen[2]["body"]["username"] == 'device:"evil",x'


async def test_events_are_routed_by_sender_and_bounded():
    async with aiohttp.ClientSession() as http:
        client = JanusClient(http, "http://127.0.0.1:9/", SECRET)
        client._queues[5] = asyncio.Queue(MAX_QUEUED_EVENTS)
        seen = []
        client.on_event = seen.append
        for i in range(MAX_QUEUED_EVENTS + 50):
            client._dispatch({"janus": "event", "sender": 5, "n": i})
        client._dispatch({"janus": "event", "sender": 6, "n": -1})  # unknown handle: dropped
        client._dispatch({"janus": "keepalive"})
        assert client.events(5).qsize() == MAX_QUEUED_EVENTS
        assert (await client.event(5, timeout=1))["n"] == 50
        assert len(seen) == MAX_QUEUED_EVENTS + 51
