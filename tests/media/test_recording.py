"""`recording.SessionRecording` and `Recordings`: real H.264 (libx264) in RTP (the agent's packetizer) through
the relay into files on disk, decoded back with PyAV and compared with the pictures that were sent."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from apuppet.media import recording as recording_module
from apuppet.media.recording import Mp4Writer, Recordings, SessionRecording, file_name
from apuppet.media.relay import RelayViewer, StreamRelay
from apuppet.ops.recordings import list_recordings, parse_name

from .recorded import FPS, SOURCE, Stream, decode, difference, feed
from .source import code_frame


async def test_a_recording_decodes_to_the_pictures_sent(tmp_path: Path) -> None:
    relay = StreamRelay()
    rec = SessionRecording(relay, tmp_path, "4815162342", "test")
    stream = Stream(size=(322, 242))  # not multiples of 16: the size comes from the SPS's cropping
    feed(relay, stream, range(90))
    await rec.close()
    assert rec.path is not None and rec.written == 90 and rec.dropped == 0 and not rec.failed
    assert [p.name for p in tmp_path.iterdir()] == [rec.path.name]  # renamed: no .part left
    started, device, complete = parse_name(rec.path.name) or (None, "", False)
    assert device == "4815162342" and complete and started is not None
    assert abs(started.timestamp() - rec.started.timestamp()) < 1
    assert oct(rec.path.stat().st_mode & 0o777) == oct(0o600)

    got = decode(rec.path)
    assert (got.width, got.height) == (322, 242)
    assert got.codes == list(range(90))
    assert got.keyframes[0] and sum(got.keyframes) == 3
    assert got.times == pytest.approx([i / FPS for i in range(90)], abs=1e-3)
    for i in (0, 31, 89):  # the decoded pictures are the source's, within H.264's loss
        assert difference(got.pictures[i], code_frame(i, 322, 242)) < 6


async def test_a_recording_that_starts_mid_stream_begins_with_the_kept_keyframe(tmp_path: Path) -> None:
    relay = StreamRelay()
    stream = Stream()
    feed(relay, stream, range(45))  # keyframes at 0 and 30: the relay keeps 30-44
    rec = SessionRecording(relay, tmp_path, "7", "test")
    feed(relay, stream, range(45, 75))
    await rec.close()
    assert rec.path is not None
    got = decode(rec.path)
    assert got.codes == list(range(30, 75)) and got.keyframes[0]
    assert got.times[0] == 0 and got.times[-1] == pytest.approx(44 / FPS, abs=1e-3)


async def test_a_loss_restarts_the_recording_cleanly_at_the_next_keyframe(tmp_path: Path) -> None:
    relay = StreamRelay()
    rec = SessionRecording(relay, tmp_path, "7", "test")
    stream = Stream()
    for i in range(90):
        packets = stream.packets(i)
        if i == 40:
            packets = packets[:-1]  # frame 40 loses its last packet
        for packet in packets:
            relay.feed(packet, SOURCE)
    await rec.close()
    assert rec.path is not None
    got = decode(rec.path)
    # Nothing broken in between: 41-59 referenced the damaged picture; the file goes on at keyframe 60 and
    # keeps the gap as time, not as grey or smeared pictures.
    assert got.codes == [*range(40), *range(60, 90)]
    assert got.times[40] == pytest.approx(60 / FPS, abs=1e-3)
    for picture, code in zip(got.pictures, got.codes, strict=True):
        assert difference(picture, code_frame(code)) < 6


@pytest.mark.parametrize(("bound", "value", "heads"), [("MAX_QUEUED", 3, (3, 4)), ("MAX_QUEUED_BYTES", 1, (1, 2))])
async def test_a_slow_disk_drops_pictures_never_the_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound: str, value: int, heads: tuple[int, int]
) -> None:
    """The writer thread stalls (a disk that does not answer): the relay keeps forwarding at full speed, the
    recording drops what does not fit in its queue (pictures or bytes) and continues at a keyframe once the disk
    is back."""
    monkeypatch.setattr(recording_module, bound, value)
    disk = threading.Event()
    write = Mp4Writer.write

    def stalled_write(self: Mp4Writer, sample: recording_module.Sample) -> None:
        disk.wait(30)
        write(self, sample)

    monkeypatch.setattr(Mp4Writer, "write", stalled_write)
    relay = StreamRelay()
    forwarded: list[bytes] = []
    viewer = RelayViewer(0x1234, 96, forwarded.append)
    relay.add_viewer(viewer)
    rec = SessionRecording(relay, tmp_path, "7", "test")
    stream = Stream()
    packets = [stream.packets(i) for i in range(90)]
    started = time.monotonic()
    for frame in packets[:45]:
        for packet in frame:
            relay.feed(packet, SOURCE)
    assert time.monotonic() - started < 5  # not held by the stalled disk
    assert len(forwarded) == sum(map(len, packets[:45]))
    disk.set()
    async with asyncio.timeout(20):
        while rec._pending:
            await asyncio.sleep(0.01)
    monkeypatch.setattr(recording_module, bound, 10**9)  # the disk is back: room again
    for frame in packets[45:]:
        for packet in frame:
            relay.feed(packet, SOURCE)
    await rec.close()
    assert rec.dropped > 0 and rec.path is not None
    got = decode(rec.path)
    # 0 went to the stalled writer (or still waited), the next ones filled the queue, the rest until the disk came
    # back was dropped, keyframe 30 too; the file resumes at keyframe 60, without a broken picture in between.
    head = got.codes.index(60)
    assert head in heads and got.codes == [*range(head), *range(60, 90)]
    assert got.keyframes[head]


async def test_an_unwritable_folder_fails_the_recording_not_the_relay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    relay = StreamRelay()
    forwarded: list[bytes] = []
    relay.add_viewer(RelayViewer(0x1234, 96, forwarded.append))
    with caplog.at_level(logging.WARNING, "apuppet.media.recording"):
        rec = SessionRecording(relay, blocker / "recordings", "4815162342", "mountpoint abcd1234")
        stream = Stream()
        feed(relay, stream, range(40))
        await rec.close()
    assert rec.failed and rec.written == 0
    assert len(forwarded) > 40
    lines = [r.getMessage() for r in caplog.records if r.name == "apuppet.media.recording"]
    assert len(lines) == 1 and "mountpoint abcd1234" in lines[0] and "failed" in lines[0]
    assert "4815162342" not in lines[0]  # a Session ID never reaches the log


async def test_recordings_start_with_the_first_viewer_and_end_with_the_last(tmp_path: Path) -> None:
    recordings = Recordings(tmp_path)
    relay = StreamRelay()
    stream = Stream()
    recordings.watched("7", relay, "mountpoint a")
    recordings.watched("7", relay, "mountpoint a")  # a second viewer of the same device: the same file
    feed(relay, stream, range(30))
    assert len(recordings.active) == 1 and len(relay.unit_listeners) == 1
    recordings.unwatched("7")
    assert not recordings.active and not relay.unit_listeners  # the relay no longer feeds it
    feed(relay, stream, range(30, 40))
    # The next session of the same device: a new file.
    recordings.watched("7", relay, "mountpoint a")
    feed(relay, stream, range(40, 70))
    await recordings.close()
    assert not recordings.active
    found = list_recordings(tmp_path)
    assert len(found) == 2 and all(r.complete and r.device == "7" for r in found)
    assert found[0].name != found[1].name  # the same second: the later one moves on by a second
    # The second starts with the keyframe the relay kept (30-39), as a viewer joining then would.
    assert sorted(decode(r.path).codes for r in found) == [list(range(30)), list(range(30, 70))]


async def test_another_workers_recording_of_the_same_second_is_never_truncated(tmp_path: Path) -> None:
    """Workers of one host share the folder: the device back through another worker within the same second
    must not open (and truncate) the `.part` the first worker is still writing."""
    relay = StreamRelay()
    rec = SessionRecording(relay, tmp_path, "7", "test")
    theirs = tmp_path / (file_name(rec.started, "7") + ".part")
    theirs.write_bytes(b"another worker's fragments")
    feed(relay, Stream(), range(30))
    await rec.close()
    assert theirs.read_bytes() == b"another worker's fragments"
    assert rec.path is not None and rec.path.name != theirs.name.removesuffix(".part")
    assert decode(rec.path).codes == list(range(30))
    # Race-proof, not only checked first: opening a name that appeared meanwhile refuses instead of truncating.
    with pytest.raises(FileExistsError):
        Mp4Writer(theirs, 320, 240)
    assert theirs.read_bytes() == b"another worker's fragments"


async def test_nothing_is_recorded_without_a_folder_or_before_a_picture(tmp_path: Path) -> None:
    relay = StreamRelay()
    off = Recordings(None)
    off.watched("7", relay, "mountpoint a")
    assert not off.active and not relay.unit_listeners
    await off.close()
    on = Recordings(tmp_path / "recordings")
    on.watched("7", relay, "mountpoint a")
    await on.close()  # watched, but the device never sent a picture: no empty file
    assert not (tmp_path / "recordings").exists()


@pytest.mark.parametrize("device", ["4815162342", "Pixel 7/é", "../../etc", "%41", "x" * 128, "x" * 300, "é" * 128])
def test_file_names_are_what_the_operators_tools_read(device: str) -> None:
    from datetime import UTC, datetime

    started = datetime(2026, 12, 6, 20, 34, 5, tzinfo=UTC)
    name = file_name(started, device)
    assert "/" not in name and len(name.encode()) < 255
    parsed = parse_name(name)
    assert parsed is not None
    assert parsed[0] == started and parsed[2] is True
    # Whole for any id of up to 128 ASCII characters (the plugin's limit); a longer encoding is cut at an escape.
    assert parsed[1] == device or (len(device.encode()) > 128 and device.startswith(parsed[1]))


def test_a_recording_killed_mid_session_leaves_a_playable_file(tmp_path: Path) -> None:
    """`kill -9` while fragments are being written: what was flushed plays. (The server-level version is in
    tests/ops/test_recordings_kill.py.)"""
    import signal
    import subprocess
    import sys

    script = f"""
