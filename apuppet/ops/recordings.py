"""Session recordings on disk: their names, the listing, which one belongs to an audit record, retention, export.

The server records a device's screen into `recordings_dir` while it is watched (`apuppet.media.recording`), one
fragmented MP4 per support session, named `<UTC start>-<device>.mp4`, e.g. `20261206T203400Z-4815162342.mp4`.
`<device>` is the mountpoint id, which for aPuppet agents is the Session ID the audit log shows as the room
(`ops.audit.Record.room`), percent-encoded so that any id is a safe file name. The writer
(`apuppet.media.recording.file_name`) makes the names and this module reads them (ops/ does not import the
media layer); tests/media/test_recording.py checks that the two agree. While the recording runs the file is
`<name>.part`; it is renamed when the session ends cleanly. A `.part` left behind by a crash or `kill -9` is still
playable (its fragments reached the disk as they completed) and `export` turns it into a plain MP4.

Everything here reads names and file metadata only; PyAV is loaded by `export` alone. The console lists the
recordings on every page load and matches each audit row with one: `RecordingIndex` keeps the listing while the
folder is unchanged (its mtime and ctime) and indexes it by device, so that thousands of files cost one `stat` a
request, not a scan.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

from ..config import Config, resolve

SUFFIX = ".mp4"
#: Appended while a recording is written; removed by a clean close.
PART = ".part"
_STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^(\d{8}T\d{6}Z)-([A-Za-z0-9._~%-]{1,220})\.mp4(\.part)?$")
#: The file name's start is rounded down to the second and the file's last write may trail the session's end by
#: a fragment: that much slack when an audit record's times are compared with a recording's.
MATCH_SLACK = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class Recording:
    name: str
    path: Path
    #: The mountpoint id (the aPuppet Session ID, the audit record's `room`).
    device: str
    #: UTC, from the name (to the second).
    started: datetime
    size: int
    #: Closed cleanly (renamed from `.part`). An incomplete file is being written or was left by a crash.
    complete: bool
    #: UTC time of the file's last write: the end of a complete recording, the latest fragment of another.
    ended: datetime

    @property
    def duration(self) -> float:
        return max(0.0, (self.ended - self.started).total_seconds())

    @property
    def stem(self) -> str:
        """The name without `.part`: what `export` writes and what the file is called once complete."""
        return self.name.removesuffix(PART)


def parse_name(name: str) -> tuple[datetime, str, bool] | None:
    """(started, device, complete) of a recording's file name; None for any other file."""
    match = _NAME.match(name)
    if match is None:
        return None
    try:
        started = datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None
    return started, unquote(match.group(2)), match.group(3) is None


def recordings_dir(config: Config, base: Path | None = None) -> Path:
    """Where recordings go: `recordings_dir`, relative to `base` (the config file's folder, `Server.base_dir`), or
    to the working directory without one, as `Server.data_dir` is."""
    return resolve(base or Path.cwd(), config.recordings_dir)


def list_recordings(directory: Path) -> list[Recording]:
    """The recordings in `directory`, newest first; other files (and a missing folder) are ignored. A folder that
    cannot be read raises `OSError` (`PermissionError` for another user than the server's)."""
    found: list[Recording] = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        parsed = parse_name(entry.name)
        if parsed is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # deleted meanwhile (retention, an operator)
        started, device, complete = parsed
        ended = max(started, datetime.fromtimestamp(st.st_mtime, UTC))
        found.append(Recording(entry.name, Path(entry.path), device, started, st.st_size, complete, ended))
    found.sort(key=lambda r: (r.started, r.name), reverse=True)
    return found


