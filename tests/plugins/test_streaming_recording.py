"""Recording end to end: a real server with `record_sessions`, the demo phone (Python agent) streaming to it and an
aiortc viewer watching and driving it over real sockets; the file left behind is decoded with PyAV and compared
with what the viewer got, and `apuppet sessions` links the audit record to it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from apuppet.agent import phone as ph
from apuppet.cli import main
from apuppet.config import Config
from apuppet.ops.recordings import Recording, find_recording, list_recordings
from apuppet.server import Server

from ..agent.conftest import SECRET, start_agent
from ..agent.viewer import Viewer, near
from ..media.recorded import decode, difference

COUNTER_BG = (250, 240, 225)
PRESSED = (200, 90, 0)


def recording_config() -> Config:
    return Config(
        bind="127.0.0.1",
        web_http_port=0,
        api_http=False,
        api_secret=SECRET,
        admin_secret="adm-" + SECRET,
        record_sessions=True,
        use_ipv6=False,
    )


async def complete_recordings(folder: Path, count: int, timeout: float = 30) -> list[Recording]:
    """The recordings of `folder` once `count` are complete (closing one is asynchronous: the writer thread)."""
    async with asyncio.timeout(timeout):
        while True:
            found = [r for r in list_recordings(folder) if r.complete]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)


def best_match(pictures: list[np.ndarray], seen: np.ndarray) -> tuple[int, float]:
    """The index of the recorded picture closest to `seen`, and its difference."""
    scores = [difference(p, seen) for p in pictures]
    index = int(np.argmin(scores))
    return index, scores[index]


@pytest.mark.timeout(180)
async def test_a_watched_demo_phone_is_recorded_as_the_viewer_saw_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = recording_config()
    server = Server(config, base_dir=tmp_path)  # an audit log and recordings under tmp_path, as `serve` keeps them
    await server.start()
    folder = tmp_path / "recordings"
    try:
        agent = await start_agent(server.url)
        creds = agent.agent.credentials
        try:
            async with Viewer(server.url, SECRET, creds.session, creds.password) as v:
                home = await v.until(lambda f: near(f, 72, 156, ph.APPS["counter"]), timeout=30)
                home_at = time.monotonic()
                v.send("tap,72,156,60")  # open Counter
                counter = await v.until(lambda f: near(f, 20, 400, COUNTER_BG), timeout=20)
                v.send("tap,180,330,60")  # press its button: one block lights up
                pressed = await v.until(lambda f: near(f, 41, 461, PRESSED), timeout=20)
                async with asyncio.timeout(20):  # being written meanwhile, as `.part`
                    while not [r for r in list_recordings(folder) if not r.complete]:
                        await asyncio.sleep(0.05)
                assert not [r for r in list_recordings(folder) if r.complete]
                await asyncio.sleep(2)  # watched a while longer (the clock, the touch ring fading)
                last = v.frame
                last_at = time.monotonic()
                await v.leave()
            recordings = await complete_recordings(folder, 1)
            assert len(recordings) == 1
            recording = recordings[0]
            assert recording.device == creds.session and recording.size > 10_000

            got = decode(recording.path)
            assert (got.width, got.height) == (ph.WIDTH, ph.HEIGHT)
            assert got.keyframes[0]
            assert all(b > a for a, b in zip(got.times, got.times[1:], strict=False))
            # What the viewer saw is in the file, in the order it saw it: the very pictures, since the file holds
            # the bytes the viewer was sent and both decode them with the same decoder.
            assert last is not None
            matches = [best_match(got.pictures, seen) for seen in (home, counter, pressed, last)]
            assert all(score < 0.5 for _, score in matches), matches
            assert matches[0][0] < matches[1][0] < matches[2][0] <= matches[3][0], matches
            # Real time: from the home screen to the last picture the file spans what the viewer lived through, up
            # to the agent's refresh interval (a still screen is sent again once a second, not at 30 fps).
            lived, span = last_at - home_at, got.times[-1] - got.times[matches[0][0]]
            assert lived - 1.5 < span < lived + 0.5, (lived, span)
            assert abs(recording.duration - got.times[-1]) < 3

            # A second session of the same device, ended by the server's shutdown: its file is closed too.
            async with Viewer(server.url, SECRET, creds.session, creds.password) as v:
                await v.until(lambda f: near(f, 20, 400, COUNTER_BG), timeout=30)
                await server.stop()
        finally:
            await agent.stop()
    finally:
        await server.stop()
    recordings = await complete_recordings(folder, 2)
    assert len(recordings) == 2 and all(r.device == creds.session for r in recordings)
    assert decode(recordings[0].path).codes  # it decodes

    # `apuppet sessions` names each session's recording; the audit records find them by device and time.
    (tmp_path / "config.yaml").write_text("record_sessions: true\n")
    capsys.readouterr()
    assert main(["sessions", "--config", str(tmp_path / "config.yaml")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-2:] == ["recording", "ended"]
    rows = table[1:]
    assert len(rows) == 2, table
    for row, rec in zip(rows, recordings, strict=True):  # both newest first
        assert f"  {rec.name}  " in row, table
    assert find_recording(recordings, creds.session, recordings[1].started, recordings[1].ended) == recordings[1]