import asyncio, sys, time
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
from pathlib import Path
from apuppet.media.relay import StreamRelay
from apuppet.media.recording import SessionRecording
from tests.media.recorded import Stream, feed

async def main():
    relay = StreamRelay()
    rec = SessionRecording(relay, Path({str(tmp_path)!r}), "7", "test")
    stream = Stream()
    for i in range(10_000):
        feed(relay, stream, [i])
        if i == 100:
            print("recording", flush=True)
        await asyncio.sleep(1 / 60)

asyncio.run(main())
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "recording"
        deadline = time.monotonic() + 20
        part = None
        while time.monotonic() < deadline:  # two fragments at least on disk
            parts = list(tmp_path.glob("*.part"))
            if parts and parts[0].stat().st_size > 40_000:
                part = parts[0]
                break
            time.sleep(0.05)
        assert part is not None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    got = decode(part)
    assert len(got.codes) >= 60 and got.codes == list(range(len(got.codes))) and got.keyframes[0]


async def test_a_device_that_rotates_goes_on_in_the_same_file(tmp_path: Path) -> None:
    """The agent restarts its encoder at another size (the phone turned): the new SPS travels in-band before the
    next keyframe, and the one file holds both sizes (the track header keeps the first)."""
    relay = StreamRelay()
    rec = SessionRecording(relay, tmp_path, "7", "test")
    portrait = Stream(size=(240, 320))
    feed(relay, portrait, range(30))
    landscape = Stream(size=(320, 240), first_timestamp=0x1000)
    landscape.packetizer.sequence_number = portrait.packetizer.sequence_number
    feed(relay, landscape, range(30, 60))
    await rec.close()
    assert rec.path is not None
    got = decode(rec.path)
    assert (got.width, got.height) == (240, 320)
    assert got.codes == list(range(60))
    assert [p.shape[:2] for p in got.pictures] == [(320, 240)] * 30 + [(240, 320)] * 30
    assert all(b > a for a, b in zip(got.times, got.times[1:], strict=False))


async def test_recordings_report_their_counts_for_metrics(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert Recordings(None).metrics() == {}
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    for folder, failed in ((tmp_path / "ok", 0), (blocker / "recordings", 1)):
        recordings = Recordings(folder)
        relay = StreamRelay()
        recordings.watched("7", relay, "mountpoint a")
        feed(relay, Stream(), range(10))
        assert recordings.metrics()["recordings"] == 1
        recordings.unwatched("7")
        with caplog.at_level(logging.ERROR):  # the failing one's warning is another test's subject
            await recordings.close()
        assert recordings.metrics() == {
            "recordings": 0,
            "recordings_started_total": 1,
            "recordings_failed_total": failed,
            "recording_pictures_dropped_total": 0,
        }


def test_the_muxer_has_no_codec_so_nothing_is_decoded_or_encoded(tmp_path: Path) -> None:
    writer = Mp4Writer(tmp_path / "x.mp4", 320, 240)
    try:
        assert writer.stream.codec_context is None  # a mux-only stream: packets in, packets out
        assert oct((tmp_path / "x.mp4").stat().st_mode & 0o777) == oct(0o600)
    finally:
        writer.close()
