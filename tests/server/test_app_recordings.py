"""The server's retention of recordings: a real `Server` with a config folder sweeps `recordings_dir` at start-up
(and every `RECORDINGS_SWEEP_INTERVAL`), deleting only recordings older than `recordings_keep_days`."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from apuppet.media.recording import file_name
from apuppet.server import Server
from apuppet.server import app as app_module

from ..api.echo import EchoPlugin
from .conftest import make_config


def recording(folder: Path, name: str, age_days: float, size: int = 1000) -> Path:
    path = folder / name
    path.write_bytes(b"\0" * size)
    when = (datetime.now(UTC) - timedelta(days=age_days)).timestamp()
    os.utime(path, (when, when))
    return path


async def test_old_recordings_are_deleted_at_start_up_and_every_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    now = datetime.now(UTC)
    old = recording(folder, file_name(now - timedelta(days=10), "1"), 9)
    crashed = recording(folder, file_name(now - timedelta(days=8), "2") + ".part", 8, 500)
    young = recording(folder, file_name(now - timedelta(days=2), "3"), 2)
    foreign = recording(folder, "operator-notes.txt", 100)
    monkeypatch.setattr(app_module, "RECORDINGS_SWEEP_INTERVAL", 0.5)
    config = make_config(record_sessions=True, recordings_keep_days=7)
    with caplog.at_level(logging.INFO, "apuppet.server.app"):
        async with Server(config, plugins=[EchoPlugin()], base_dir=tmp_path, housekeeping_interval=0.05):
            async with asyncio.timeout(20):
                while old.exists() or crashed.exists():
                    await asyncio.sleep(0.05)
            assert young.exists() and foreign.exists()
            # The next sweep, an interval later, finds what has aged past the limit since.
            aged = recording(folder, file_name(now - timedelta(days=30), "4"), 7.5)
            async with asyncio.timeout(20):
                while aged.exists():
                    await asyncio.sleep(0.05)
    assert sorted(folder.iterdir()) == sorted([young, foreign])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recordings:")]
    assert lines[0] == "recordings: 2 older than 7 days deleted (0.0 MB freed)"
    assert "recordings: 1 older than 7 days deleted (0.0 MB freed)" in lines


async def test_recordings_are_kept_forever_with_0_days(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    old = recording(folder, file_name(datetime(2020, 1, 1, tzinfo=UTC), "1"), 2000)
    config = make_config(record_sessions=True, recordings_keep_days=0)
    with caplog.at_level(logging.INFO, "apuppet.server.app"):
        async with Server(config, plugins=[EchoPlugin()], base_dir=tmp_path) as server:
            await server._sweep_recordings()  # what the housekeeping runs
    assert old.exists()
    assert not [r for r in caplog.records if r.getMessage().startswith("recordings:")]


def test_the_media_layer_gets_the_recordings_folder_only_when_recording(tmp_path: Path) -> None:
    from apuppet.config import Config
    from apuppet.server.app import load_plugins, media_settings

    assert media_settings(Config(), tmp_path).recordings_dir is None
    assert media_settings(Config(record_sessions=True), tmp_path).recordings_dir == tmp_path / "recordings"
    assert media_settings(Config(record_sessions=True)).recordings_dir == Path.cwd() / "recordings"
    config = Config(record_sessions=True, recordings_dir="/srv/rec")
    streaming = next(p for p in load_plugins(config, base_dir=tmp_path) if p.name == "janus.plugin.streaming")
    assert streaming.recordings.directory == Path("/srv/rec")  # type: ignore[attr-defined]
