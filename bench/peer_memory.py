"""What one server peer connection costs: N viewers (`media.viewer.Viewer`, sendonly H.264) or N data-channel links
(`media.datachannel.DataChannelLink`, the textroom's), made as the server makes them, each answered by an aiortc
client in a child process (so that only the server side is measured) and connected over loopback. Not a test:
it prints the RSS, Python objects and offer-to-answer time per connection. No RTP flows (bench/memory.py measures
devices with video).

    python bench/peer_memory.py [--kind video|data] [--peers 100] [--own-certificates] [--trace]

`--own-certificates` gives every connection its own DTLS certificate and OpenSSL context, as aiortc alone does
(the server shares one, `media.peer.ServerCertificate`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aioice.ice

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apuppet.media.datachannel import DataChannelLink  # noqa: E402
from apuppet.media.ingest import RtpIngest  # noqa: E402
from apuppet.media.peers import Peers  # noqa: E402
from apuppet.media.settings import MediaSettings  # noqa: E402
from apuppet.media.viewer import Viewer  # noqa: E402

PORTS = (24000, 25999)


def rss_kb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4.0


def answerer(conn: Any) -> None:
    """The clients: answer every offer that comes through `conn` until None."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

    async def run() -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pcs = []
        loop = asyncio.get_running_loop()
        while (offer := await loop.run_in_executor(None, conn.recv)) is not None:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pcs.append(pc)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            conn.send(pc.localDescription.sdp)
        for pc in pcs:
            await pc.close()

    asyncio.run(run())


async def main(args: argparse.Namespace) -> None:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    peers = Peers(MediaSettings(bind="127.0.0.1", port_range=PORTS, use_ipv6=False, max_peers_per_session=0))
    if args.own_certificates:
        peers.certificate = lambda: None  # type: ignore[method-assign]
    ingest = RtpIngest("127.0.0.1", PORTS)
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    child = ctx.Process(target=answerer, args=(there,))
    child.start()
    loop = asyncio.get_running_loop()
    made: list[Any] = []

    async def connect() -> None:
        if args.kind == "video":
            viewer = Viewer(peers, ingest)
            made.append(viewer)
            offer = await viewer.offer()
            here.send(offer["sdp"])
            await viewer.accept({"type": "answer", "sdp": await loop.run_in_executor(None, here.recv)})
        else:
            link = DataChannelLink(peers, on_message=lambda m: None, on_up=lambda: None, on_gone=lambda s: None)
            made.append(link)
            offer = await link.offer()
            here.send(offer["sdp"])
            await link.answer({"type": "answer", "sdp": await loop.run_in_executor(None, here.recv)})

    def connected() -> int:
        return sum(1 for m in made if m.pc.connectionState == "connected")

    try:
        for _ in range(5):  # first use of every code path, not counted
            await connect()
        await asyncio.sleep(2)
        gc.collect()
        if args.trace:
            tracemalloc.start()
        rss, objects, warm = rss_kb(), len(gc.get_objects()), len(made)
        before = tracemalloc.take_snapshot() if args.trace else None
        start = time.perf_counter()
        for _ in range(args.peers):
            await connect()
        elapsed = time.perf_counter() - start
        deadline = loop.time() + 60
        while connected() < len(made) and loop.time() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        gc.collect()
        n = args.peers
        print(
            f"{args.kind}{' (own certificates)' if args.own_certificates else ''}: {n} connections "
            f"({connected() - warm} connected): {(rss_kb() - rss) / n:.0f} KB RSS and "
            f"{(len(gc.get_objects()) - objects) / n:.0f} Python objects each; "
            f"offer to answer set {elapsed / n * 1000:.1f} ms each"
        )
        if before is not None:
            grown = tracemalloc.take_snapshot().compare_to(before, "lineno")
            print(f"Python allocations: {sum(st.size_diff for st in grown) / n / 1024:.0f} KB each, most at:")
            for st in grown[:12]:
                print(f"  {st.size_diff / n / 1024:5.1f} KB  {st.traceback[0]}")
    finally:
        here.send(None)
        for m in made:
            await m.close()
        ingest.close()
        child.join(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("video", "data"), default="video")
    parser.add_argument("--peers", type=int, default=100)
    parser.add_argument("--own-certificates", action="store_true")
    parser.add_argument("--trace", action="store_true", help="also where Python allocated (tracemalloc; slower)")
    asyncio.run(main(parser.parse_args()))
