from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from apuppet.ops.audit import Audit, AuditStore, format_records


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_remote_control_sessions_are_recorded(tmp_path: Path) -> None:
    clock = Clock()
    audit = Audit(AuditStore(tmp_path / "audit.sqlite3"), clock=clock)
    audit("participant_joined", {"room": "R1", "username": "device:Pixel", "display": "Pixel 7", "remote": "1.1.1.1"})
    audit("participant_joined", {"room": "R1", "username": "admin:abc", "remote": "2.2.2.2"})
    clock.now += 95
    audit("participant_left", {"room": "R1", "username": "admin:abc", "reason": "hangup"})
    audit("participant_joined", {"room": "R1", "username": "admin:def", "remote": "3.3.3.3"})
    clock.now += 5
    audit("room_destroyed", {"room": "R1"})
    audit("participant_joined", {"room": "R2", "username": "admin:x", "remote": "4.4.4.4"})
    audit.close()  # server stops: open records are closed

    store = AuditStore(tmp_path / "audit.sqlite3")
    newest, second, first = store.records()
    assert (first.device, first.viewer, first.viewer_address, first.duration, first.end_reason) == (
        "Pixel 7",
        "admin:abc",
        "2.2.2.2",
        95,
        "hangup",
    )
    assert (second.viewer, second.duration, second.end_reason) == ("admin:def", 5, "room destroyed")
    assert (newest.device, newest.end_reason) == (None, "server stopped")
    table = format_records(store.records())
    assert "Pixel 7" in table and "95 s" in table and "2.2.2.2" in table
    store.close()


async def test_a_reader_queries_from_a_worker_thread_beside_the_writer_and_cannot_write(tmp_path: Path) -> None:
    writer = AuditStore(tmp_path / "a b#?.sqlite3")  # a name that must be quoted in the URI
    writer.start("R1", "Pixel 7", "admin:abc", "2.2.2.2", 1_700_000_000.0)

    def query() -> tuple[int, str]:
        reader = AuditStore.reader(writer.path)
        try:
            records, total = reader.query(device="Pixel")
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.start("R2", None, "admin:x", None, 1.0)
            return total, records[0].viewer
        finally:
            reader.close()

    assert await asyncio.to_thread(query) == (1, "admin:abc")
    writer.start("R1", "Pixel 7", "admin:def", "3.3.3.3", 1_700_000_100.0)  # the writer is not locked out
    assert (await asyncio.to_thread(query))[0] == 2
    writer.close()
