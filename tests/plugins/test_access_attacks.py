"""Issue 17 #3 and #11 replayed against a real server over HTTP on loopback, from many real source addresses
(127.0.0.0/8 is all loopback on Linux: each client binds its own 127.x.y.z).

* wrong pins from many addresses must not lock the real viewer out, while guessing stays slow;
* wrong `admin_key` values are throttled per address, and the right one still works.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from apuppet.server import Server
from tests.media.test_ice import free_range
from tests.server.conftest import SECRET, make_config

JSON = dict[str, Any]
PLUGIN = "janus.plugin.streaming"
WEAK_PIN = "4321"
STRONG_PIN = "Kp7qX2mz-w4tch"


def mountpoint(mp_id: str, pin: str) -> JSON:
    return {
        "request": "create", "type": "rtp", "id": mp_id, "name": mp_id, "description": mp_id, "pin": pin,
        "is_private": False, "audio": False, "video": True, "data": False, "videoport": 0, "videopt": 100,
        "videortpmap": "H264/90000",
    }  # fmt: skip


class Janus:
    """A Janus REST client whose TCP connections leave from `address`."""

    def __init__(self, base: str, address: str, secret: str | None = None) -> None:
        self.base = base
        self.secret = secret
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
        self.session = 0
        self.handle = 0

    async def call(self, path: str = "", **body: Any) -> JSON:
        body = {"transaction": "t1234", **body}
        if self.secret is not None:
            body["apisecret"] = self.secret
        async with self.http.post(self.base + path, data=json.dumps(body)) as resp:
            return await resp.json()  # type: ignore[no-any-return]

    async def open(self) -> Janus:
        self.session = (await self.call(janus="create"))["data"]["id"]
        self.handle = (await self.call(f"/{self.session}", janus="attach", plugin=PLUGIN))["data"]["id"]
        return self

    async def request(self, body: JSON) -> JSON:
        reply = await self.call(f"/{self.session}/{self.handle}", janus="message", body=body)
        assert reply["janus"] == "success", reply
        return reply["plugindata"]["data"]  # type: ignore[no-any-return]

    async def watch(self, mp_id: str, pin: str) -> JSON:
        """`watch` and its answering event (`preparing` or an error), read by long poll."""
        reply = await self.call(f"/{self.session}/{self.handle}", janus="message",
                                body={"request": "watch", "id": mp_id, "pin": pin})  # fmt: skip
        assert reply["janus"] == "ack", reply
        while True:
            params = {"maxev": "10"} if self.secret is None else {"maxev": "10", "apisecret": self.secret}
            async with self.http.get(f"{self.base}/{self.session}", params=params) as resp:
                events = await resp.json()
            for event in events if isinstance(events, list) else [events]:
                data = event.get("plugindata", {}).get("data", {})
                if "error_code" in data or data.get("result") == {"status": "preparing"}:
                    return data  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    lo, hi = free_range(80)
    async with Server(make_config(rtp_port_range=f"{lo}-{hi}", max_peers_per_address=0)) as running:
        running.rest.poll_timeout = 2.0
        yield running


@pytest.fixture
async def clients() -> AsyncIterator[list[Janus]]:
    made: list[Janus] = []
    yield made
    for client in made:
        await client.close()


async def connect(server: Server, clients: list[Janus], address: str, secret: str | None = None) -> Janus:
    client = Janus(server.url + "janus", address, secret)
    clients.append(client)
    return await client.open()


def too_many(data: JSON) -> bool:
    return data.get("error_code") == 457 and "Too many" in data.get("error", "")


async def test_strangers_wrong_pins_do_not_lock_out_the_real_viewer(server: Server, clients: list[Janus]) -> None:
    agent = await connect(server, clients, "127.0.0.1", SECRET)
    assert (await agent.request(mountpoint("48213077", WEAK_PIN)))["streaming"] == "created"

    # 25 wrong pins from 25 addresses (viewer sessions, as strangers have no API secret)…
    attackers = [await connect(server, clients, f"127.0.1.{i}") for i in range(1, 26)]
    for attacker in attackers:
        assert (await attacker.watch("48213077", "0000"))["error_code"] == 457
    # …then the real viewer, from an address that never guessed, with the right pin: it gets in.
    viewer = await connect(server, clients, "127.0.2.1")
    assert (await viewer.watch("48213077", WEAK_PIN))["result"] == {"status": "preparing"}

    # One wrong pin from one of 20 rotating addresses between each of the viewer's 30 watches: it always gets in.
    refused = 0
    for i in range(30):
        await attackers[i % 20].watch("48213077", f"{1000 + i}")
        refused += "error_code" in await viewer.watch("48213077", WEAK_PIN)
    assert refused == 0

    # Guessing stays slow: the guessers are held back now, even those that try the right pin.
    retries = [await attacker.watch("48213077", WEAK_PIN if i % 2 else "5555") for i, attacker in enumerate(attackers)]
    assert all(too_many(data) for data in retries), retries


async def test_a_throttled_address_gets_in_with_a_strong_pin_not_with_a_weak_one(
    server: Server, clients: list[Janus]
) -> None:
    agent = await connect(server, clients, "127.0.0.1", SECRET)
    assert (await agent.request(mountpoint("1111", WEAK_PIN)))["streaming"] == "created"
    assert (await agent.request(mountpoint("2222", STRONG_PIN)))["streaming"] == "created"
    # A shared address (a NAT) where somebody has been guessing on both.
    shared = await connect(server, clients, "127.0.3.1")
    for i in range(8):
        await shared.watch("1111", f"{i:04}")
        await shared.watch("2222", f"guess-{i}")
    assert too_many(await shared.watch("2222", "another-guess"))
    assert too_many(await shared.watch("1111", "0042"))
    # The right strong pin goes through; the right weak pin does not (it would make the throttle an oracle).
    assert (await shared.watch("2222", STRONG_PIN))["result"] == {"status": "preparing"}
    assert too_many(await shared.watch("1111", WEAK_PIN))


async def test_wrong_admin_keys_are_throttled_and_the_right_one_works(server: Server, clients: list[Janus]) -> None:
    agent = await connect(server, clients, "127.0.0.1", SECRET)
    assert (await agent.request(mountpoint("48213077", WEAK_PIN)))["streaming"] == "created"
    prober = await connect(server, clients, "127.0.4.1", SECRET)
    answers = [await prober.request({"request": "list", "admin_key": f"guess-{i}"}) for i in range(300)]
    refused = [a for a in answers if too_many(a)]
    assert len(refused) >= 290, f"only {len(refused)} of 300 wrong admin keys refused"
    assert all("list" not in a or a["list"] == [] for a in answers)  # the protected mountpoint never shows
    # The right admin key (a strong one) works from the same address at once.
    right = await prober.request({"request": "list", "admin_key": server.config.admin_secret})
    assert [m["id"] for m in right["list"]] == ["48213077"]
    # Another address is not affected.
    other = await connect(server, clients, "127.0.4.2", SECRET)
    assert (await other.request({"request": "list", "admin_key": "guess"}))["list"] == []
