"""The device agent's figures, end to end over loopback: connect time, command → visible-in-decoded-video
latency, stream bitrate (still and busy screen), reconnect time after a server restart, and the per-frame cost
of drawing and encoding the demo phone. Not a test: it prints.

    python bench/agent.py [--commands 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apuppet.agent import phone as ph  # noqa: E402
from apuppet.agent.phone import Phone  # noqa: E402
from apuppet.media.encoder import H264Encoder  # noqa: E402
from apuppet.server import Server  # noqa: E402
from tests.agent.conftest import SECRET, free_port, server_config, start_agent  # noqa: E402
from tests.agent.viewer import Viewer, near  # noqa: E402

COUNTER_BG = (250, 240, 225)


async def stream_rate(agent, seconds: float, action=None) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    sender, video = agent._sender, agent._video
    bytes0, frames0, started = sender.bytes, video.frames, time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        if action is not None:
            action()
        await asyncio.sleep(0.2)
    elapsed = time.monotonic() - started
    return (sender.bytes - bytes0) * 8 / elapsed / 1000, (video.frames - frames0) / elapsed


async def main(commands: int) -> None:
    port = free_port()
    server = Server(server_config(port))
    await server.start()
    started = time.monotonic()
    running = await start_agent(server.url)
    agent = running.agent
    print(f"agent connect (create, textroom setup, room, mountpoint): {(time.monotonic() - started) * 1000:.0f} ms")
    creds = agent.credentials
    started = time.monotonic()
    async with Viewer(server.url, SECRET, creds.session, creds.password) as viewer:
        await viewer.until(lambda f: True, timeout=20)
        print(f"viewer join → first decoded frame: {(time.monotonic() - started) * 1000:.0f} ms")
        latencies = []
        for _ in range(commands // 2):
            for text, want in (("tap,72,156,1", COUNTER_BG), ("back", ph.WALLPAPER)):
                started = time.monotonic()
                viewer.send(text)
                await viewer.until(lambda f, want=want: near(f, 20, 400, want))
                latencies.append((time.monotonic() - started) * 1000)
        print(
            f"command → visible in decoded video: median {statistics.median(latencies):.0f} ms, "
            f"max {max(latencies):.0f} ms (n={len(latencies)})"
        )
        await asyncio.sleep(1.5)  # let the touch marks fade
        kbps, fps = await stream_rate(agent, 5)
        print(f"still home screen (a clock ticking): {kbps:.0f} kbit/s, {fps:.1f} frames/s")
        viewer.send("tap,288,156,1")
        await asyncio.sleep(0.5)
        flip = iter(range(10**6))

        def scroll() -> None:
            i = next(flip)
            viewer.send(f"swipe,180,{500 if i % 2 else 200},180,{200 if i % 2 else 500},100")

        kbps, fps = await stream_rate(agent, 5, scroll)
        print(f"scrolling list (5 swipes/s): {kbps:.0f} kbit/s, {fps:.1f} frames/s")
    old = agent.sessions[-1]
    await server.stop()
    server = Server(server_config(port))
    await server.start()
    started = time.monotonic()
    while not (agent.connected.is_set() and agent.sessions[-1] != old):
        await asyncio.sleep(0.01)
    print(f"reconnect after a server restart: {(time.monotonic() - started) * 1000:.0f} ms")
    await running.stop()
    await server.stop()

    phone = Phone()
    encoder = H264Encoder(360, 640, fps=30, bitrate=1_000_000)
    frames = []
    for i in range(60):
        phone.tap(180, 330) if i % 2 else phone.global_action("recents")
        frames.append(phone.render())
    started = time.perf_counter()
    for _ in range(60):
        phone.render()
    render = (time.perf_counter() - started) / 60 * 1000
    started = time.perf_counter()
    for frame in frames:
        encoder.encode(frame)
    encode = (time.perf_counter() - started) / 60 * 1000
    print(f"per frame: draw the phone {render:.1f} ms, libx264 360x640 {encode:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20)
    asyncio.run(main(parser.parse_args().commands))
