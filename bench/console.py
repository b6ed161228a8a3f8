"""The operator console's cost on a busy server: devices made through the Janus API as agents make them (one
trusted session each, a textroom room and a streaming mountpoint with a UDP port), then the console's state built
in-process and fetched over HTTP, its size, and the cost of one operator event reaching the console's observer
(which runs inside every request that reports one). Not a test: it prints.

With `--cluster`: two nodes on one Redis (Debian's redis-server, started here on a free loopback port), the
devices on node A, the console's state fetched through A and through B (each asks the other for its devices:
B's whole view comes from A through Redis), and a login checked in Redis rather than in memory.

The view is shared by every page and request for up to a second (`console.VIEW_TICK`): "built" figures are of a
view built anew each time (what one page costs per tick), "shared" ones of the view as most requests find it.

With `--recordings N`: N recordings (empty files, named as the server names them) and 200 audit records, the
first listing (a scan, in a worker thread), a later one (kept: the folder is unchanged), the event loop's longest
stall meanwhile, and a page of 200 audit rows each matched with its recording.

    python bench/console.py [--devices 200] [--repeat 30] [--cluster | --recordings 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apuppet.config import Config  # noqa: E402
from apuppet.ops.recordings import RACY_NS  # noqa: E402
from apuppet.server import Server  # noqa: E402
from apuppet.server.console import Console  # noqa: E402
from bench.cluster import start_redis  # noqa: E402

SECRET, ADMIN = "bench-api-secret", "bench-admin-secret"


def summary(name: str, samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{name}: median {statistics.median(ordered):.2f} ms, p95 {p95:.2f} ms (n={len(ordered)})"


async def janus(http: aiohttp.ClientSession, url: str, body: dict[str, object]) -> dict[str, object]:
    async with http.post(url, json={"transaction": "b", "apisecret": SECRET, **body}) as response:
        reply: dict[str, object] = await response.json()
        return reply


async def add_device(http: aiohttp.ClientSession, base: str, n: int) -> None:
    """What an agent asks before its data channel is up: its room and its mountpoint, same id, with a pin."""
    session = (await janus(http, base, {"janus": "create"}))["data"]["id"]  # type: ignore[index]
    url = f"{base}/{session}"
    room = str(4_000_000_000 + n)
    for plugin, body in (
        ("janus.plugin.textroom", {"request": "create", "room": room, "pin": "pin", "description": f"Phone {n}"}),
        ("janus.plugin.streaming", {"request": "create", "type": "rtp", "video": True, "id": room, "pin": "pin"}),
    ):
        handle = (await janus(http, url, {"janus": "attach", "plugin": plugin}))["data"]["id"]  # type: ignore[index]
        reply = await janus(http, f"{url}/{handle}", {"janus": "message", "body": body})
        assert "error_code" not in json.dumps(reply), reply


def config(**extra: object) -> Config:
    values: dict[str, object] = {
        "bind": "127.0.0.1",
        "web_http_port": 0,
        "api_http": False,
        "api_secret": SECRET,
        "admin_secret": ADMIN,
        "rtp_port_range": "20000-29999",
        "session_timeout": 3600,
    }
    return Config(**{**values, **extra})  # type: ignore[arg-type]


async def log_in(http: aiohttp.ClientSession, server: Server) -> str:
    origin = server.url.rstrip("/")
    async with http.post(f"{server.url}console/api/login", json={"secret": ADMIN}, headers={"Origin": origin}) as r:
        return f"apuppet_console={r.cookies['apuppet_console'].value}"


def forget(console: Console) -> None:
    """The next state is built anew and the other nodes asked again, as once a tick."""
    console._view = None
    console._others = (-math.inf, {})


async def fetch(
    http: aiohttp.ClientSession, server: Server, cookie: str, repeat: int, fresh: bool = True
) -> tuple[list[float], int]:
    fetched: list[float] = []
    size = 0
    for _ in range(repeat):
        if fresh:
            forget(server.console)
        began = time.perf_counter()
        async with http.get(f"{server.url}console/api/state", headers={"Cookie": cookie}) as response:
            size = len(await response.read())
        fetched.append((time.perf_counter() - began) * 1000)
    return fetched, size


async def single(args: argparse.Namespace) -> None:
    async with Server(config()) as server, aiohttp.ClientSession() as http:
        base = f"{server.url}janus"
        for n in range(args.devices):
            await add_device(http, base, n)
        state = await server.console.state()
        assert len(state["devices"]) == args.devices, len(state["devices"])

        built: list[float] = []
        for _ in range(args.repeat):
            forget(server.console)
            began = time.perf_counter()
            await server.console.state()
            built.append((time.perf_counter() - began) * 1000)

        cookie = await log_in(http, server)
        fetched, size = await fetch(http, server, cookie, args.repeat)
        shared, _ = await fetch(http, server, cookie, args.repeat, fresh=False)

        events = 100_000
        began = time.perf_counter()
        for n in range(events):
            server.console._observe("participant_joined", {"room": "1", "username": f"admin:{n}", "remote": "x"})
        per_event_us = (time.perf_counter() - began) / events * 1e6

    print(f"{args.devices} devices (room + mountpoint each), no viewers")
    print(summary("console state built in-process", built))
    print(summary("GET /console/api/state over loopback, built", fetched) + f", {size / 1024:.0f} KiB")
    print(summary("GET /console/api/state over loopback, shared", shared))
    print(f"one operator event through the console's observer: {per_event_us:.2f} µs")


async def cluster(args: argparse.Namespace) -> None:
    redis, port = start_redis()
    url = f"redis://127.0.0.1:{port}/0"
    a = Server(config(redis_url=url, node_name="a", rtp_port_range="20000-24999"))
    b = Server(config(redis_url=url, node_name="b", rtp_port_range="25000-29999"))
    try:
        for attempt in range(100):
            try:
                await a.start()
                break
            except Exception:  # Redis still starting
                if attempt == 99:
                    raise
                await asyncio.sleep(0.05)
        await b.start()
        async with aiohttp.ClientSession() as http:
            base = f"{a.url}janus"
            for n in range(args.devices):
                await add_device(http, base, n)
            cookie = await log_in(http, a)
            results = {}
            for name, server in (("A (its own devices, asks B)", a), ("B (every device from A)", b)):
                fetched, size = await fetch(http, server, cookie, args.repeat)
                results[name] = (fetched, size)
            state = await b.console.state()
            assert len(state["devices"]) == args.devices and state["unreachable"] == [], state["unreachable"]
            checked: list[float] = []
            token = cookie.split("=", 1)[1]
            for _ in range(args.repeat):
                began = time.perf_counter()
                assert await b.console.logins.check(token) is not None
                checked.append((time.perf_counter() - began) * 1000)
    finally:
        await b.stop()
        await a.stop()
        redis.kill()
        redis.wait()
    print(f"2 nodes on Redis, {args.devices} devices on node A (room + mountpoint each), no viewers")
    for name, (fetched, size) in results.items():
        print(summary(f"GET /console/api/state through {name}", fetched) + f", {size / 1024:.0f} KiB")
    print(summary("a login checked in Redis (GETEX)", checked))


async def recordings(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        async with (
            Server(config(recordings_dir="recordings"), base_dir=base) as server,
            aiohttp.ClientSession() as http,
        ):
            assert server.audit is not None
            folder = base / "recordings"
            folder.mkdir()
            t0 = 1_765_000_000.0
            for n in range(args.recordings):
                (folder / f"{datetime.fromtimestamp(t0 + 60 * n, UTC):%Y%m%dT%H%M%SZ}-room{n % 40}.mp4").touch()
            for n in range(200):
                record = server.audit.store.start(f"room{n % 40}", f"Phone {n}", f"admin:{n}", "192.0.2.1", t0 + 60 * n)
                server.audit.store.end(record, t0 + 60 * n + 30, "left")
            cookie = await log_in(http, server)
            stalls: list[float] = []

            async def tick() -> None:
                while True:
                    before = time.perf_counter()
                    await asyncio.sleep(0.001)
                    stalls.append(time.perf_counter() - before - 0.001)

            async def get(path: str) -> tuple[float, int]:
                began = time.perf_counter()
                async with http.get(f"{server.url}console/api/{path}", headers={"Cookie": cookie}) as response:
                    assert response.status == 200, response.status
                    size = len(await response.read())
                return (time.perf_counter() - began) * 1000, size

            ticker = asyncio.create_task(tick())
            first, size = await get("recordings")
            first_stall = max(stalls) * 1000
            await asyncio.sleep(RACY_NS / 1e9)  # a folder changed just now is scanned on every request
            stalls.clear()
            later = [(await get("recordings"))[0] for _ in range(args.repeat)]
            audit = [(await get("audit?limit=200"))[0] for _ in range(args.repeat)]
            stall = max(stalls) * 1000
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    print(f"{args.recordings} recordings, 200 audit records")
    print(f"first GET /console/api/recordings (the folder scanned): {first:.1f} ms, {size / 1024:.0f} KiB;")
    print(f"  the event loop's longest stall meanwhile: {first_stall:.1f} ms")
    print(summary("later GET /console/api/recordings (kept)", later))
    print(summary("GET /console/api/audit?limit=200 (each row matched)", audit))
    print(f"the event loop's longest stall during those: {stall:.1f} ms")


async def main(args: argparse.Namespace) -> None:
    if args.recordings:
        await recordings(args)
    else:
        await (cluster(args) if args.cluster else single(args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--cluster", action="store_true", help="two nodes on Redis, the devices on one")
    parser.add_argument("--recordings", type=int, default=0, help="the recordings listing with that many files")
    asyncio.run(main(parser.parse_args()))
