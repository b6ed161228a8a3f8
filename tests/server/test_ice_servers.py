"""The real server hands a viewer's `create` (HTTP and WebSocket) the ICE servers with minted TURN credentials;
debug logs of the whole exchange never hold the credential."""

from __future__ import annotations

import logging
import time

import aiohttp
import pytest

from apuppet.api.iceservers import expiry
from apuppet.server import Server

from ..api.echo import EchoPlugin
from .conftest import make_config


async def test_viewer_sessions_get_turn_credentials_over_http_and_websocket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config(
        log_level="debug",
        turn_secret="shared-with-coturn",
        turn_ttl=900,
        turn_servers=[{"url": "turn:198.18.0.1:3478?transport=tcp"}],
    )
    server = Server(config, plugins=[EchoPlugin()])
    await server.start()
    try:
        with caplog.at_level(logging.DEBUG):
            async with aiohttp.ClientSession() as http:
                async with http.post(server.url + "janus", json={"janus": "create", "transaction": "a"}) as r:
                    over_http = await r.json()
                async with http.ws_connect(server.url + "janus", protocols=["janus-protocol"]) as ws:
                    await ws.send_json({"janus": "create", "transaction": "b"})
                    over_ws = await ws.receive_json(timeout=5)
    finally:
        await server.stop()
    credentials = []
    for reply in (over_http, over_ws):
        (turn,) = reply["data"]["ice_servers"]
        assert turn["urls"] == "turn:198.18.0.1:3478?transport=tcp"
        exp = expiry(turn["username"])
        assert exp is not None and 0 < exp - time.time() <= 900
        credentials.append(turn["credential"])
    assert all(c not in caplog.text for c in credentials)
    assert "shared-with-coturn" not in caplog.text
