"""The adb source against a FAKE `adb` (a Python script): there is no Android device on the build machine.

What this checks: the command lines sent to adb, `wm size` parsing, cutting a real libx264 Annex-B stream
into access units, screenrecord restarts at its time limit and on a keyframe request. What it cannot check:
that a real device's screenrecord/input behave as documented (see the module docstring of the source).
"""

import asyncio
import json
import os
import shlex
import stat
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from apuppet.agent.sources.adb import AccessUnitSplitter, AdbCommands, AdbSource, parse_wm_size
from apuppet.media.encoder import H264Encoder
from apuppet.media.h264 import NAL_IDR, split_annexb

FAKE_ADB = r'''#!{python}
"""Fake adb: logs its argv as one JSON line, answers `wm size`, and plays an H.264 file for screenrecord."""
import json, os, sys
log = os.environ["FAKE_ADB_LOG"]
with open(log, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
if args[:1] == ["shell"] and args[1] == "wm size":
    if os.environ.get("FAKE_ADB_SIZE"):
        print("Physical size: " + os.environ["FAKE_ADB_SIZE"])
    else:
        print("Physical size: 1080x2340")
        print("Override size: 720x1560")
elif args[:2] == ["exec-out", "screenrecord"]:
    import struct, time
    data = open(os.environ["FAKE_ADB_H264"], "rb").read()
    pace = float(os.environ.get("FAKE_ADB_PACE", "0"))
    while data:  # length-prefixed frames, written one by one like screenrecord does
        (size,) = struct.unpack("!I", data[:4])
        sys.stdout.buffer.write(data[4 : 4 + size])
        sys.stdout.buffer.flush()
        data = data[4 + size :]
        time.sleep(pace)
elif args[:1] == ["shell"] and "fail" in args[1]:
    print("error: device offline", file=sys.stderr)
    sys.exit(1)
'''


