"""Cache volumes: setup makes VOL_DIR a copy-on-write view of a cache, teardown commits it back.

A volume is a buildah container of the cache's newest local generation: the image layers are the
overlay's read-only lower layers, the container's own layer takes the writes. Its merged
directory is bind-mounted (rshared) onto VOL_DIR. Teardown commits a writable volume with changes
of a job that did not fail as the cache's next generation, under the per-cache lock, then removes
everything.

Crash safety: the volume record (records.py) is written before anything is made and removed only
after everything is gone, so setup, teardown and gc can always finish what a crash left. A commit
names its generation in the record first; a teardown that died after committing finds the image
and does not commit twice.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from . import mounts, records, store
from .errors import BuildahError, CachesyncError, VolumeError
from .generations import Generation, next_generation
from .journal import JournalEntry
from .names import CacheRef
from .node import Node
from .records import READY, VolumeRecord
# the inputs live in spec.py; volume.VolumeSpec and volume.teardown_target are the public names
from .spec import VolumeKey, VolumeSpec, parse_job_result, teardown_target

__all__ = ["VolumeSpec", "VolumeKey", "SetupResult", "TeardownResult", "CommitDecision", "setup",
           "teardown", "teardown_target", "commit_decision", "should_squash", "release"]

log = logging.getLogger(__name__)

VOLUME_ROOT_MODE = 0o777   # like local-path-provisioner: any build user may write


# ---------------------------------------------------------------------------- decisions

@dataclass(frozen=True)
class CommitDecision:
    commit: bool
    reason: str


def commit_decision(writable: bool, job_result: str, commit_on: str,
                    has_changes: bool) -> CommitDecision:
    """Whether teardown commits a volume back into its cache."""
    if not writable:
        return CommitDecision(False, "read-only volume, writes discarded")
    if commit_on != "always" and job_result == "failed":
        return CommitDecision(False, "job failed, writes discarded")
    if not has_changes:
        return CommitDecision(False, "no changes")
    return CommitDecision(True, f"job {job_result}, commit-on {commit_on}")


def should_squash(base_layers: int, max_layers: int) -> bool:
    """Flatten when the commit would take the layer chain past ``max_layers``."""
    return base_layers + 1 > max_layers


# ---------------------------------------------------------------------------- results

@dataclass(frozen=True)
class SetupResult:
    vol_name: str
    vol_dir: Path
    cache: CacheRef
    container: str
    base: str | None          # generation tag the volume shows (None: empty cache)
    writable: bool
    existing: bool = False    # it was already set up: nothing done
    repaired: bool = False    # it was set up but its mounts were gone: remounted

    def summary(self) -> str:
        what = ("already set up" if self.existing and not self.repaired
                else "remounted" if self.repaired else "ready")
        mode = "writable" if self.writable else "read-only"
        return (f"volume {self.vol_name}: {what} at {self.vol_dir} from {self.cache}@"
                f"{self.base or 'empty'} ({mode})")


@dataclass(frozen=True)
class TeardownResult:
    vol_name: str
    cache: CacheRef | None
    committed: Generation | None
    reason: str
    squashed: bool = False
    removed: bool = True      # anything was there to remove

    def summary(self) -> str:
        if not self.removed:
            return f"volume {self.vol_name}: nothing to tear down"
        if self.committed:
            flat = ", flattened" if self.squashed else ""
            return (f"volume {self.vol_name}: committed {self.cache}@{self.committed}{flat}; "
                    "removed")
        return f"volume {self.vol_name}: not committed ({self.reason}); removed"


# ---------------------------------------------------------------------------- setup

def setup(node: Node, spec: VolumeSpec) -> SetupResult:
    ctx = {"cache": str(spec.cache), "volume": spec.vol_name}
    with records.volume_lock(node.state, spec.vol_name, node.settings.lock_timeout) as lock:
        rec = records.load(node.state, spec.vol_name)
        if rec is not None and rec.phase == READY:
            if (Path(rec.vol_dir), rec.cache, rec.writable) != (spec.vol_dir, spec.cache,
                                                                 spec.writable):
                raise VolumeError(f"volume {spec.vol_name} is already set up for "
                                  f"{rec.cache} at {rec.vol_dir} (writable={rec.writable}); "
                                  "tear it down first")
            repaired = _ensure_mounted(node, rec)
            log.info("volume already set up%s", ", remounted" if repaired else "", extra=ctx)
            return _setup_result(rec, existing=True, repaired=repaired)
        if rec is not None:  # a setup died half way: clear what it left, then start over
            log.warning("clearing a half-made volume", extra=ctx)
            release(node, rec)
        try:
            _check_vol_dir_free(spec.vol_dir)
            rec = _create(node, spec, ctx)
        except BaseException:
            if records.load(node.state, spec.vol_name) is None:  # rolled back completely
                lock.remove()
            raise
        log.info("volume ready", extra=ctx)
        return _setup_result(rec)


def _setup_result(rec: VolumeRecord, existing: bool = False,
                  repaired: bool = False) -> SetupResult:
    return SetupResult(rec.vol_name, Path(rec.vol_dir), rec.cache, rec.container, rec.base_tag,
                       rec.writable, existing, repaired)


def _check_vol_dir_free(vol_dir: Path) -> None:
    if mounts.mounts_under(vol_dir):
        raise VolumeError(f"VOL_DIR {vol_dir} already has something mounted on it")
    if vol_dir.exists() and (not vol_dir.is_dir() or any(vol_dir.iterdir())):
        raise VolumeError(f"VOL_DIR {vol_dir} exists and is not an empty directory")


def _create(node: Node, spec: VolumeSpec, ctx: dict) -> VolumeRecord:
    newest = store.newest_local(node, spec.cache)
    rec = VolumeRecord(
        vol_name=spec.vol_name, vol_dir=str(spec.vol_dir),
        container=records.container_name(spec.vol_name), namespace=spec.cache.namespace,
        name=spec.cache.name, writable=spec.writable,
        base_tag=newest[0].tag if newest else None, base_image=newest[1].id if newest else None,
        pvc_namespace=spec.pvc_namespace, pvc_name=spec.pvc_name, size_bytes=spec.size_bytes,
        created=time.time())
    records.save(node.state, rec)   # first: whatever follows, a record describes it
    undo: list[tuple[str, Callable[[], object]]] = []
    try:
        node.buildah.from_image(rec.base_image, rec.container)
        undo.append(("remove container", lambda: node.buildah.rm(rec.container)))
        merged = node.buildah.mount(rec.container)
        undo.append(("unmount container", lambda: node.buildah.umount(rec.container)))
        upper = mounts.overlay_upperdir(merged) or merged.parent / "diff"
        rec = replace(rec, merged=str(merged), upper=str(upper))
        records.save(node.state, rec)   # a crash from here on leaves the overlay findable
        made = _make_dirs(spec.vol_dir)
        undo.append(("remove VOL_DIR", lambda: _remove_made_dirs(made)))
        mounts.bind(merged, spec.vol_dir)
        undo.append(("unmount VOL_DIR", lambda: mounts.unmount_all(spec.vol_dir)))
        mounts.make_rshared(spec.vol_dir)
        try:
            os.chmod(spec.vol_dir, VOLUME_ROOT_MODE)
        except OSError as e:
            raise VolumeError(f"cannot open volume {spec.vol_dir} to all users: "
                              f"{e.strerror}") from e
        rec = replace(rec, phase=READY)
        records.save(node.state, rec)
        return rec
    except BaseException:
        failed = _rollback(undo, ctx)
        if not failed:
            records.remove(node.state, rec.vol_name)
        raise


def _rollback(undo: list[tuple[str, Callable[[], object]]], ctx: dict) -> list[str]:
    """Undo setup steps newest first; returns what could not be undone (the record stays)."""
    failed = []
    for what, fn in reversed(undo):
        try:
            fn()
        except (CachesyncError, OSError) as e:
            log.error("setup rollback: cannot %s: %s", what, e, extra=ctx)
            failed.append(what)
    return failed


def _make_dirs(path: Path) -> list[Path]:
    """mkdir -p, returning the directories it made (deepest last)."""
    made = []
    for p in reversed([path, *path.parents]):
        if not p.exists():
            try:
                p.mkdir()
            except FileExistsError:
                continue
            except OSError as e:
                _remove_made_dirs(made)
                raise VolumeError(f"cannot create VOL_DIR {path}: {e.strerror}") from e
            made.append(p)
    return made


def _remove_made_dirs(made: list[Path]) -> None:
    for p in reversed(made):
        with contextlib.suppress(FileNotFoundError):
            p.rmdir()


def _ensure_mounted(node: Node, rec: VolumeRecord) -> bool:
    """Remount what a reboot took away from a set-up volume; True if anything was."""
    merged_entry = mounts.find_mount(rec.merged) if rec.merged else None
    bind_entry = mounts.find_mount(rec.vol_dir)
    if merged_entry and bind_entry and bind_entry.device == merged_entry.device:
        return False
    if node.buildah.container(rec.container) is None:
        raise VolumeError(f"volume {rec.vol_name}: its container {rec.container} is gone; "
                          "tear the volume down and set it up again")
    if merged_entry is None:
        merged = node.buildah.mount(rec.container)
        if mounts.find_mount(merged) is None:   # buildah still counted the old mount
            node.buildah.umount(rec.container)
            merged = node.buildah.mount(rec.container)
        merged_entry = mounts.find_mount(merged)
        if merged_entry is None:
            raise VolumeError(f"volume {rec.vol_name}: buildah did not mount {rec.container}")
    if bind_entry is not None:
        mounts.unmount_all(rec.vol_dir)
    Path(rec.vol_dir).mkdir(parents=True, exist_ok=True)
    mounts.bind(merged_entry.mountpoint, rec.vol_dir)
    mounts.make_rshared(rec.vol_dir)
    return True


# ---------------------------------------------------------------------------- teardown

def teardown(node: Node, spec: VolumeSpec | VolumeKey,
             job_result: str = "unknown") -> TeardownResult:
    job_result = parse_job_result(job_result)
    key = spec.key if isinstance(spec, VolumeSpec) else spec
    ctx = {"volume": key.vol_name}
    with records.volume_lock(node.state, key.vol_name, node.settings.lock_timeout) as lock:
        rec = records.load(node.state, key.vol_name)
        if rec is None:
            removed = _remove_leftovers(node, key)
            lock.remove()
            return TeardownResult(key.vol_name, key.cache, None, "no record", removed=removed)
        if key.vol_dir is not None and Path(rec.vol_dir) != key.vol_dir:
            raise VolumeError(f"volume {rec.vol_name} is mounted at {rec.vol_dir}, not at "
                              f"{key.vol_dir}; nothing was changed")
        if key.cache is not None and key.cache != rec.cache:
            raise VolumeError(f"volume {rec.vol_name} is a volume of {rec.cache}, not of "
                              f"{key.cache}; nothing was changed")
        ctx["cache"] = str(rec.cache)
        mounts.unmount_all(rec.vol_dir)          # the job is done: no more writes
        committed, squashed = None, False
        if rec.phase != READY:
            decision = CommitDecision(False, "setup never finished")
        elif rec.committed:
            decision = CommitDecision(False, "committed by an earlier teardown")
            committed = Generation.parse(rec.commit_tag or "")
        else:
            writable = rec.writable and key.writable is not False
            decision = commit_decision(writable, job_result, node.settings.commit_on,
                                       has_changes(rec))
        if decision.commit:
            committed, squashed = _commit(node, rec, ctx)
        else:
            log.info("not committing: %s", decision.reason, extra=ctx)
        release(node, rec)
        lock.remove()
        return TeardownResult(rec.vol_name, rec.cache, committed, decision.reason, squashed)


def upper_dir(rec: VolumeRecord) -> Path | None:
    """The container's overlay upper directory: from the live mount, else the record."""
    if rec.merged:
        live = mounts.overlay_upperdir(rec.merged)
        if live:
            return live
    if rec.upper:
        return Path(rec.upper)
    return Path(rec.merged).parent / "diff" if rec.merged else None


