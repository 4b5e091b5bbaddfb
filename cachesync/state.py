"""A node's state root: every path a node keeps, its id, and per-cache locks.

    <root>/storage       buildah graph root (images, containers, layers)
    <root>/run           buildah run root
    <root>/journal/      commits waiting to be published (see journal.py)
    <root>/volumes/      one record per volume set up on this node
    <root>/blobs/        OCI layout: compressed layer blobs pushed or pulled (registry sync)
    <root>/locks/        per-cache lock files
    <root>/node-id       this node's id, made once

Two roots on one machine share nothing and behave as two nodes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import ConfigError, LockTimeout
from .names import CacheRef


@dataclass(frozen=True)
class NodeState:
    root: Path

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def journal(self) -> Path:
        return self.root / "journal"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def ensure(self) -> "NodeState":
        try:
            for d in (self.storage, self.run, self.journal, self.volumes, self.blobs, self.locks):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create node root {self.root}: {e.strerror}") from e
        return self

    def node_id(self, configured: str | None = None) -> str:
        """The configured id, else the one kept under root (made on first use)."""
        if configured:
            return configured
        path = self.root / "node-id"
        with contextlib.suppress(FileNotFoundError):
            value = path.read_text().strip()
            if value:
                return value
        self.root.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(4)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value + "\n")
        try:
            os.link(tmp, path)  # first writer wins
        except FileExistsError:
            value = path.read_text().strip()
        finally:
            tmp.unlink(missing_ok=True)
        return value

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float, poll: float = 0.05) -> Iterator[None]:
        """An exclusive advisory lock; released on exit and by the kernel if we die."""
        self.locks.mkdir(parents=True, exist_ok=True)
        path = self.locks / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if not flock_until(fd, time.monotonic() + timeout, poll):
                raise LockTimeout(f"lock {name!r} under {self.locks} is held by another "
                                  f"process for more than {timeout:g}s")
            yield
        finally:
            os.close(fd)

    def cache_lock(self, ref: CacheRef, timeout: float) -> contextlib.AbstractContextManager[None]:
        return self.lock(f"cache-{ref.key}", timeout)


def flock_until(fd: int, deadline: float, poll: float) -> bool:
    """Take an exclusive flock on ``fd``, polling until ``deadline`` (monotonic). False: timed out."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the whole new one, even after a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
