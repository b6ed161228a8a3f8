"""The control channel's figures: connect time, ping/pong round trip and message throughput through the TextRoom
plugin, with real aiortc peers over loopback (the Janus signalling hop is in-process). Not a test: it prints.

    python bench/textroom.py [--connects 20] [--pings 500] [--burst 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apuppet.api.gateway import Gateway  # noqa: E402
from apuppet.config import Config  # noqa: E402
from apuppet.media.peers import Peers  # noqa: E402
from apuppet.plugins.textroom import TextRoomPlugin  # noqa: E402
from apuppet.server.app import media_settings  # noqa: E402
from tests.inproc import InProcClient  # noqa: E402
from tests.plugins.test_textroom import DataPeer, agent_online  # noqa: E402


def summary(name: str, samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    median = statistics.median(ordered)
    return f"{name}: median {median:.2f} ms, p95 {p95:.2f} ms, max {ordered[-1]:.2f} ms (n={len(ordered)})"


async def main(args: argparse.Namespace) -> None:
    # Every peer comes from 127.0.0.1: no per-address cap on peer connections here.
    config = Config(rtp_port_range="20000-40000", max_peers_per_address=0)
    plugin = TextRoomPlugin(config, Peers(media_settings(config)))
    gateway = Gateway([plugin])
    peers: list[DataPeer] = []
    try:
        connect_ms = []
        for _ in range(args.connects):
            peer = DataPeer(InProcClient(gateway), agent=True)
            started = time.perf_counter()
            await peer.connect()
            connect_ms.append((time.perf_counter() - started) * 1000)
            peers.append(peer)
        print(summary("agent connect (setup -> webrtcup, no candidates in the answer)", connect_ms))

        agent = peers[0]
        await agent.open_channel()
        room, password = await agent_online(agent)
        admin = DataPeer(InProcClient(gateway), agent=False)
        peers.append(admin)
        await admin.connect()
        await admin.open_channel()
        await admin.request({"textroom": "join", "room": room, "pin": password, "username": "admin:b"})

        # The agent answers pings as the Android agent does: pong with ack false.
        def agent_heard(data: str | bytes) -> None:
            msg = json.loads(data)
            if msg.get("textroom") == "message" and msg["text"].startswith("ping,"):
                pong = {"textroom": "message", "room": room, "text": "pong," + msg["text"][5:], "ack": False}
                agent.send({**pong, "transaction": "p"})

        for channel in agent.server_channels:
            channel.on("message", agent_heard)
        pongs: dict[str, asyncio.Future[float]] = {}

        def admin_heard(data: str | bytes) -> None:
            msg = json.loads(data)
            if msg.get("textroom") == "message" and msg["text"].startswith("pong,"):
                future = pongs.get(msg["text"][5:])
                if future is not None and not future.done():
                    future.set_result(time.perf_counter())

        for channel in admin.server_channels:
            channel.on("message", admin_heard)
        rtt_ms = []
        for i in range(args.pings):
            pongs[str(i)] = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            admin.send({"textroom": "message", "room": room, "text": f"ping,{i}", "transaction": f"t{i}"})
            rtt_ms.append((await asyncio.wait_for(pongs[str(i)], 10) - started) * 1000)
            del pongs[str(i)]
        print(summary("admin ping -> agent pong round trip", rtt_ms))

        received = 0
        done = asyncio.get_running_loop().create_future()

        def count(data: str | bytes) -> None:
            nonlocal received
            if '"text":"tap,' in data if isinstance(data, str) else False:
                received += 1
                if received == args.burst and not done.done():
                    done.set_result(time.perf_counter())

        for channel in agent.server_channels:
            channel.on("message", count)
        started = time.perf_counter()
        for i in range(args.burst):
            admin.send({"textroom": "message", "room": room, "text": f"tap,{i},1,1", "ack": False, "transaction": "b"})
        finished = await asyncio.wait_for(done, 120)
        rate = args.burst / (finished - started)
        print(f"burst of {args.burst} taps admin -> agent: {rate:.0f} messages/s ({(finished - started):.2f} s)")
        print(f"plugin metrics: {plugin.metrics()}")
    finally:
        for peer in peers:
            await peer.close()
        await gateway.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=20)
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--burst", type=int, default=5000)
    asyncio.run(main(parser.parse_args()))
