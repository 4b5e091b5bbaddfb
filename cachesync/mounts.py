"""Adapter for mount syscalls: bind mounts, propagation, unmounts and /proc/self/mountinfo.

Nothing else in cachesync mounts or unmounts. Calls go straight to libc (mount(2), umount2(2))
through ctypes, so no process is forked on the setup path. Failures raise MountError with the
path and the errno text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import MountError

log = logging.getLogger(__name__)

# <linux/mount.h>
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

MOUNTINFO = Path("/proc/self/mountinfo")
_ESCAPE = re.compile(r"\\([0-7]{3})")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo."""

    mount_id: int
    parent_id: int
    device: str                 # major:minor of the filesystem (same for a bind of it)
    root: str
    mountpoint: str
    options: str
    optional: tuple[str, ...]   # e.g. ("shared:12",)
    fstype: str
    source: str
    super_options: str

    @property
    def shared(self) -> bool:
        return any(o.startswith("shared:") for o in self.optional)

    def super_option(self, name: str) -> str | None:
        for opt in self.super_options.split(","):
            key, _, value = opt.partition("=")
            if key == name:
                return value
        return None


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        entries.append(MountEntry(
            mount_id=int(fields[0]), parent_id=int(fields[1]), device=fields[2],
            root=_unescape(fields[3]), mountpoint=_unescape(fields[4]), options=fields[5], optional=tuple(fields[6:sep]),
            fstype=fields[sep + 1], source=_unescape(fields[sep + 2]),
            super_options=_unescape(fields[sep + 3]) if len(fields) > sep + 3 else ""))
    return entries


def mount_table() -> list[MountEntry]:
    try:
        return parse_mountinfo(MOUNTINFO.read_text())
    except OSError as e:
        raise MountError(f"cannot read {MOUNTINFO}: {e.strerror}") from e


def _real(path: Path | str) -> str:
    return os.path.realpath(path)


def find_mount(path: Path | str) -> MountEntry | None:
    """The topmost mount whose mount point is exactly ``path``, or None."""
    target = _real(path)
    found = [m for m in mount_table() if m.mountpoint == target]
    return found[-1] if found else None


def is_mountpoint(path: Path | str) -> bool:
    return find_mount(path) is not None


def mounts_under(path: Path | str) -> list[MountEntry]:
    """Mounts at ``path`` or below it, deepest first (the order to unmount them in)."""
    prefix = _real(path)
    found = [m for m in mount_table()
             if m.mountpoint == prefix or m.mountpoint.startswith(prefix.rstrip("/") + "/")]
    return sorted(found, key=lambda m: len(m.mountpoint), reverse=True)


def overlay_upperdir(merged: Path | str) -> Path | None:
    """The upper (writable) directory of the overlay mounted at ``merged``, or None."""
    entry = find_mount(merged)
    if entry is None or entry.fstype != "overlay":
        return None
    upper = entry.super_option("upperdir")
    return Path(upper) if upper else None


def _call(what: str, path: Path | str, fn, *args) -> None:
    if fn(*args) != 0:
        err = ctypes.get_errno()
        raise MountError(f"{what} {path}: {os.strerror(err)}") from OSError(err, os.strerror(err))


def bind(source: Path | str, target: Path | str) -> None:
    """Bind-mount ``source`` onto ``target`` (both must exist)."""
    log.debug("bind %s -> %s", source, target)
    _call(f"bind mount {source} onto", target, _libc.mount, os.fsencode(source),
          os.fsencode(target), None, MS_BIND, None)


def make_rshared(target: Path | str) -> None:
    """Mark the mount at ``target`` and everything below it shared (mount propagation)."""
    _call("make-rshared", target, _libc.mount, None, os.fsencode(target), None,
          MS_SHARED | MS_REC, None)


def umount(target: Path | str, lazy: bool = False) -> None:
    """Unmount ``target``; ``lazy`` detaches it now and frees it when no longer busy."""
    log.debug("umount %s%s", target, " (lazy)" if lazy else "")
    _call("unmount", target, _libc.umount2, os.fsencode(target), MNT_DETACH if lazy else 0)


def unmount_all(target: Path | str) -> int:
    """Unmount every mount at or below ``target`` (stacked ones too); busy ones lazily.

    Returns how many were unmounted. A mount hidden under another one is retried once the one
    on top is gone; one that vanished meanwhile is not an error.
    """
    count = 0
    while True:
        entries = mounts_under(target)
        if not entries:
            return count
        progress, last_error = False, None
        for entry in entries:
            try:
                umount(entry.mountpoint)
            except MountError as e:
                cause = e.__cause__
                code = cause.errno if isinstance(cause, OSError) else None
                if code == errno.EBUSY:
                    log.warning("%s is busy, detaching it lazily", entry.mountpoint)
                    umount(entry.mountpoint, lazy=True)
                elif code in (errno.EINVAL, errno.ENOENT):   # hidden or already gone
                    last_error = e
                    continue
                else:
                    raise
            count += 1
            progress = True
            break
        if not progress:
            assert last_error is not None
            raise last_error
