"""The audit log of remote-control sessions: who watched and drove which device, from where, how long, and how
it ended. Kept in SQLite under `data_dir`, listed by `apuppet sessions`.

A remote-control session starts when a participant other than the device (`device:<name>`) joins a textroom room
and ends when it leaves, is kicked, the room is destroyed or the server stops. The bookkeeping is plain logic over
the operator events; only `AuditStore` touches the disk.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS remote_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    device TEXT,
    viewer TEXT NOT NULL,
    viewer_address TEXT,
    started REAL NOT NULL,
    ended REAL,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS remote_sessions_started ON remote_sessions (started);
"""


@dataclass(frozen=True, slots=True)
class Record:
    id: int
    room: str
    device: str | None
    viewer: str
    viewer_address: str | None
    started: float
    ended: float | None
    end_reason: str | None

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


def is_device(username: str) -> bool:
    return username.lower().startswith("device:")


class AuditStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    @classmethod
    def reader(cls, path: Path) -> AuditStore:
        """A read-only connection to the store at `path`, made and used in one worker thread: the console's
        queries (a `LIKE '%…%'` scans the table) run off the event loop, beside the writer (WAL)."""
        store = cls.__new__(cls)
        store.path = path
        store.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        return store

    def start(self, room: str, device: str | None, viewer: str, address: str | None, when: float) -> int:
        cur = self.db.execute(
            "INSERT INTO remote_sessions (room, device, viewer, viewer_address, started) VALUES (?, ?, ?, ?, ?)",
            (room, device, viewer, address, when),
        )
        return int(cur.lastrowid or 0)

    def end(self, record_id: int, when: float, reason: str) -> None:
        self.db.execute(
            "UPDATE remote_sessions SET ended = ?, end_reason = ? WHERE id = ? AND ended IS NULL",
            (when, reason, record_id),
        )

    def end_all_open(self, when: float, reason: str) -> None:
        self.db.execute("UPDATE remote_sessions SET ended = ?, end_reason = ? WHERE ended IS NULL", (when, reason))

    def records(self, limit: int = 50) -> list[Record]:
        rows = self.db.execute(
            "SELECT id, room, device, viewer, viewer_address, started, ended, end_reason FROM remote_sessions "
            "ORDER BY started DESC, id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [Record(*row) for row in rows]

    def query(
        self,
        *,
        device: str | None = None,
        address: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Record], int]:
        """One page of the records matching every filter given, newest first, and how many match in all (the
        console's audit table). `device`: part of the device's name, or the room (Session ID) exactly; `address`:
        the viewer's address or its start (`192.0.2.` finds a /24); `since`/`until` (UNIX seconds): sessions that
        overlap that span, ongoing ones reaching until now. Values are bound parameters, and `%`/`_` in them
        match themselves."""
        where: list[str] = []
        args: list[Any] = []
        if device:
            where.append("(device LIKE ? ESCAPE '\\' OR room = ?)")
            args += [f"%{_like(device)}%", device]
        if address:
            where.append("viewer_address LIKE ? ESCAPE '\\'")
            args.append(f"{_like(address)}%")
        if since is not None:
            where.append("(ended IS NULL OR ended >= ?)")
            args.append(since)
        if until is not None:
            where.append("started <= ?")
            args.append(until)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        total = int(self.db.execute(f"SELECT COUNT(*) FROM remote_sessions{clause}", args).fetchone()[0])
        rows = self.db.execute(
            "SELECT id, room, device, viewer, viewer_address, started, ended, end_reason FROM remote_sessions"
            f"{clause} ORDER BY started DESC, id DESC LIMIT ? OFFSET ?",
            [*args, max(0, limit), max(0, offset)],
        ).fetchall()
        return [Record(*row) for row in rows], total

    def close(self) -> None:
        self.db.close()


def _like(text: str) -> str:
    """`text` as a literal inside a LIKE pattern (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Audit:
    """Gateway observer: turns textroom participant events into audit records."""

    def __init__(self, store: AuditStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.devices: dict[str, str] = {}  # room -> device display name
        self.open: dict[tuple[str, str], int] = {}  # (room, viewer) -> record id

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        room = str(fields.get("room", ""))
        username = str(fields.get("username", ""))
        if event == "participant_joined":
            if is_device(username):
                self.devices[room] = str(fields.get("display") or username.split(":", 1)[1])
            else:
                record = self.store.start(room, self.devices.get(room), username, fields.get("remote"), self.clock())
                self.open[(room, username)] = record
        elif event == "participant_left":
            if is_device(username):
                self.devices.pop(room, None)
            record_id = self.open.pop((room, username), None)
            if record_id is not None:
                self.store.end(record_id, self.clock(), str(fields.get("reason", "left")))
        elif event == "room_destroyed":
            self.devices.pop(room, None)
            for key in [k for k in self.open if k[0] == room]:
                self.store.end(self.open.pop(key), self.clock(), "room destroyed")

    def close(self) -> None:
        self.store.end_all_open(self.clock(), "server stopped")
        self.open.clear()
        self.store.close()


def _fit(text: str, width: int) -> str:
    """`text` in a column of `width`, cut with an ellipsis so that a cut name does not pass for a whole one."""
    return f"{text:{width}}" if len(text) <= width else text[: width - 1] + "…"


def format_records(records: list[Record], recordings: dict[int, str] | None = None) -> str:
    """The table of `apuppet sessions`. Every field but the times comes from clients (names, display names,
    reasons), so each goes through `printable` before it is cut to its column. `recordings` names the recording
    of each record by id (`ops.recordings.find_recording`); "—" where there is none."""
    from ..runtime import printable

    recordings = recordings or {}
    header = (
        f"{'started (UTC)':19}  {'duration':>9}  {'room':12}  {'device':20}  {'viewer':24}  {'address':39}  "
        f"{'recording':36}  ended"
    )
    lines = [header]
    for r in records:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.started))
        duration = "ongoing" if r.duration is None else f"{r.duration:.0f} s"
        room, device, viewer = printable(r.room), printable(r.device or "?"), printable(r.viewer)
        address, reason = printable(r.viewer_address or "?"), printable(r.end_reason or "")
        columns = f"{_fit(room, 12)}  {_fit(device, 20)}  {_fit(viewer, 24)}  {_fit(address, 39)}"
        recording = recordings.get(r.id, "—")
        lines.append(f"{started:19}  {duration:>9}  {columns}  {_fit(recording, 36)}  {reason}")
    return "\n".join(lines)
