from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from apuppet.config import Config
from apuppet.server import Server

from ..api.echo import EchoPlugin

SECRET = "K7pQx9Zt"


def make_config(**overrides: object) -> Config:
    values: dict[str, object] = {
        "bind": "127.0.0.1",
        "web_http_port": 0,
        "api_http": False,
        "api_https": False,
        "api_wss": False,
        "api_secret": SECRET,
        "admin_secret": "admin-secret-for-tests",
    }
    values.update(overrides)
    return Config.model_validate(values)


@pytest.fixture
async def echo_server() -> AsyncIterator[Server]:
    server = Server(make_config(), plugins=[EchoPlugin()], housekeeping_interval=0.1)
    server.rest.poll_timeout = 1.0
    await server.start()
    yield server
    await server.stop()
