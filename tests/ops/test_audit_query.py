"""`AuditStore.query`: the console's filtered, paged view of the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apuppet.ops.audit import AuditStore, Record

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    s = AuditStore(tmp_path / "audit.sqlite3")
    # room, device, viewer, address, started, ended (None: ongoing)
    rows = [
        ("111", "Pixel 7", "admin:a", "192.0.2.10", T0, T0 + 100),
        ("111", "Pixel 7", "admin:b", "192.0.2.11", T0 + 200, T0 + 300),
        ("222", "Galaxy_S", "admin:c", "198.51.100.7", T0 + 400, T0 + 450),
        ("333", "50% phone", "admin:d", "2001:db8::1", T0 + 1000, None),
    ]
    for room, device, viewer, address, started, ended in rows:
        record = s.start(room, device, viewer, address, started)
        if ended is not None:
            s.end(record, ended, "left")
    yield s
    s.close()


def viewers(result: tuple[list[Record], int]) -> list[str]:
    return [r.viewer for r in result[0]]


def test_no_filter_is_everything_newest_first(store: AuditStore) -> None:
    records, total = store.query()
    assert total == 4
    assert [r.viewer for r in records] == ["admin:d", "admin:c", "admin:b", "admin:a"]


def test_device_by_part_of_its_name_or_its_session_id(store: AuditStore) -> None:
    assert viewers(store.query(device="pixel")) == ["admin:b", "admin:a"]  # LIKE is case-insensitive for ASCII
    assert viewers(store.query(device="222")) == ["admin:c"]
    assert viewers(store.query(device="22")) == []  # a Session ID matches whole, not in part


def test_like_wildcards_in_a_filter_match_themselves(store: AuditStore) -> None:
    assert viewers(store.query(device="50%")) == ["admin:d"]
    assert viewers(store.query(device="%")) == ["admin:d"]
    assert viewers(store.query(device="Galaxy_")) == ["admin:c"]
    assert viewers(store.query(device="y_S")) == ["admin:c"]
    assert viewers(store.query(device="Pixel_7")) == []  # `_` is not "any character"


def test_address_by_its_start(store: AuditStore) -> None:
    assert viewers(store.query(address="192.0.2.")) == ["admin:b", "admin:a"]
    assert viewers(store.query(address="192.0.2.11")) == ["admin:b"]
    assert viewers(store.query(address="2001:db8:")) == ["admin:d"]
    assert viewers(store.query(address="0.2.")) == []


def test_time_range_finds_the_sessions_overlapping_it(store: AuditStore) -> None:
    # [T0+250, T0+420]: b ended at +300 (overlaps), c started at +400 (overlaps), a ended at +100 (no), d at +1000.
    assert viewers(store.query(since=T0 + 250, until=T0 + 420)) == ["admin:c", "admin:b"]
    # An ongoing session overlaps any span after its start.
    assert viewers(store.query(since=T0 + 5000)) == ["admin:d"]
    assert viewers(store.query(until=T0 + 50)) == ["admin:a"]


def test_filters_combine(store: AuditStore) -> None:
    assert viewers(store.query(device="Pixel", since=T0 + 150)) == ["admin:b"]
    assert viewers(store.query(device="Pixel", address="198.51.100.")) == []


def test_paging_keeps_the_total(store: AuditStore) -> None:
    first, total = store.query(limit=3)
    second, total_again = store.query(limit=3, offset=3)
    assert (total, total_again) == (4, 4)
    assert [r.viewer for r in first + second] == ["admin:d", "admin:c", "admin:b", "admin:a"]
    assert store.query(limit=3, offset=10) == ([], 4)
