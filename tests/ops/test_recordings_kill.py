"""`kill -9` of a recording server: `apuppet serve` in a child process records the demo phone while an aiortc viewer
watches it; the server is killed mid-session; the `.part` it leaves plays (PyAV), shows what the viewer saw, and
`apuppet recordings export` (the real command, in a child process) turns it into a plain MP4."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apuppet.agent import phone as ph
from apuppet.ops.recordings import list_recordings

from ..agent.conftest import SECRET, start_agent
from ..agent.viewer import Viewer, near
from ..media.recorded import decode, difference
from ..ports import free_port
from .test_doctor import free_udp_range
from .test_recordings import boxes

COUNTER_BG = (250, 240, 225)


@pytest.mark.timeout(180)
async def test_a_killed_server_leaves_a_recording_that_plays_and_exports(tmp_path: Path) -> None:
    low, high = free_udp_range(20)
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f'bind: "127.0.0.1"\nweb_http_port: {port}\napi_http: false\nrtp_port_range: "{low}-{high}"\n'
        f'api_secret: "{SECRET}"\nadmin_secret: "adm-{SECRET}"\nis_certbot_enabled: false\nuse_ipv6: false\n'
        "record_sessions: true\n"
    )
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apuppet", "serve", "--config", str(cfg), stderr=asyncio.subprocess.PIPE
    )
    assert server.stderr is not None
    log: list[str] = []
    folder = tmp_path / "recordings"
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(60):
            while not any(" ready: " in line for line in log):
                line = (await server.stderr.readline()).decode()
                assert line, "".join(log)
                log.append(line)
        drain = asyncio.get_running_loop().create_task(server.stderr.read())
        url = f"http://127.0.0.1:{port}/"
        agent = await start_agent(url)
        try:
            creds = agent.agent.credentials
            async with Viewer(url, SECRET, creds.session, creds.password) as v:
                home = await v.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=30)
                v.send("tap,72,156,60")  # open Counter
                counter = await v.until(lambda f: near(f, 20, 400, COUNTER_BG), timeout=20)
                async with asyncio.timeout(60):
                    # Watched until three fragments are on the disk (a fragment per keyframe or per second).
                    while True:
                        parts = list(folder.glob("*.part"))
                        if parts and parts[0].read_bytes().count(b"moof") >= 3:
                            break
                        v.send("tap,180,330,60")  # the counter goes up: pictures keep coming
                        await asyncio.sleep(0.2)
                server.send_signal(signal.SIGKILL)
                await server.wait()
        finally:
            await agent.stop()
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    if drain is not None:
        await drain
    assert server.returncode == -signal.SIGKILL

    recordings = list_recordings(folder)
    assert len(recordings) == 1 and not recordings[0].complete and recordings[0].device == creds.session
    part = recordings[0].path
    got = decode(part)
    assert len(got.codes) >= 5 and got.keyframes[0]
    assert (got.width, got.height) == (ph.WIDTH, ph.HEIGHT)
    assert min(difference(p, home) for p in got.pictures) < 0.5  # what the viewer saw, bit for bit
    assert min(difference(p, counter) for p in got.pictures) < 0.5

    out = subprocess.run(
        [sys.executable, "-m", "apuppet", "recordings", "export", part.name, "-o", "out.mp4", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "remuxed" in out.stdout
    exported = decode(tmp_path / "out.mp4")
    assert boxes(tmp_path / "out.mp4")[:2] == ["ftyp", "moov"] and "moof" not in boxes(tmp_path / "out.mp4")
    assert exported.times == got.times
    assert all(a.tobytes() == b.tobytes() for a, b in zip(exported.pictures, got.pictures, strict=True))
