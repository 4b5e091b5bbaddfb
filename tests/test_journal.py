"""The journal of commits waiting to be published."""

from __future__ import annotations

import json

from cachesync.generations import Generation
from cachesync.journal import Journal, JournalEntry
from cachesync.names import CacheRef


def entry(name: str, n: int, created: float, node: str = "a") -> JournalEntry:
    return JournalEntry("ns", name, Generation(n, node).tag, f"img{n}", created, n)


def test_add_pending_drop(tmp_path):
    j = Journal(tmp_path)
    assert j.pending() == []
    e2, e1, e3 = entry("c", 2, 20.0), entry("c", 1, 10.0), entry("d", 1, 15.0)
    for e in (e2, e1, e3):
        j.add(e)
    assert j.pending() == [e1, e3, e2]          # oldest commit first
    assert e1.ref == CacheRef("ns", "c") and e1.generation == Generation(1, "a")
    assert (tmp_path / "ns__c__g00000001-a.json").exists()
    j.drop(e1)
    j.drop(e1)                                   # twice is harmless
    assert j.pending() == [e3, e2]


def test_add_is_idempotent(tmp_path):
    j = Journal(tmp_path)
    j.add(entry("c", 1, 1.0))
    j.add(entry("c", 1, 1.0))
    assert len(j.pending()) == 1


def test_same_time_sorted_by_generation(tmp_path):
    j = Journal(tmp_path)
    j.add(entry("c", 3, 5.0, "b"))
    j.add(entry("c", 3, 5.0, "a"))
    assert [e.tag for e in j.pending()] == ["g00000003-a", "g00000003-b"]


def test_unreadable_entries_are_skipped_not_deleted(tmp_path):
    j = Journal(tmp_path)
    j.add(entry("c", 1, 1.0))
    (tmp_path / "garbage.json").write_text("{")
    (tmp_path / "wrong.json").write_text(json.dumps({"namespace": "ns"}))
    assert [e.tag for e in j.pending()] == ["g00000001-a"]
    assert (tmp_path / "garbage.json").exists() and (tmp_path / "wrong.json").exists()
