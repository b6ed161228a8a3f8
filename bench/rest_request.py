"""What one Janus request over HTTP costs the server's REST transport, with the body read by `read_body`
(`apuppet/server/http.py`: a total and a stall limit, and no timer at all when the body came with the head) and,
to compare, by aiohttp's `request.read()` inside the total limit, as before. Not a test: it prints.

`--requests` sequential `ping`s over one keep-alive connection on loopback, in-process server; the first tenth is
warm-up. Rounds alternate the two readers; medians per request.

    python bench/rest_request.py [--requests 3000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apuppet.config import Config  # noqa: E402
from apuppet.server import Server  # noqa: E402
from apuppet.server import http as rest  # noqa: E402


async def aiohttp_read(request: web.BaseRequest, timeout: float = rest.BODY_TIMEOUT) -> bytes:
    async with asyncio.timeout(timeout):
        return await request.read()


async def median_us(requests: int) -> float:
    server = Server(Config(bind="127.0.0.1", web_http_port=0, api_secret="", admin_secret="bench-admin"))
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            times = []
            for _ in range(requests):
                started = time.perf_counter()
                async with http.post(server.url + "janus", json={"janus": "ping", "transaction": "p"}) as r:
                    await r.read()
                times.append(time.perf_counter() - started)
    finally:
        await server.stop()
    return statistics.median(times[requests // 10 :]) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ours = rest.read_body
    for _ in range(args.rounds):
        for label, reader in (("read_body", ours), ("request.read()", aiohttp_read)):
            rest.read_body = reader
            print(f"{label:>15}: median {await median_us(args.requests):.1f} µs per request", flush=True)
    rest.read_body = ours


if __name__ == "__main__":
    asyncio.run(main())
