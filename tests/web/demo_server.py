"""Run `apuppet serve` and a demo phone agent in one process for the browser tests, in a subprocess.

Like `apuppet demo`, but with an API secret the tests know (they hand it to the page as `?apisecret=`) and a
JSON line that also carries the server URL. Usage: ``python demo_server.py PORT [--no-agent] [--external=URL]``;
``--external`` runs the phone alone against another server (the real Janus). The secret comes from
``$APUPPET_TEST_SECRET``. Prints one JSON line once ready, then runs until SIGTERM; SIGUSR1 stops only the phone,
SIGUSR2 cuts the phone's control connection. ``--still``: the phone's clock stands still and the agent sends no
periodic refresh, so the picture changes (and frames flow) only when the phone is touched, as with aPuppet's agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

import numpy as np

from apuppet.agent.sources.demo import DemoSource
from apuppet.config import Config
from apuppet.server import Server

#: The still phone's clock: it never ticks, so its status bar never changes and touch marks stay.
STILL_CLOCK = 1_700_000_000.0


class StillSource(DemoSource):
    """The demo source reading the phone's own (stopped) clock rather than the wall clock."""

    def grab(self, force: bool = False) -> np.ndarray | None:
        key = self.phone.frame_key()
        if not force and key == self._key:
            return None
        self._key = key
        return self.phone.render()


async def drop_control(agent: object) -> None:
    room = getattr(agent, "_room", None)
    pc = getattr(room, "pc", None)
    if pc is not None:
        await pc.close()


async def main(port: int, with_agent: bool, external: str = "", still: bool = False) -> None:
    secret = os.environ.get("APUPPET_TEST_SECRET", "")
    server: Server | None = None
    if external:
        url = external  # another Janus-compatible server (the real Janus): only the phone runs here
    else:
        # $APUPPET_TEST_CONFIG: more config.yaml keys as JSON (the TURN tests' bind address and TURN servers).
        extra = json.loads(os.environ.get("APUPPET_TEST_CONFIG") or "{}")
        config = Config(
            **{
                "bind": "127.0.0.1",
                "web_http_port": port,
                "api_http": False,
                "api_secret": secret,
                "admin_secret": "admin-" + secret,
                **extra,
            }
        )
        server = Server(config)
        await server.start()
        url = server.url
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    info: dict[str, object] = {"server": url}
    agent = task = None
    try:
        if with_agent:
            from apuppet.agent.agent import Agent, AgentOptions
            from apuppet.agent.phone import Phone
            from apuppet.agent.video import VideoSettings

            connected = asyncio.Event()
            options = AgentOptions(server_url=f"{url}web-admin/", secret=secret, name="Demo phone")
            if still:
                options.video = VideoSettings(refresh=3600.0, keyframe_interval=3600.0)
                source = StillSource(Phone(clock=lambda: STILL_CLOCK))
            else:
                source = DemoSource()
            agent = Agent(options, source, on_connected=lambda _agent: connected.set())
            task = loop.create_task(agent.run())
            # SIGUSR1: the phone goes away (its agent stops) while the server keeps running.
            loop.add_signal_handler(signal.SIGUSR1, agent.stop)
            # SIGUSR2: the phone's control connection dies under it (a phone losing its network): the server
            # sees the peer connection close and tells the room the device left.
            loop.add_signal_handler(signal.SIGUSR2, lambda: loop.create_task(drop_control(agent)))
            await asyncio.wait_for(connected.wait(), 30)
            info.update(agent.info)
        print(json.dumps(info), flush=True)
        await stop.wait()
    finally:
        if agent is not None and task is not None:
            agent.stop()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
        if server is not None:
            await server.stop()


if __name__ == "__main__":
    # Warnings and errors go to stderr, where pytest shows them beside a failing test; $APUPPET_TEST_LOG=DEBUG
    # shows everything (aiortc's and aioice's own lines too) when a browser test needs explaining.
    logging.basicConfig(
        level=os.environ.get("APUPPET_TEST_LOG", "WARNING"), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    external = next((a.removeprefix("--external=") for a in sys.argv if a.startswith("--external=")), "")
    asyncio.run(main(int(sys.argv[1]), "--no-agent" not in sys.argv, external, "--still" in sys.argv))
