"""Garbage collection: leftovers of crashed volumes, and generations no longer needed.

Leftovers: containers named ``cachesync-*`` with no volume record, records whose container is
gone, and overlay mounts of layers the storage no longer has. Generations: ``plan`` (a pure
function) keeps the newest generation of every cache, every generation a volume uses and every
generation not yet published; the others go oldest first while the images take more than the
budget, or, with no budget, all but the newest two of each cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from . import mounts, records, store, volume
from .errors import BuildahError, CachesyncError, LockTimeout
from .generations import Generation
from .names import CacheRef
from .node import Node
from .records import CONTAINER_PREFIX, READY

log = logging.getLogger(__name__)

KEEP_WITHOUT_BUDGET = 2


@dataclass(frozen=True)
class GenInfo:
    """One local generation, as plain data."""

    ref: CacheRef
    generation: Generation
    image_id: str
    created: float
    layers: tuple[str, ...]     # layer ids, any order


def disk_usage(gens: Iterable[GenInfo], layer_sizes: dict[str, int]) -> int:
    """Bytes the generations take together (a layer shared by several counts once)."""
    return sum(layer_sizes.get(lid, 0) for lid in {lid for g in gens for lid in g.layers})


def plan(gens: list[GenInfo], layer_sizes: dict[str, int], in_use: set[str],
         pending: set[tuple[CacheRef, Generation]], budget: int | None) -> list[GenInfo]:
    """The generations to remove, in removal order.

    Kept always: the newest generation of every cache, generations whose image a volume uses
    (``in_use``: image ids), generations waiting in the journal (``pending``). Of the rest, the
    oldest that frees bytes goes first, again and again while usage (shared layers counted once)
    exceeds ``budget``; a generation whose layers others still use frees nothing and stays. With
    no budget, all but the newest ``KEEP_WITHOUT_BUDGET`` of each cache go.
    """
    newest: dict[CacheRef, Generation] = {}
    for g in gens:
        if g.ref not in newest or g.generation > newest[g.ref]:
            newest[g.ref] = g.generation

    def protected(g: GenInfo) -> bool:
        return (g.generation == newest[g.ref] or g.image_id in in_use
                or (g.ref, g.generation) in pending)

    candidates = sorted((g for g in gens if not protected(g)),
                        key=lambda g: (g.created, g.generation, g.ref))
    if budget is None:
        keep: set[tuple[CacheRef, Generation]] = set()
        for ref in newest:
            ours = sorted((g.generation for g in gens if g.ref == ref), reverse=True)
            keep.update((ref, gen) for gen in ours[:KEEP_WITHOUT_BUDGET])
        return [g for g in candidates if (g.ref, g.generation) not in keep]
    remaining = list(gens)
    removed: list[GenInfo] = []
    changed = True
    while changed and disk_usage(remaining, layer_sizes) > budget:
        changed = False
        for g in candidates:
            if g in removed:
                continue
            rest = [r for r in remaining if r != g]
            if disk_usage(rest, layer_sizes) < disk_usage(remaining, layer_sizes):
                remaining = rest            # frees bytes; one that frees none stays
                removed.append(g)
                changed = True
                break
    return removed


@dataclass
class GcResult:
    dry_run: bool
    containers: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    generations: list[str] = field(default_factory=list)   # "<ns>/<name>@<tag>"
    freed_bytes: int = 0
    blob_bytes: int = 0        # compressed layer blobs of removed layers (registry sync's store)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        text = (f"gc: {verb} {len(self.generations)} generation(s) "
                f"({self.freed_bytes / 2**20:.1f} MiB), {len(self.containers)} container(s), "
                f"{len(self.records)} volume record(s), {len(self.mounts)} stale mount(s)")
        if self.blob_bytes:
            text += f", {self.blob_bytes / 2**20:.1f} MiB of layer blobs"
        if self.generations:
            text += ": " + ", ".join(self.generations)
        if self.errors:
            text += f"; {len(self.errors)} error(s): " + "; ".join(self.errors)
        return text


def run(node: Node, dry_run: bool = False) -> GcResult:
    result = GcResult(dry_run)
    _leftovers(node, result)
    _generations(node, result)
    if not dry_run:
        _blobs(node, result)
    log.debug(result.summary())
    return result


def _leftovers(node: Node, result: GcResult) -> None:
    containers = [c.name for c in node.buildah.containers()]   # before the records: see below
    recs = {r.vol_name: r for r in records.load_all(node.state)}
    # A record is written before its container is made and removed after it is gone, so a
    # container without a record is a leftover. Each is handled under its volume's lock, and
    # skipped if a setup or teardown holds it.
    for name in containers:
        vol_name = name[len(CONTAINER_PREFIX):]
        if not name.startswith(CONTAINER_PREFIX) or vol_name in recs:
            continue
        _under_lock(node, vol_name, result, lambda: _orphan_container(node, name, result))
    for rec in recs.values():
        if rec.container in containers and rec.phase == READY:
            continue
        _under_lock(node, rec.vol_name, result, lambda rec=rec: _broken_record(node, rec, result))
    _stale_mounts(node, result)


def _blobs(node: Node, result: GcResult) -> None:
    """Compressed blobs of layers no local image holds any more (older than an hour)."""
    from .oci import BlobStore
    from .sync import prune_blob_store

    if node.state.blobs.exists():
        result.blob_bytes = prune_blob_store(node, BlobStore(node.state.blobs))


def _under_lock(node: Node, vol_name: str, result: GcResult, fn) -> None:
    try:
        with records.volume_lock(node.state, vol_name, timeout=0):
            fn()
    except LockTimeout:
        log.info("volume busy, left for later", extra={"volume": vol_name})
    except CachesyncError as e:
        result.errors.append(str(e))


def _orphan_container(node: Node, name: str, result: GcResult) -> None:
    if records.load(node.state, name[len(CONTAINER_PREFIX):]) is not None:
        return  # a setup made it meanwhile
    result.containers.append(name)
    if not result.dry_run:
        try:
            node.buildah.rm(name)
        except BuildahError:
            if node.buildah.container(name) is not None:
                raise


def _broken_record(node: Node, rec: records.VolumeRecord, result: GcResult) -> None:
    current = records.load(node.state, rec.vol_name)
    if current is None:
        return
    alive = node.buildah.container(current.container) is not None
    if alive and current.phase == READY:
        return
    # a setup that died half way (phase creating), or a volume whose container is gone
    result.records.append(current.vol_name)
    if alive:
        result.containers.append(current.container)
    for m in [current.vol_dir, current.merged]:
        if m and mounts.mounts_under(m):
            result.mounts.append(m)
    if not result.dry_run:
        volume.release(node, current)


def _stale_mounts(node: Node, result: GcResult) -> None:
    """Overlay mounts of layers the storage no longer knows (their container is long gone)."""
    layer_dir = node.buildah.graphroot / node.buildah.driver
    known = node.buildah.layers()
    for entry in mounts.mounts_under(layer_dir):
        path = Path(entry.mountpoint)
        if path.name != "merged" or path.parent.parent != layer_dir:
            continue
        if path.parent.name in known:
            continue
        result.mounts.append(str(path))
        if not result.dry_run:
            mounts.unmount_all(path)


def _generations(node: Node, result: GcResult) -> None:
    tops = node.buildah.image_top_layers()
    layers = node.buildah.layers()
    gens = [GenInfo(g.ref, g.generation, g.image.id, g.image.created,
                    tuple(layer.id for layer in store.layer_chain(tops.get(g.image.id, ""),
                                                                  layers)))
            for g in store.all_generations(node)]
    in_use = {r.base_image for r in records.load_all(node.state) if r.base_image}
    pending = {(e.ref, e.generation) for e in node.journal.pending()}
    sizes = {lid: layer.size for lid, layer in layers.items()}
    doomed = plan(gens, sizes, in_use, pending, node.settings.gc_budget_bytes)
    before = disk_usage(gens, sizes)
    after = disk_usage([g for g in gens if g not in doomed], sizes)
    result.freed_bytes = before - after
    for g in doomed:
        label = f"{g.ref}@{g.generation}"
        result.generations.append(label)
        if result.dry_run:
            continue
        try:
            node.buildah.rmi(g.ref.local_image(g.generation.tag))
            log.info("removed generation", extra={"cache": str(g.ref),
                                                   "generation": g.generation.tag})
        except BuildahError as e:
            result.errors.append(f"{label}: {e}")
