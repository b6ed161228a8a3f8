"""`ops.recordings` and `apuppet recordings list|export`, on real recordings (libx264 through the relay into
`SessionRecording`, tests/media/recorded.py) and on the files an operator's folder also holds."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from apuppet.cli import main
from apuppet.config import Config
from apuppet.media.recording import file_name
from apuppet.ops.recordings import (
    PART,
    Listing,
    Recording,
    RecordingIndex,
    expired,
    export,
    find_recording,
    format_recordings,
    list_recordings,
    recording_at,
    recordings_dir,
    sweep,
)

from ..media.recorded import decode, make_recording

T0 = datetime(2026, 12, 6, 20, 0, 0, tzinfo=UTC)


def touch(folder: Path, name: str, size: int = 10, ended: datetime | None = None) -> Path:
    path = folder / name
    path.write_bytes(b"\0" * size)
    if ended is not None:
        os.utime(path, (ended.timestamp(), ended.timestamp()))
    return path


def boxes(path: Path) -> list[str]:
    """The top-level MP4 boxes, in file order."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos + 4 : pos + 8].decode("ascii", "replace"))
        if size < 8:
            break
        pos += size
    return out


def test_the_listing_reads_names_and_ignores_foreign_files(tmp_path: Path) -> None:
    a = touch(tmp_path, file_name(T0, "4815162342"), 100, T0 + timedelta(minutes=5))
    b = touch(
        tmp_path, file_name(T0 + timedelta(hours=1), "Pixel 7/é") + PART, 200, T0 + timedelta(hours=1, seconds=30)
    )
    for foreign in ("notes.txt", "20261206T200000Z-x.mkv", "20261399T000000Z-x.mp4", "20261206T200000Z-.mp4", ".part"):
        touch(tmp_path, foreign)
    (tmp_path / file_name(T0, "a-folder")).mkdir()
    (tmp_path / file_name(T0, "a-link")).symlink_to(a)
    found = list_recordings(tmp_path)
    assert [r.path for r in found] == [b, a]  # newest first
    newest, oldest = found
    assert (newest.device, newest.complete, newest.size) == ("Pixel 7/é", False, 200)
    assert newest.stem == file_name(T0 + timedelta(hours=1), "Pixel 7/é")
    assert newest.duration == 30
    assert (oldest.device, oldest.complete, oldest.started, oldest.duration) == ("4815162342", True, T0, 300)
    assert list_recordings(tmp_path / "missing") == []


def test_recordings_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    assert recordings_dir(Config(), tmp_path) == tmp_path / "recordings"
    assert recordings_dir(Config(recordings_dir="/srv/rec"), tmp_path) == Path("/srv/rec")
    assert recordings_dir(Config(recordings_dir="rec")) == Path.cwd() / "rec"


def rec(device: str, start_minute: int, end_minute: int) -> Recording:
    started = T0 + timedelta(minutes=start_minute)
    ended = T0 + timedelta(minutes=end_minute)
    return Recording(file_name(started, device), Path("/x"), device, started, 1, True, ended)


def test_find_recording_matches_the_device_and_the_most_time_in_common() -> None:
    first, second, other = rec("42", 0, 10), rec("42", 10, 30), rec("7", 0, 60)
    found = [second, first, other]
    at = T0.timestamp()
    assert find_recording(found, "42", at + 60, at + 9 * 60) == first  # Unix seconds, as the audit log keeps them
    assert find_recording(found, "42", T0 + timedelta(minutes=9), T0 + timedelta(minutes=25)) == second
    assert find_recording(found, "42", T0 + timedelta(minutes=20), None) == second  # still going
    assert find_recording(found, "7", at + 5, at + 10) == other
    assert find_recording(found, "42", at + 3600, at + 3700) is None  # no time in common
    assert find_recording(found, "99", at, at + 60) is None
    assert find_recording(found, None, at, at + 60) is None
    # The name is to the second, the file's last write may trail the end: a short session still finds its file.
    short = rec("42", 40, 40)
    assert find_recording([short], "42", short.started.timestamp() + 0.6, short.started.timestamp() + 1.5) == short


