"""Volume records: what a node knows of each volume it set up, one JSON file per volume.

``<root>/volumes/<vol_name>.json`` is written atomically *before* anything is created, so every
container or mount cachesync makes is described by a record, and a crash at any moment leaves
something teardown or gc can finish from. Phases: ``creating`` (setup under way, or crashed
mid-way) and ``ready``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterator

from .errors import LockTimeout
from .names import CacheRef
from .state import NodeState, flock_until, write_atomic

log = logging.getLogger(__name__)

CREATING = "creating"
READY = "ready"
CONTAINER_PREFIX = "cachesync-"


def container_name(vol_name: str) -> str:
    return f"{CONTAINER_PREFIX}{vol_name}"


@dataclass(frozen=True)
class VolumeRecord:
    vol_name: str
    vol_dir: str
    container: str
    namespace: str
    name: str
    writable: bool
    phase: str = CREATING
    base_tag: str | None = None     # generation the volume was made from (None: scratch)
    base_image: str | None = None   # its image id
    merged: str | None = None       # the container's overlay mount point
    upper: str | None = None        # the container's overlay upper directory
    pvc_namespace: str | None = None
    pvc_name: str | None = None
    size_bytes: int | None = None
    created: float = 0.0
    commit_tag: str | None = None   # generation a teardown commit is (being) made as
    committed: bool = False         # that commit is done and journaled

    @property
    def cache(self) -> CacheRef:
        return CacheRef(self.namespace, self.name)


def path(state: NodeState, vol_name: str) -> Path:
    return state.volumes / f"{vol_name}.json"


def save(state: NodeState, record: VolumeRecord) -> None:
    write_atomic(path(state, record.vol_name),
                 json.dumps(asdict(record), sort_keys=True, indent=1).encode())


def _parse(p: Path) -> VolumeRecord | None:
    try:
        data = json.loads(p.read_text())
        known = {f.name for f in fields(VolumeRecord)}
        return VolumeRecord(**{k: v for k, v in data.items() if k in known})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        log.warning("unreadable volume record %s: %s", p, e)
        return None


def load(state: NodeState, vol_name: str) -> VolumeRecord | None:
    return _parse(path(state, vol_name))


def load_all(state: NodeState) -> list[VolumeRecord]:
    """Every readable record, by volume name."""
    out = [_parse(p) for p in sorted(state.volumes.glob("*.json"))]
    return [r for r in out if r is not None]


def remove(state: NodeState, vol_name: str) -> None:
    path(state, vol_name).unlink(missing_ok=True)


@contextlib.contextmanager
def volume_lock(state: NodeState, vol_name: str, timeout: float,
                poll: float = 0.02) -> Iterator["VolumeLock"]:
    """An exclusive lock on one volume, for setup, teardown and gc.

    Unlike the per-cache locks, a volume's lock file goes away with the volume: the holder may
    call ``remove()`` before leaving, and a waiter that wakes on a removed file tries again.
    """
    state.locks.mkdir(parents=True, exist_ok=True)
    lock_path = state.locks / f"volume-{vol_name}.lock"
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if not flock_until(fd, deadline, poll):
            os.close(fd)
            raise LockTimeout(f"volume {vol_name} is busy: another setup, teardown or gc "
                              f"holds {lock_path} for more than {timeout:g}s")
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder before us removed the file: lock the new one instead
            os.close(fd)
            continue
        lock = VolumeLock(lock_path)
        try:
            yield lock
        finally:
            if lock.removed:
                lock_path.unlink(missing_ok=True)
            os.close(fd)
        return


@dataclass
class VolumeLock:
    path: Path
    removed: bool = False

    def remove(self) -> None:
        """Delete the lock file on release (the volume is gone)."""
        self.removed = True