def has_changes(rec: VolumeRecord) -> bool:
    upper = upper_dir(rec)
    if upper is None:
        return False
    try:
        with os.scandir(upper) as it:
            return any(True for _ in it)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _commit(node: Node, rec: VolumeRecord, ctx: dict) -> tuple[Generation, bool]:
    ref = rec.cache
    base_layers = store.layer_count(node, rec.base_image) if rec.base_image else 0
    squash = should_squash(base_layers, node.settings.max_layers)
    with node.state.cache_lock(ref, node.settings.lock_timeout):
        if rec.commit_tag:   # an earlier teardown died while committing: did it finish?
            gen = Generation.parse(rec.commit_tag)
            done = next((img for g, img in store.local_generations(node, ref) if g == gen), None)
            if gen is not None and done is not None:
                log.info("commit %s was made before a crash; journaling it", gen.tag,
                         extra={**ctx, "generation": gen.tag})
                _journal(node, rec, gen, done.id)
                return gen, squash
        newest = store.newest_local(node, ref)
        gen = next_generation(node.node_id, newest[0] if newest else None)
        records.save(node.state, replace(rec, commit_tag=gen.tag))
        t0 = time.monotonic()
        image_id = node.buildah.commit(rec.container, ref.local_image(gen.tag), squash=squash)
        log.info("committed %s%s", gen.tag, " (flattened)" if squash else "",
                 extra={**ctx, "generation": gen.tag,
                        "seconds": round(time.monotonic() - t0, 3)})
        _journal(node, replace(rec, commit_tag=gen.tag), gen, image_id)
        return gen, squash