#: A folder changed this recently may change again within the same timestamp tick (coarse on Linux, seconds on
#: some file systems) without its mtime moving: such a listing is not trusted, the next request scans anew.
RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class Listing:
    """One look at the folder: its recordings newest first, and the same by device (`find_recording`)."""

    recordings: tuple[Recording, ...] = ()
    by_device: Mapping[str, tuple[Recording, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, recordings: Iterable[Recording]) -> Listing:
        found = tuple(recordings)
        by_device: dict[str, list[Recording]] = {}
        for rec in found:
            by_device.setdefault(rec.device, []).append(rec)
        return cls(found, {device: tuple(recs) for device, recs in by_device.items()})

    def find(self, device: str | None, started: datetime | float, ended: datetime | float | None) -> Recording | None:
        """`find_recording` among the device's recordings only."""
        return find_recording(self.by_device.get(device or "", ()), device, started, ended)


class RecordingIndex:
    """The listing of one folder, scanned again only when the folder changed; blocking file I/O, meant to run in
    a thread (`current` may be called from several at once). Incomplete recordings grow without the folder
    changing: their size and last write are read again on every call (a few files: the sessions being recorded)."""

    def __init__(self, directory: Path, settle: float = RACY_NS / 1e9) -> None:
        """`settle`: seconds after a change during which the folder is scanned on every call (`RACY_NS`)."""
        self.directory = directory
        self.settle_ns = int(settle * 1e9)
        #: How many times the folder was scanned (tests and the benchmark read it).
        self.scans = 0
        self._lock = threading.Lock()
        self._listing = Listing()
        self._key: tuple[int, int, int] | None = None

    def current(self) -> Listing:
        """The folder's listing now. A missing folder is empty; one that cannot be read raises `OSError`."""
        with self._lock:
            try:
                st = os.stat(self.directory)
            except (FileNotFoundError, NotADirectoryError):
                self._listing, self._key = Listing(), None
                return self._listing
            key = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
            if key != self._key:
                self.scans += 1
                listing = Listing.of(list_recordings(self.directory))
                racy = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < self.settle_ns
                self._listing, self._key = listing, None if racy else key
            elif any(not r.complete for r in self._listing.recordings):
                self._listing = Listing.of(_restat(self._listing.recordings))
            return self._listing


def _restat(recordings: Iterable[Recording]) -> Iterable[Recording]:
    """The recordings with the size and last write of the incomplete ones read again (gone ones left out)."""
    for rec in recordings:
        if rec.complete:
            yield rec
            continue
        try:
            st = os.lstat(rec.path)
        except OSError:
            continue  # renamed to .mp4 (the folder changed: the next call scans) or deleted
        yield replace(rec, size=st.st_size, ended=max(rec.started, datetime.fromtimestamp(st.st_mtime, UTC)))


def recording_at(directory: Path, name: str) -> Recording | None:
    """The recording called `name` in `directory`, found by its name alone (no listing): None for a name that is
    not a recording's (the pattern allows no `/`, so it names a file of the folder itself), a missing file, a
    symlink or anything but a regular file. Raises `OSError` for a folder that cannot be read."""
    parsed = parse_name(name)
    if parsed is None:
        return None
    path = directory / name
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    started, device, complete = parsed
    ended = max(started, datetime.fromtimestamp(st.st_mtime, UTC))
    return Recording(name, path, device, started, st.st_size, complete, ended)


def _utc(value: datetime | float) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(value, UTC)


def find_recording(
    recordings: Iterable[Recording],
    device: str | None,
    started: datetime | float,
    ended: datetime | float | None,
) -> Recording | None:
    """The recording of an audit record's session: the same device (`Record.room`) and the most time in common
    with [`started`, `ended`] (`ended` None: still going). Times are aware datetimes or the audit log's Unix
    seconds. One recording covers every viewer who watched the device together, so several records may find
    the same file; a viewer who reconnected finds the file of the longest stretch."""
    if device is None:
        return None
    start = _utc(started)
    end = _utc(ended) if ended is not None else datetime.now(UTC)
    best: Recording | None = None
    best_score: tuple[timedelta, timedelta] | None = None
    for rec in recordings:
        if rec.device != device:
            continue
        if min(end, rec.ended + MATCH_SLACK) < max(start, rec.started - MATCH_SLACK):
            continue  # no time in common, even with the slack
        # Most time in common first, then the nearest start: a short session next to the following one.
        score = (min(end, rec.ended) - max(start, rec.started), -abs(rec.started - start))
        if best_score is None or score > best_score:
            best, best_score = rec, score
    return best


def expired(recordings: Iterable[Recording], keep_days: float, now: datetime | None = None) -> list[Recording]:
    """Recordings last written more than `keep_days` ago (none when `keep_days` is 0: kept forever)."""
    if keep_days <= 0:
        return []
    limit = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    return [r for r in recordings if r.ended < limit]


def sweep(directory: Path, keep_days: float, now: datetime | None = None) -> tuple[int, int]:
    """Delete the expired recordings of `directory`; returns (files deleted, bytes freed). Blocking file I/O:
    the server runs it in a thread."""
    deleted = freed = 0
    for rec in expired(list_recordings(directory), keep_days, now):
        try:
            rec.path.unlink()
        except FileNotFoundError:
            continue
        deleted += 1
        freed += rec.size
    return deleted, freed


class ExportError(Exception):
    """A recording that cannot be exported, worded for the operator."""


def export(recording: Recording, destination: Path) -> None:
    """Write `recording` to `destination` as an MP4 any player reads: a complete one is copied; an incomplete one
    (`.part`, perhaps cut short by a crash) is remuxed packet by packet, never decoded, into an MP4 with its index
    up front (`+faststart`), up to where the last fragment was torn."""
    if recording.complete:
        shutil.copyfile(recording.path, destination)
        return
    import av

    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        with av.open(str(recording.path), "r", format="mp4") as source:
            if not source.streams.video:
                raise ExportError(f"{recording.name}: no video in it (the session ended before its first picture)")
            video = source.streams.video[0]
            with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
                stream = out.add_stream_from_template(video)
                copied = 0
                for packet in source.demux(video):
                    if packet.is_corrupt:
                        break  # the torn end of the last fragment: its data never reached the disk
                    if packet.dts is None or packet.size == 0:
                        continue  # the demuxer's end-of-stream packet
                    packet.stream = stream
                    out.mux(packet)
                    copied += 1
                if not copied:
                    raise ExportError(f"{recording.name}: no complete picture in it")
        os.replace(tmp, destination)
    except av.error.FFmpegError as exc:
        raise ExportError(f"{recording.name}: cannot be read as MP4: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def format_recordings(recordings: list[Recording]) -> str:
    """The table of `apuppet recordings list`."""
    header = f"{'started (UTC)':19}  {'device':24}  {'duration':>9}  {'size':>9}  {'state':10}  name"
    lines = [header]
    for r in recordings:
        started = r.started.strftime("%Y-%m-%d %H:%M:%S")
        device = r.device if len(r.device) <= 24 else r.device[:23] + "…"
        state = "complete" if r.complete else "incomplete"
        size = human_size(r.size)
        lines.append(f"{started:19}  {_printable(device):24}  {r.duration:>7.0f} s  {size:>9}  {state:10}  {r.name}")
    return "\n".join(lines)


def _printable(text: str) -> str:
    from ..runtime import printable

    return printable(text)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