def encode_stream(frames: int = 12) -> list[bytes]:
    enc = H264Encoder(64, 48, fps=10, bitrate=200_000, keyframe_interval=0.5)
    units = []
    for i in range(frames):
        img = np.full((48, 64, 3), (i * 20) % 256, dtype=np.uint8)
        img[: i + 1, : i + 1] = 255
        units.extend(u.data for u in enc.encode(img))
    units.extend(u.data for u in enc.flush())
    return units


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    script = tmp_path / "adb"
    script.write_text(FAKE_ADB.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    units = encode_stream()
    (tmp_path / "screen.h264").write_bytes(b"".join(struct.pack("!I", len(u)) + u for u in units))
    monkeypatch.setenv("FAKE_ADB_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("FAKE_ADB_H264", str(tmp_path / "screen.h264"))
    return script, units, tmp_path / "log"


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_commands():
    c = AdbCommands("adb", "emulator-5554")
    assert c.tap(10, 20, 50) == ["adb", "-s", "emulator-5554", "shell", "input swipe 10 20 10 20 50"]
    assert c.tap(10, 20, 0)[-1] == "input swipe 10 20 10 20 1"
    assert AdbCommands().swipe(1, 2, 3, 4, 300) == ["adb", "shell", "input swipe 1 2 3 4 300"]
    assert AdbCommands().global_action("back")[-1] == "input keyevent KEYCODE_BACK"
    assert AdbCommands().global_action("recents")[-1] == "input keyevent KEYCODE_APP_SWITCH"
    assert AdbCommands().global_action("notifications")[-1] == "cmd statusbar expand-notifications"
    assert AdbCommands().key("Backspace")[-1] == "input keyevent KEYCODE_DEL"
    assert AdbCommands().key("a")[-1] == "input text a"
    assert AdbCommands().screenrecord(368, 800, 1_000_000) == [
        "adb",
        "exec-out",
        "screenrecord",
        "--output-format=h264",
        "--size=368x800",
        "--bit-rate=1000000",
        "--time-limit=180",
        "-",
    ]


def test_text_is_quoted_for_the_device_shell():
    lines = AdbCommands().text("it's a; $(reboot)\nline 2")
    assert [shlex.split(argv[-1]) for argv in lines] == [
        ["input", "text", "it's%sa;%s$(reboot)"],
        ["input", "keyevent", "KEYCODE_ENTER"],
        ["input", "text", "line%s2"],
    ]


def test_parse_wm_size():
    assert parse_wm_size("Physical size: 1080x2340\n") == (1080, 2340)
    assert parse_wm_size("Physical size: 1080x2340\nOverride size: 720x1560\n") == (720, 1560)
    with pytest.raises(ValueError):
        parse_wm_size("error: no devices/emulators found")


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
def test_splitter_recovers_the_access_units(chunk):
    units = encode_stream()
    stream = b"".join(units)
    splitter = AccessUnitSplitter()
    out = []
    for i in range(0, len(stream), chunk):
        out.extend(splitter.feed(stream[i : i + chunk]))
    out.extend(splitter.flush())
    assert [split_annexb(u) for u in out] == [split_annexb(u) for u in units]
    assert any(n[0] & 0x1F == NAL_IDR for n in split_annexb(out[0]))


def test_splitter_ignores_garbage_before_the_first_start_code():
    units = encode_stream(3)
    splitter = AccessUnitSplitter()
    out = splitter.feed(b"\xff\xfe garbage" + b"".join(units)) + splitter.flush()
    assert len(out) == len(units)


async def test_source_with_fake_adb(fake_adb):
    script, units, log = fake_adb
    src = AdbSource(adb=str(script), serial="XYZ")
    await src.start()
    assert (src.width, src.height) == (720, 1560)
    await src.tap(5, 6, 700)
    await src.swipe(1, 2, 3, 4, 100)
    await src.global_action("home")
    await src.key("Enter")
    await src.paste("a b")
    shells = [c[3] for c in calls(log) if c[2] == "shell"]
    assert shells == [
        "wm size",
        "input swipe 5 6 5 6 700",
        "input swipe 1 2 3 4 100",
        "input keyevent KEYCODE_HOME",
        "input keyevent KEYCODE_ENTER",
        "input text a%sb",
    ]
    assert all(c[:2] == ["-s", "XYZ"] for c in calls(log))
    # screenrecord stops at its time limit: the source restarts it and the stream goes on.
    got = []
    stream = src.h264(368, 800, 500_000)
    async for unit in stream:
        got.append(unit)
        if len(got) == 2 * len(units):
            break
    await stream.aclose()
    assert src.restarts == 2
    assert [split_annexb(u) for u in got] == [split_annexb(u) for u in units + units]
    records = [c for c in calls(log) if "screenrecord" in c]
    assert records[0] == [
        "-s",
        "XYZ",
        "exec-out",
        "screenrecord",
        "--output-format=h264",
        "--size=368x800",
        "--bit-rate=500000",
        "--time-limit=180",
        "-",
    ]
    await src.stop()


async def test_input_failure_is_logged_not_raised(fake_adb, caplog):
    script, _, _ = fake_adb
    src = AdbSource(adb=str(script))
    await src._input(AdbCommands(str(script)).shell("fail"))
    assert "device offline" in caplog.text


async def test_missing_adb_is_a_clear_error(tmp_path):
    src = AdbSource(adb=str(tmp_path / "no-adb"))
    with pytest.raises(OSError):
        await src.start()
    assert not os.path.exists(tmp_path / "no-adb")


async def test_agent_relays_the_device_stream_and_sends_input(fake_adb, server, monkeypatch):
    """Fake device → agent (no re-encoding) → server → viewer; the viewer's tap becomes `adb shell input`."""
    from apuppet.agent.agent import Agent, AgentOptions

    from ..conftest import SECRET
    from ..viewer import Viewer

    script, units, log = fake_adb
    monkeypatch.setenv("FAKE_ADB_SIZE", "64x48")
    monkeypatch.setenv("FAKE_ADB_PACE", "0.05")
    source = AdbSource(adb=str(script))
    agent = Agent(AgentOptions(server_url=server.url, secret=SECRET, name="Fake"), source)
    task = asyncio.get_running_loop().create_task(agent.run())
    try:
        async with asyncio.timeout(20):
            await agent.connected.wait()
        creds = agent.credentials
        async with Viewer(server.url, SECRET, creds.session, creds.password) as v:
            assert await v.message(lambda t: t.startswith("stream")) == "streamingVideoResolution,64,48"
            frame = await v.until(lambda f: True, timeout=20)
            assert frame.shape == (48, 64, 3)
            v.send("tap,10,20,50")
            async with asyncio.timeout(10):
                while ["shell", "input swipe 10 20 10 20 50"] not in calls(log):
                    await asyncio.sleep(0.05)
        assert source.restarts >= 1
        assert any("--size=64x48" in c for c in calls(log) if "screenrecord" in c)
    finally:
        agent.stop()
        async with asyncio.timeout(15):
            await task
    assert source._process is None