def _journal(node: Node, rec: VolumeRecord, gen: Generation, image_id: str) -> None:
    node.journal.add(JournalEntry(rec.namespace, rec.name, gen.tag, image_id, time.time(),
                                  store.layer_count(node, image_id)))
    records.save(node.state, replace(rec, commit_tag=gen.tag, committed=True))


def release(node: Node, rec: VolumeRecord) -> None:
    """Remove everything of a volume (no commit): mounts, container, VOL_DIR, then the record."""
    mounts.unmount_all(rec.vol_dir)
    remove_container(node, rec.container, rec.merged)
    remove_vol_dir(Path(rec.vol_dir))
    records.remove(node.state, rec.vol_name)


def remove_container(node: Node, name: str, merged: str | None = None) -> bool:
    """Unmount and remove a volume's container; False if there was none."""
    if node.buildah.container(name) is None:
        if merged:
            mounts.unmount_all(merged)
        return False
    try:
        node.buildah.rm(name)
    except BuildahError:
        if not merged:
            raise
        mounts.unmount_all(merged)      # busy or stale overlay: detach it, then try again
        node.buildah.rm(name)
    if merged:
        mounts.unmount_all(merged)
    return True


def remove_vol_dir(vol_dir: Path) -> bool:
    """Remove VOL_DIR, which must have nothing mounted on or below it."""
    if not vol_dir.exists() and not vol_dir.is_symlink():
        return False
    if mounts.mounts_under(vol_dir):
        raise VolumeError(f"VOL_DIR {vol_dir} still has mounts; not removing it")
    try:
        vol_dir.rmdir()
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise VolumeError(f"cannot remove VOL_DIR {vol_dir}: {e.strerror}") from e
        try:
            if vol_dir.is_dir() and not vol_dir.is_symlink():
                shutil.rmtree(vol_dir)
            else:
                vol_dir.unlink()
        except OSError as e2:
            raise VolumeError(f"cannot remove VOL_DIR {vol_dir}: {e2.strerror}") from e2
    return True


def _remove_leftovers(node: Node, key: VolumeKey) -> bool:
    """Teardown with no record: remove our container if one is left, and an empty VOL_DIR."""
    removed = remove_container(node, records.container_name(key.vol_name))
    if key.vol_dir is not None and key.vol_dir.is_dir() and not mounts.mounts_under(key.vol_dir):
        with contextlib.suppress(OSError):
            key.vol_dir.rmdir()
            removed = True
    return removed
