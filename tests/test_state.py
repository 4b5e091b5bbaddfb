"""The node root: layout, node id, locks (per cache and per volume), atomic files."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from cachesync import records
from cachesync.errors import ConfigError, LockTimeout
from cachesync.names import CacheRef
from cachesync.state import NodeState, write_atomic


def test_ensure_makes_the_layout(tmp_path):
    state = NodeState(tmp_path / "root").ensure()
    for d in ("storage", "run", "journal", "volumes", "blobs", "locks"):
        assert (tmp_path / "root" / d).is_dir()
    assert state.ensure() == state   # twice is fine


def test_ensure_reports_an_unusable_root(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create node root"):
        NodeState(tmp_path / "file" / "root").ensure()


def test_node_id_is_made_once_and_kept(tmp_path):
    a, b = NodeState(tmp_path / "a"), NodeState(tmp_path / "b")
    first = a.node_id()
    assert first == a.node_id() == (tmp_path / "a" / "node-id").read_text().strip()
    assert len(first) == 8 and first.isalnum()
    assert b.node_id() != first          # two roots: two nodes
    assert a.node_id("configured") == "configured"


def _race_node_id(root: str, queue) -> None:
    queue.put(NodeState(Path(root)).node_id())


def test_node_id_first_writer_wins(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race_node_id, args=(str(tmp_path / "r"), queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
    ids = {queue.get(timeout=5) for _ in procs}
    assert len(ids) == 1
    assert ids == {(tmp_path / "r" / "node-id").read_text().strip()}


def test_cache_lock_is_exclusive_and_released(tmp_path):
    state = NodeState(tmp_path).ensure()
    ref = CacheRef("ns", "c")
    with state.cache_lock(ref, timeout=1):
        with pytest.raises(LockTimeout, match="held by another process"):
            with state.cache_lock(ref, timeout=0.1):
                pass
        with state.cache_lock(CacheRef("ns", "other"), timeout=0):   # other caches are free
            pass
    with state.cache_lock(ref, timeout=0):
        pass


def test_cache_lock_released_when_holder_dies(tmp_path):
    state = NodeState(tmp_path).ensure()
    ref = CacheRef("ns", "c")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: take the lock, say so, then die without releasing it
        with state.cache_lock(ref, timeout=1):
            os.write(w, b"1")
            time.sleep(0.3)
            os._exit(0)
    os.read(r, 1)
    with pytest.raises(LockTimeout):
        with state.cache_lock(ref, timeout=0):
            pass
    os.waitpid(pid, 0)
    with state.cache_lock(ref, timeout=0):
        pass


def test_volume_lock_waits_and_removes_its_file(tmp_path):
    state = NodeState(tmp_path).ensure()
    order = []
    with records.volume_lock(state, "v", timeout=1) as lock:
        def waiter():
            with records.volume_lock(state, "v", timeout=5):
                order.append("waiter")
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.1)
        order.append("holder")
        lock.remove()
    t.join(5)
    assert order == ["holder", "waiter"]
    # the waiter re-locked a fresh file (the holder's was removed) and left it in place
    assert (state.locks / "volume-v.lock").exists()
    with pytest.raises(LockTimeout, match="volume v is busy"):
        with records.volume_lock(state, "v", timeout=0):
            with records.volume_lock(state, "v", timeout=0):
                pass


def test_volume_lock_two_waiters_never_hold_it_together(tmp_path):
    state = NodeState(tmp_path).ensure()
    inside = []
    overlap = []

    def worker(i: int) -> None:
        for _ in range(20):
            with records.volume_lock(state, "v", timeout=10) as lock:
                inside.append(i)
                if len(inside) > 1:
                    overlap.append(tuple(inside))
                time.sleep(0.001)
                inside.remove(i)
                lock.remove()     # every holder removes the file: the worst case for waiters

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlap == []


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path):
    path = tmp_path / "d" / "f.json"
    write_atomic(path, b"old")
    write_atomic(path, b"new content")
    assert path.read_bytes() == b"new content"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.json"]


def test_records_round_trip_and_unreadable(tmp_path):
    state = NodeState(tmp_path).ensure()
    rec = records.VolumeRecord("v1", "/x/v1", "cachesync-v1", "ns", "c", True, records.READY,
                               base_tag="g00000001-a", size_bytes=5)
    records.save(state, rec)
    assert records.load(state, "v1") == rec and rec.cache == CacheRef("ns", "c")
    (state.volumes / "broken.json").write_text("{not json")
    assert records.load_all(state) == [rec]
    records.remove(state, "v1")
    records.remove(state, "v1")
    assert records.load(state, "v1") is None
