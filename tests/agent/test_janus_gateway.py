"""The agent against the real Janus gateway (Debian's `janus`), configured as aPuppet's Ansible does it.

This is the check that the agent speaks what the Android agent speaks: if unmodified Janus accepts it, then
so does an aPuppet server, and whatever works with it works with the Android app.
"""

from __future__ import annotations

import asyncio
import glob
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest

from apuppet.agent import phone as ph
from apuppet.agent.agent import Agent, AgentOptions
from apuppet.agent.sources.demo import DemoSource

from .conftest import free_port
from .viewer import Viewer, near

JANUS = shutil.which("janus")
LIBS = sorted(glob.glob("/usr/lib/*/janus"))
pytestmark = pytest.mark.skipif(
    not (JANUS and LIBS), reason="the Janus gateway is not installed (apt-get install janus)"
)
SECRET = "janus-test-secret"


@pytest.fixture
async def janus(tmp_path) -> AsyncIterator[str]:
    port = free_port()
    lib = LIBS[0]
    keep = {"libjanus_textroom.so", "libjanus_streaming.so"}
    plugins = ",".join(sorted({p.split("/")[-1] for p in glob.glob(f"{lib}/plugins/*.so")} - keep))
    transports = ",".join(
        sorted({p.split("/")[-1] for p in glob.glob(f"{lib}/transports/*.so")} - {"libjanus_http.so"})
    )
    (tmp_path / "janus.jcfg").write_text(
        f'general: {{ configs_folder = "{tmp_path}" plugins_folder = "{lib}/plugins" '
        f'transports_folder = "{lib}/transports" events_folder = "{lib}/events" loggers_folder = "{lib}/loggers" '
        f'debug_level = 3 api_secret = "{SECRET}" }}\n'
        f'plugins: {{ disable = "{plugins}" }}\ntransports: {{ disable = "{transports}" }}\n'
        "events: { broadcast = false }\n"
    )
    # aPuppet's plugin settings (spec §3.2, §4.1): string room and mountpoint ids, indented JSON.
    (tmp_path / "janus.plugin.textroom.jcfg").write_text('general: { json = "indented" string_ids = true }\n')
    (tmp_path / "janus.plugin.streaming.jcfg").write_text("general: { string_ids = true }\n")
    (tmp_path / "janus.transport.http.jcfg").write_text(
        f'general: {{ json = "indented" base_path = "/janus" http = true port = {port} ip = "127.0.0.1" '
        "https = false }\nadmin: { admin_http = false }\n"
    )
    proc = await asyncio.create_subprocess_exec(
        JANUS,
        "-F",
        str(tmp_path),
        "-C",
        str(tmp_path / "janus.jcfg"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        async with asyncio.timeout(15):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_agent_works_with_the_real_janus(janus: str) -> None:
    agent = Agent(AgentOptions(server_url=janus, secret=SECRET, name="Janus phone"), DemoSource())
    task = asyncio.get_running_loop().create_task(agent.run())
    try:
        async with asyncio.timeout(20):
            await agent.connected.wait()
        creds = agent.credentials
        async with Viewer(janus, SECRET, creds.session, creds.password) as v:
            assert any(p.get("username") == "device:Janus phone" for p in v.participants)
            assert await v.message(lambda t: t.startswith("stream")) == "streamingVideoResolution,360,640"
            await v.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=20)
            v.send("ping,99")
            assert await v.message(lambda t: t.startswith("pong")) == "pong,99"
            v.send("tap,72,156,50")
            await v.until(lambda f: near(f, 20, 400, (250, 240, 225)))
            await v.leave()
            async with asyncio.timeout(10):
                while agent.viewers:
                    await asyncio.sleep(0.05)
    finally:
        agent.stop()
        async with asyncio.timeout(15):
            await task


async def test_agent_comes_back_when_janus_forgets_its_session(janus: str) -> None:
    """What a Janus restart or session timeout looks like to the agent (404 on the poll); the Android agent
    would poll the dead session for ever."""
    agent = Agent(AgentOptions(server_url=janus, secret=SECRET, name="Janus phone"), DemoSource())
    task = asyncio.get_running_loop().create_task(agent.run())
    try:
        async with asyncio.timeout(20):
            await agent.connected.wait()
        first = agent.sessions[-1]
        # Destroying the session behind the agent's back is what a restart looks like to it.
        import aiohttp

        from apuppet.agent.janus import JanusClient

        async with aiohttp.ClientSession() as http:
            other = JanusClient(http, janus, SECRET)
            other.session_id = first
            await other.request({"janus": "destroy"})
        async with asyncio.timeout(10):
            while not (agent.connected.is_set() and agent.sessions[-1] != first):
                await asyncio.sleep(0.05)
    finally:
        agent.stop()
        async with asyncio.timeout(15):
            await task
