"""Session recordings on disk: the PyAV muxer of one file, the writer thread of one session, and the streaming
plugin's `Recordings`, which starts and ends them.

A support session, for the recording, is the time a device is watched: it starts when the first viewer watches
its mountpoint and ends when the last one leaves (or the mountpoint goes). Every viewer of a device sees the
same picture, so viewers who watch together share one file instead of writing the same stream once each;
the audit log keeps who watched when, and `apuppet.ops.recordings.find_recording` finds the file of each
audit record by device and time.

Cost on the relay: the relay already assembles access units (`StreamRelay.unit_listeners`); a recording adds,
per picture (not per packet), a timeline step (`recorder.Recorder`) and an append to a deque. Muxing and disk
writes happen on the recording's own thread, which wakes every `WRITE_INTERVAL` and writes what came meanwhile,
so a slow disk never holds up the event loop: past `MAX_QUEUED` pictures waiting, pictures are dropped and the
file continues at the next keyframe.

Crash safety: the file is a fragmented MP4 (an empty `moov`, then a `moof`+`mdat` per keyframe or per
`FRAGMENT_SECONDS`), and each fragment is handed to the OS as soon as it is complete (`flush_packets`), so a
`kill -9` or a crash loses at most the fragment being filled. It is written as `<name>.part` and renamed on a
clean close; a `.part` left behind is still a playable MP4, which `apuppet recordings export` remuxes into a
plain one.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import os
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av

from .contain import CLOSE_TIMEOUT, spawn_owned
from .h264 import AccessUnit
from .recorder import Recorder, Sample
from .relay import StreamRelay
from .rtp import VIDEO_CLOCK_RATE

log = logging.getLogger(__name__)

#: A fragment is cut at each keyframe and at least this often: what a crash can lose.
FRAGMENT_SECONDS = 1.0
#: Pictures, and bytes, waiting for the writer thread before new ones are dropped (~10 s at 30 fps; the bytes
#: bound a device that sends huge pictures to a stalled disk).
MAX_QUEUED = 300
MAX_QUEUED_BYTES = 32 << 20
#: The writer thread wakes this often and writes what came meanwhile. Waking it per picture cost more CPU than
#: the muxing itself (a futex wake on the event loop's side, a GIL hand-over on each): bench/recording.py.
WRITE_INTERVAL = 0.25
PART = ".part"
_STAMP = "%Y%m%dT%H%M%SZ"
_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


#: Characters of the percent-encoded device id in a file name: with the time, `-`, `.mp4` and `.part`, within the
#: 255 bytes file systems allow. Any mountpoint id of ASCII letters and digits (at most 128) fits whole.
MAX_DEVICE_CHARS = 220


def file_name(started: datetime, device: str) -> str:
    """The complete file's name; the format `apuppet.ops.recordings` parses (media/ cannot import it)."""
    from urllib.parse import quote

    encoded = quote(device, safe="-_.~")
    if len(encoded) > MAX_DEVICE_CHARS:  # cut between characters, never inside one's escapes
        parts, size = [], 0
        for char in device:
            part = quote(char, safe="-_.~")
            if size + len(part) > MAX_DEVICE_CHARS:
                break
            parts.append(part)
            size += len(part)
        encoded = "".join(parts)
    return f"{started.astimezone(UTC).strftime(_STAMP)}-{encoded or '_'}.mp4"


