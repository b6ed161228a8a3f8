from __future__ import annotations

from pathlib import Path

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