def test_retention_deletes_only_recordings_older_than_the_limit(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = touch(tmp_path, file_name(now - timedelta(days=40), "1"), 1000, now - timedelta(days=39))
    crashed = touch(tmp_path, file_name(now - timedelta(days=35), "2") + PART, 500, now - timedelta(days=35))
    recent = touch(tmp_path, file_name(now - timedelta(days=29), "3"), 10, now - timedelta(days=28))
    foreign = touch(tmp_path, "keep-me.txt", 10, now - timedelta(days=400))
    assert {r.path for r in expired(list_recordings(tmp_path), 30)} == {old, crashed}
    assert expired(list_recordings(tmp_path), 0) == []  # 0: kept forever
    assert sweep(tmp_path, 0) == (0, 0)
    assert sweep(tmp_path, 30) == (2, 1500)
    assert sorted(tmp_path.iterdir()) == sorted([recent, foreign])


async def test_export_copies_a_complete_recording(tmp_path: Path) -> None:
    path = await make_recording(tmp_path / "recordings", frames=45)
    recording = list_recordings(tmp_path / "recordings")[0]
    export(recording, tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == path.read_bytes()
    assert decode(tmp_path / "out.mp4").codes == list(range(45))


async def test_export_remuxes_a_torn_part_into_a_plain_mp4(tmp_path: Path) -> None:
    """A `.part` cut in the middle of a fragment (what a kill leaves) becomes an MP4 with its index first and
    no fragments, holding every picture that reached the disk whole, bit for bit."""
    folder = tmp_path / "recordings"
    path = await make_recording(folder, frames=95)  # fragments of ~1 s: 30 pictures each
    complete = decode(path)
    data = path.read_bytes()
    moofs = [i - 4 for i in range(len(data)) if data[i : i + 4] == b"moof"]
    cut = moofs[2] + (moofs[3] - moofs[2]) // 2  # half of the third fragment
    torn = path.with_name(path.name + PART)
    torn.write_bytes(data[:cut])
    path.unlink()
    recording = list_recordings(folder)[0]
    assert not recording.complete
    export(recording, tmp_path / "out.mp4")
    assert boxes(tmp_path / "out.mp4")[:2] == ["ftyp", "moov"]  # +faststart: the index before the pictures
    assert "moof" not in boxes(tmp_path / "out.mp4")
    got = decode(tmp_path / "out.mp4")
    # The two complete fragments, and the pictures of the torn one that made it whole to the disk.
    assert 60 < len(got.codes) < 90 and got.codes == list(range(len(got.codes)))
    assert got.times == complete.times[: len(got.codes)]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(got.pictures, complete.pictures, strict=False))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary file left


def test_export_refuses_what_is_not_a_recording(tmp_path: Path) -> None:
    from apuppet.ops.recordings import ExportError

    junk = touch(tmp_path, file_name(T0, "1") + PART, 5000)
    with pytest.raises(ExportError, match="cannot be read"):
        export(list_recordings(tmp_path)[0], tmp_path / "out.mp4")
    assert junk.exists() and not (tmp_path / "out.mp4").exists()


def test_the_table_escapes_device_ids(tmp_path: Path) -> None:
    touch(tmp_path, file_name(T0, "\x1b[2Jx"), 2_500_000, T0 + timedelta(seconds=75))
    table = format_recordings(list_recordings(tmp_path))
    assert "\x1b" not in table and "\\x1b[2Jx" in table
    assert "75 s" in table and "2.5 MB" in table and "complete" in table


async def test_the_recordings_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("record_sessions: true\n")
    assert main(["recordings", "list", "--config", str(config)]) == 0
    assert "no recordings in" in capsys.readouterr().out

    folder = tmp_path / "recordings"
    path = await make_recording(folder, "4815162342", frames=40)
    time.sleep(1.1)  # a second recording, a second later (names are to the second)
    part = await make_recording(folder, "777", frames=70)
    shutil.move(part, part.with_name(part.name + PART))  # as a crash leaves it
    assert main(["recordings", "list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["started", "(UTC)", "device"]
    assert "777" in lines[1] and "incomplete" in lines[1] and lines[1].endswith(part.name + PART)
    assert "4815162342" in lines[2] and " complete " in lines[2] and lines[2].endswith(path.name)
    assert main(["recordings", "list", "--limit", "1", "--config", str(config)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2

    monkeypatch.chdir(tmp_path)
    assert main(["recordings", "export", path.name, "--config", str(config)]) == 0
    assert (tmp_path / path.name).read_bytes() == path.read_bytes()
    assert "copied" in capsys.readouterr().out
    assert main(["recordings", "export", path.name, "--config", str(config)]) == 1  # no silent overwrite
    assert "exists" in capsys.readouterr().err
    out = tmp_path / "crash.mp4"
    assert main(["recordings", "export", part.name, "-o", str(out), "--config", str(config)]) == 0
    assert "remuxed" in capsys.readouterr().out
    assert decode(out).codes == list(range(70)) and boxes(out)[:2] == ["ftyp", "moov"]
    for wrong in ("nothing.mp4", "../config.yaml", str(path)):
        assert main(["recordings", "export", wrong, "-o", str(tmp_path / "x.mp4"), "--config", str(config)]) == 1
        assert "no recording" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_sessions_name_each_records_recording() -> None:
    from apuppet.ops.audit import Record, format_records

    records = [
        Record(2, "4815162342", "Pixel", "admin:b", "10.0.0.2", T0.timestamp() + 60, None, None),
        Record(1, "4815162342", "Pixel", "admin:a", "10.0.0.1", T0.timestamp(), T0.timestamp() + 30, "left"),
    ]
    table = format_records(records, {1: file_name(T0, "4815162342")}).splitlines()
    assert table[0].split()[-2:] == ["recording", "ended"]
    assert "  —  " in table[1] and f"  {file_name(T0, '4815162342')}  " in table[2] and table[2].endswith("left")


def test_a_folder_that_cannot_be_read_is_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service user's 0700 folder, listed by another user (these tests run as root, which reads anything)."""
    config = tmp_path / "config.yaml"
    config.write_text("record_sessions: true\n")
    (tmp_path / "recordings").mkdir()

    def refused(path: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("apuppet.ops.recordings.os.scandir", refused)
    with pytest.raises(PermissionError):
        list_recordings(tmp_path / "recordings")
    for command in (["list"], ["export", "x.mp4"]):
        assert main(["recordings", *command, "--config", str(config)]) == 1
        assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"recordings_keep_days": -1}, "recordings_keep_days: -1 is not valid"),
        ({"recordings_dir": " "}, "recordings_dir: ' ' is not valid: must name a folder"),
        ({"record_sessions": "sometimes"}, "record_sessions: 'sometimes' is not valid"),
    ],
)
def test_recording_keys_are_checked(raw: dict[str, object], message: str) -> None:
    from apuppet.config import ConfigError, validate

    with pytest.raises(ConfigError, match=message):
        validate(raw)
    config = validate({"record_sessions": True, "recordings_keep_days": 0.5})
    assert config.record_sessions and config.recordings_keep_days == 0.5 and config.recordings_dir == "recordings"


def test_the_index_scans_again_only_when_the_folder_changed(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    index = RecordingIndex(folder, settle=0)  # every change trusted at once: what is tested is the key
    steps = iter(range(1, 100))

    def tick() -> None:
        """The folder's mtime moves, as with a change a clock tick later (two changes within one coarse tick are
        what `settle` is for, tested below)."""
        os.utime(folder, ns=(0, 10**9 * next(steps)))

    def add(name: str, size: int = 10, ended: datetime | None = None) -> Path:
        path = touch(folder, name, size, ended)
        tick()
        return path

    assert index.current().recordings == () and index.scans == 0  # no folder yet: empty, nothing to scan
    folder.mkdir()
    first = add(file_name(T0, "A"))
    add(file_name(T0 + timedelta(minutes=1), "B"))
    listing = index.current()
    assert [r.device for r in listing.recordings] == ["B", "A"] and index.scans == 1
    assert index.current() is listing and index.scans == 1  # unchanged: not scanned again
    add(file_name(T0 + timedelta(minutes=2), "A"))  # appears
    assert [r.device for r in index.current().recordings] == ["A", "B", "A"] and index.scans == 2
    first.unlink()  # disappears
    tick()
    assert [r.name for r in index.current().recordings].count(first.name) == 0 and index.scans == 3
    # A recording being written grows without the folder changing: its size and last write are read again.
    part = add(file_name(T0 + timedelta(minutes=3), "C") + PART, size=10, ended=T0 + timedelta(minutes=4))
    assert index.current().recordings[0].size == 10 and index.scans == 4
    with part.open("ab") as grown:
        grown.write(b"\0" * 90)
    os.utime(part, ((T0 + timedelta(minutes=5)).timestamp(),) * 2)
    newest = index.current().recordings[0]
    assert (newest.size, newest.duration, index.scans) == (100, 120.0, 4)
    os.rename(part, folder / newest.stem)  # completed
    tick()
    assert index.current().recordings[0].complete and index.scans == 5


def test_a_folder_changed_just_now_is_scanned_on_every_call(tmp_path: Path) -> None:
    """A change within the same timestamp tick as the scan leaves the mtime as it was: a listing of a folder
    changed less than `settle` ago is not kept."""
    touch(tmp_path, file_name(T0, "A"))
    index = RecordingIndex(tmp_path)
    index.current()
    index.current()
    assert index.scans == 2
    past = time.time() - 3600
    os.utime(tmp_path, (past, past))  # its ctime is now, though
    index.current()
    index.current()
    assert index.scans == 4


def test_the_listing_finds_an_audit_records_recording_among_its_devices_only(tmp_path: Path) -> None:
    for n in range(30):
        touch(
            tmp_path, file_name(T0 + timedelta(minutes=n), f"dev{n % 3}"), ended=T0 + timedelta(minutes=n, seconds=50)
        )
    recordings = list_recordings(tmp_path)
    listing = Listing.of(recordings)
    assert sorted(listing.by_device) == ["dev0", "dev1", "dev2"] and len(listing.by_device["dev1"]) == 10
    for n in range(30):
        start, end = (T0 + timedelta(minutes=n, seconds=s) for s in (2, 40))
        found = listing.find(f"dev{n % 3}", start, end)
        assert found is not None and found == find_recording(recordings, f"dev{n % 3}", start, end)
        assert found.started == T0 + timedelta(minutes=n)
    assert listing.find("other", T0, None) is None and listing.find(None, T0, None) is None


def test_a_recording_is_found_by_its_name_alone_and_only_a_regular_file(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    name = file_name(T0, "4815162342")
    touch(folder, name, size=64, ended=T0 + timedelta(seconds=30))
    found = recording_at(folder, name)
    assert found is not None and (found.path, found.size, found.duration, found.complete) == (
        folder / name,
        64,
        30,
        True,
    )
    (tmp_path / "secret.mp4").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.mp4", folder / file_name(T0, "link"))
    (folder / file_name(T0, "dir")).mkdir()
    for other in (file_name(T0, "link"), file_name(T0, "dir"), file_name(T0, "missing"), "../secret.mp4", "x.mp4"):
        assert recording_at(folder, other) is None, other
    assert recording_at(tmp_path / "none", name) is None