class Mp4Writer:
    """One fragmented MP4, muxed by PyAV from Annex-B samples. The stream has no codec context: nothing is
    decoded or encoded; FFmpeg's MP4 muxer takes the avcC from the first keyframe's SPS/PPS and rewrites start
    codes as lengths."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        # Created here with owner-only permissions (FFmpeg would use the umask): recordings show people's screens.
        # O_EXCL: FileExistsError rather than truncating a recording another worker sharing the folder just began.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        options = {
            "movflags": "frag_keyframe+empty_moov+default_base_moof",
            "frag_duration": str(int(FRAGMENT_SECONDS * 1_000_000)),
            "flush_packets": "1",
        }
        self.path = path
        try:
            self.container = av.open(str(path), "w", format="mp4", options=options)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        try:
            self.stream = self.container.add_mux_stream("h264", width=width, height=height, time_base=_TIME_BASE)
        except BaseException:
            self.container.close()
            path.unlink(missing_ok=True)
            raise

    def write(self, sample: Sample) -> None:
        packet = av.Packet(sample.data)
        packet.stream = self.stream
        packet.time_base = _TIME_BASE
        packet.pts = packet.dts = sample.pts
        packet.is_keyframe = sample.keyframe
        self.container.mux(packet)

    def close(self) -> None:
        self.container.close()


class SessionRecording:
    """The recording of one support session of one mountpoint, into `directory`. `label` names it in logs (a
    tag, never the device id, which is a Session ID)."""

    def __init__(self, relay: StreamRelay, directory: Path, device: str, label: str) -> None:
        self.relay = relay
        self.directory = directory
        self.device = device
        self.label = label
        self.started = datetime.now(UTC)
        self.recorder = Recorder()
        #: Pictures dropped because the writer fell behind.
        self.dropped = 0
        self.written = 0
        self.failed = False
        self.path: Path | None = None
        #: Pictures for the writer thread (a deque's append and popleft are atomic: no lock, no wake-up).
        self._pending: deque[Sample] = deque()
        #: Bytes queued so far and bytes taken by the thread: each written by one thread only, so no lock.
        self._put_bytes = 0
        self._taken_bytes = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"recording {label}", daemon=True)
        self._thread.start()
        now = time.monotonic()
        for sample in self.recorder.replay(relay.kept_gop(), now) if relay.has_keyframe else []:
            self._put(sample)
        relay.unit_listeners.append(self._unit)

    # -- event loop side: per picture ---------------------------------------------------------------------
    def _unit(self, unit: AccessUnit) -> None:
        sample = self.recorder.push(unit, time.monotonic())
        if sample is None or self.failed:
            return
        if len(self._pending) >= MAX_QUEUED or self._put_bytes - self._taken_bytes >= MAX_QUEUED_BYTES:
            self.dropped += 1
            self.recorder.restart()
            return
        self._put(sample)

    def _put(self, sample: Sample) -> None:
        self._put_bytes += len(sample.data)
        self._pending.append(sample)

    def stop(self) -> None:
        """Take no more pictures; the thread writes what is queued, then closes and renames the file."""
        if self._unit in self.relay.unit_listeners:
            self.relay.unit_listeners.remove(self._unit)
        self._stopping.set()  # after the last append: the thread drains everything before it ends

    async def close(self) -> None:
        """`stop`, and wait until the file is complete."""
        self.stop()
        await asyncio.to_thread(self._thread.join)

    # -- writer thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        writer: Mp4Writer | None = None
        pending = self._pending
        try:
            while True:
                stopping = self._stopping.wait(WRITE_INTERVAL)
                while pending:
                    sample = pending.popleft()
                    self._taken_bytes += len(sample.data)
                    if not self.failed:
                        writer = self._write(writer, sample)
                if stopping:
                    return
        finally:
            if writer is not None:
                self._finish(writer)

    def _write(self, writer: Mp4Writer | None, sample: Sample) -> Mp4Writer | None:
        try:
            if writer is None:
                writer = self._open()
            writer.write(sample)
            self.written += 1
        except (OSError, av.FFmpegError, ValueError) as exc:
            # A full disk or an unwritable folder: this session is not recorded, the relay goes on.
            self.failed = True
            log.warning("recording of %s failed and stopped: %s", self.label, _reason(exc))
        return writer

    def _open(self) -> Mp4Writer:
        width, height = self.recorder.dimensions or (0, 0)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        started = self.started
        while True:
            # Two sessions of one device in one second (a viewer who reconnects at once, or the device back through
            # another worker that shares the folder) must not share a file: the .part is created exclusively.
            final = self.directory / file_name(started, self.device)
            if not final.exists():
                try:
                    writer = Mp4Writer(final.with_name(final.name + PART), width, height)
                    break
                except FileExistsError:
                    pass
            started += timedelta(seconds=1)
        self.path = final
        log.info("recording %s: started (%dx%d)", self.label, width, height)
        return writer

    def _finish(self, writer: Mp4Writer) -> None:
        assert self.path is not None
        try:
            writer.close()
            if not self.failed:
                os.replace(writer.path, self.path)
        except (OSError, av.FFmpegError) as exc:
            log.warning(
                "recording %s could not be closed (the .part file stays playable): %s", self.label, _reason(exc)
            )
            return
        log.info(
            "recording %s: %s, %d pictures, %.0f s, %d dropped",
            self.label,
            "failed" if self.failed else "complete",
            self.written,
            self.recorder.duration,
            self.dropped,
        )


def _reason(exc: BaseException) -> str:
    return exc.strerror or type(exc).__name__ if isinstance(exc, OSError) else type(exc).__name__


class Recordings:
    """The streaming plugin's recordings: one `SessionRecording` per watched mountpoint while `directory` is set
    (`MediaSettings.recordings_dir`; nothing is recorded without one)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.active: dict[str, SessionRecording] = {}
        self._closing: set[asyncio.Task[Any]] = set()
        #: Recordings stopped whose thread still writes what was queued.
        self._ending: set[SessionRecording] = set()
        #: Of the recordings that ended: pictures dropped (the writer fell behind) and recordings that failed.
        self._dropped = 0
        self._failed = 0
        self._started = 0

    def watched(self, key: str, relay: StreamRelay, label: str) -> None:
        """A viewer watches mountpoint `key`: its recording starts unless one runs."""
        if self.directory is None:
            return
        current = self.active.get(key)
        if current is not None and current.relay is relay:
            return
        if current is not None:  # a new mountpoint under the same id
            self.unwatched(key)
        self.active[key] = SessionRecording(relay, self.directory, key, label)
        self._started += 1

    def unwatched(self, key: str) -> None:
        """The last viewer of `key` left, or the mountpoint went: its recording ends."""
        recording = self.active.pop(key, None)
        if recording is not None:
            recording.stop()
            self._ending.add(recording)
            spawn_owned(self._close(recording), "recording close", self._closing)

    async def _close(self, recording: SessionRecording) -> None:
        try:
            await recording.close()
        finally:
            self._ending.discard(recording)
            self._dropped += recording.dropped
            self._failed += recording.failed

    def metrics(self) -> dict[str, float]:
        """For /metrics: recordings running, started, failed (disk full, folder not writable) and pictures dropped
        (a disk too slow); nothing when recording is off."""
        if self.directory is None:
            return {}
        running = [*self.active.values(), *self._ending]
        return {
            "recordings": len(self.active),
            "recordings_started_total": self._started,
            "recordings_failed_total": self._failed + sum(r.failed for r in running),
            "recording_pictures_dropped_total": self._dropped + sum(r.dropped for r in running),
        }

    async def close(self) -> None:
        for key in list(self.active):
            self.unwatched(key)
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=CLOSE_TIMEOUT)
