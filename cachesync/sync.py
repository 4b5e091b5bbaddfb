"""Publishing: every journaled commit of this node goes to the registry, and the daemon loop.

For each journal entry, oldest first:
  1. export the committed image (skopeo, uncompressed; layers exported before are skipped) and
     compress only the layers that have no compressed blob yet (skopeo.py);
  2. build the manifest (canonical bytes, generation in annotation ``io.cachesync.generation``,
     so a rebuild after a crash has the same digest);
  3. push each blob the repository lacks (HEAD): cross-repo mount when another repository of
     this node's registry is known to hold it, else a streamed, chunked upload; transient
     failures retried with bounded backoff;
  4. PUT the manifest by digest, then the generation tag, then ``latest`` only if
     ``should_move_latest`` (the current ``latest``'s generation read from its annotation);
     then converge: the registry has no compare-and-swap, so two nodes publishing at once can
     leave ``latest`` on the older generation (A reads g5, B reads g5, B writes g7, A writes
     g6). Each publisher therefore lists the tags after its writes and re-points ``latest`` at
     the newest generation tag when it names an older one, checking again after each repair:
     whoever writes ``latest`` last also checks last, so it ends on the newest generation;
  5. retention: keep the newest ``keep_generations`` generation tags, delete older manifests;
  6. drop the journal entry. A crash before this republishes the same bytes: nothing twice,
     nothing lost. Scratch files of a pass killed mid-export or mid-compression (skopeo's
     ``oci-put-blob*`` temporaries, ``.compress-*`` directories) are swept by the next pass,
     under the sync lock, before it starts.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from . import metrics, pull
from .errors import BuildahError, CachesyncError, NotFound, RegistryError, RegistryUnavailable
from .generations import LATEST, Generation, latest_repair, parse_tags, should_move_latest
from .journal import JournalEntry
from .names import CacheRef
from .node import Node
from .oci import (ANNOTATION_CREATED, ANNOTATION_GENERATION, COMPRESSED_TYPE, MANIFEST,
                  BlobStore, Descriptor, build_manifest, layout_name, parse_manifest,
                  prune_store,
                  punch_placeholder)
from .progress import Progress, human
from .registry import Registry
from .skopeo import Skopeo, compress, export, export_compressed, mark_exported

log = logging.getLogger(__name__)


@dataclass
class Published:
    cache: str
    tag: str
    digest: str
    bytes_sent: int = 0
    pushed: int = 0
    mounted: int = 0
    present: int = 0
    latest_moved: bool = False


@dataclass
class SyncResult:
    published: list[Published] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)   # (cache:tag, one-line error)
    skipped: list[str] = field(default_factory=list)              # entries whose image is gone
    pending: int = 0
    pruned: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        sent = sum(p.bytes_sent for p in self.published)
        lines = [f"published {len(self.published)} commit(s): "
                 f"{sum(p.pushed for p in self.published)} blob(s) pushed ({human(sent)}), "
                 f"{sum(p.mounted for p in self.published)} mounted, "
                 f"{sum(p.present for p in self.published)} already there; "
                 f"{self.pending} pending; {self.pruned} old generation(s) pruned"]
        lines += [f"  {p.cache}:{p.tag} -> {p.digest[:19]}"
                  f"{' (latest)' if p.latest_moved else ''}" for p in self.published]
        lines += [f"  skipped {s}: its image is gone from this node" for s in self.skipped]
        lines += [f"  FAILED {what}: {err}" for what, err in self.failed]
        return "\n".join(lines)


@dataclass(frozen=True)
class Prepared:
    manifest: bytes
    digest: str
    blobs: tuple[Descriptor, ...]   # config first, then layers


def prepare(node: Node, entry: JournalEntry, store: BlobStore, skopeo: Skopeo) -> Prepared:
    """Export and compress the entry's image into the blob store; build its manifest."""
    compression = node.settings.registry.compression if node.settings.registry else "zstd"
    ref, image = entry.ref, entry.ref.local_image(entry.tag)
    name = layout_name(ref.key, entry.tag, "export")
    diff_ids = node.buildah.inspect_image(image)["OCIv1"]["rootfs"].get("diff_ids") or []
    if all(store.compressed_for(d, compression) is None for d in diff_ids):
        # nothing to reuse (a first push): one compressed pass, no uncompressed copy
        with node.state.lock("oci-layout", node.settings.lock_timeout):
            config, blobs = export_compressed(skopeo, node.buildah, image, store, name,
                                              compression)
        if len(blobs) != len(diff_ids):
            raise BuildahError(["skopeo", "copy"], 1, f"export of {image} changed the layers")
        for diff_id, blob in zip(diff_ids, blobs):
            store.remember_compressed(diff_id, compression, blob)
            mark_exported(store, diff_id)
    for diff_id in diff_ids:  # a placeholder whose compressed blob is gone must be re-exported
        exported = store.blob_path(diff_id, store.export)
        if (store.compressed_for(diff_id, compression) is None and exported.exists()
                and exported.stat().st_blocks == 0):
            exported.unlink()
    config, layers, diff_ids = export(skopeo, node.buildah, image, store, name)
    todo = [x for x in layers if store.compressed_for(x.digest, compression) is None]
    for layer, blob in zip(todo, compress(skopeo, store, todo, compression)):
        store.remember_compressed(layer.digest, compression, blob)
        log.info("compressed layer", extra={"cache": str(ref), "digest": blob.digest,
                                            "bytes": blob.size, "event": "compress"})
    compressed = []
    for layer in layers:
        blob = store.compressed_for(layer.digest, compression)
        if blob is None:
            raise BuildahError(["skopeo", "copy"], 1, f"no compressed blob for {layer.digest}")
        compressed.append(Descriptor(COMPRESSED_TYPE[compression], blob.digest, blob.size))
        exported = store.blob_path(layer.digest, store.export)
        if exported.exists() and exported.stat().st_blocks:
            punch_placeholder(exported)  # the bytes live on in storage and the compressed blob
    config_raw = store.read_blob(config.digest, store.export)
    store.put_bytes(config_raw)
    config = Descriptor(config.media_type, config.digest, config.size)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.created))
    raw = build_manifest(config, compressed, {ANNOTATION_GENERATION: entry.tag,
                                              ANNOTATION_CREATED: created})
    digest = store.put_bytes(raw).digest
    return Prepared(raw, digest, (config, *compressed))


def push_blobs(reg: Registry, repo: str, store: BlobStore, blobs: tuple[Descriptor, ...],
               result: Published, progress: Callable[[int], None] | None = None) -> None:
    for blob in blobs:
        ctx = {"cache": result.cache, "digest": blob.digest, "bytes": blob.size}
        if reg.retried(lambda: reg.blob_exists(repo, blob.digest)):
            result.present += 1
            store.remember_repo(blob.digest, repo)
            continue
        mounted = False
        for other in [r for r in store.repos_with(blob.digest) if r != repo]:
            try:
                mounted = reg.retried(lambda: reg.mount_blob(repo, blob.digest, other))
            except NotFound:
                mounted = False
            if mounted:
                log.info("mounted blob from %s", other, extra={**ctx, "event": "mount"})
                result.mounted += 1
                break
        if not mounted:
            t0 = time.monotonic()
            sent = reg.retried(lambda: reg.push_blob(repo, store.blob_path(blob.digest),
                                                     blob.digest, progress))
            result.bytes_sent += sent
            result.pushed += 1
            metrics.BYTES_PUSHED.inc(sent)
            log.info("pushed blob", extra={**ctx, "seconds": round(time.monotonic() - t0, 3),
                                           "event": "push"})
        store.remember_repo(blob.digest, repo)


def current_latest(reg: Registry, repo: str) -> tuple[Generation | None, str | None]:
    """The generation ``latest`` names (from its annotation) and its digest."""
    try:
        raw, digest, _ = reg.retried(lambda: reg.get_manifest(repo, LATEST))
    except NotFound:
        return None, None
    try:
        tag = parse_manifest(raw, digest).generation_tag
    except RegistryError:
        return None, digest
    return (Generation.parse(tag) if tag else None), digest


def converge_latest(reg: Registry, repo: str, cache: str, rounds: int = 3) -> Generation | None:
    """Re-point ``latest`` at the newest generation tag while it names an older one (PUT of the
    tag's exact manifest bytes, so the digest is the tag's). Returns the generation ``latest``
    was last moved to, or None when it was right. Checks again after each repair, at most
    ``rounds`` times, in case another node wrote in between."""
    repaired: Generation | None = None
    for _ in range(rounds):
        latest, _ = current_latest(reg, repo)
        target = latest_repair(reg.retried(lambda: reg.list_tags(repo)), latest)
        if target is None:
            break
        try:
            raw, digest, media_type = reg.retried(lambda: reg.get_manifest(repo, target.tag))
        except NotFound:  # pruned by another node meanwhile: its newer tag wins next round
            continue
        reg.retried(lambda: reg.put_manifest(repo, raw, media_type or MANIFEST, LATEST))
        repaired = target
        log.info("repaired latest: it named %s, the newest tag is %s", latest, target.tag,
                 extra={"cache": cache, "generation": target.tag, "digest": digest,
                        "event": "latest-repaired"})
    return repaired


def prune(reg: Registry, repo: str, keep: int, cache: str) -> int:
    """Delete manifests of generation tags older than the newest ``keep``; returns how many."""
    gens = parse_tags(reg.retried(lambda: reg.list_tags(repo)))
    if len(gens) <= keep:
        return 0
    kept = {reg.manifest_digest(repo, g.tag) for g in gens[-keep:]}
    kept.add(reg.manifest_digest(repo, LATEST))
    removed = 0
    for g in gens[:-keep]:
        digest = reg.manifest_digest(repo, g.tag)
        if digest and digest not in kept:
            try:
                reg.retried(lambda: reg.delete_manifest(repo, digest))
            except NotFound:
                continue
            removed += 1
            log.info("pruned old generation %s", g.tag, extra={"cache": cache,
                                                              "digest": digest,
                                                              "event": "prune"})
    return removed


def publish(node: Node, reg: Registry, store: BlobStore, skopeo: Skopeo, entry: JournalEntry,
            progress: Callable[[int], None] | None = None) -> tuple[Published, int]:
    ref = entry.ref
    repo = reg.repository(ref.namespace, ref.name)
    prepared = prepare(node, entry, store, skopeo)
    result = Published(str(ref), entry.tag, prepared.digest)
    push_blobs(reg, repo, store, prepared.blobs, result, progress)
    reg.retried(lambda: reg.put_manifest(repo, prepared.manifest, MANIFEST, prepared.digest))
    reg.retried(lambda: reg.put_manifest(repo, prepared.manifest, MANIFEST, entry.tag))
    latest, _ = current_latest(reg, repo)
    if should_move_latest(entry.generation, latest):
        reg.retried(lambda: reg.put_manifest(repo, prepared.manifest, MANIFEST, LATEST))
        result.latest_moved = True
    repaired = converge_latest(reg, repo, str(ref))
    if repaired is not None:  # latest names this commit only if the repair left it here
        result.latest_moved = repaired == entry.generation
    pruned = prune(reg, repo, node.settings.registry.keep_generations, str(ref))
    for blob in prepared.blobs:
        store.remember_repo(blob.digest, repo)
    return result, pruned


def sweep_scratch(node: Node, store: BlobStore) -> int:
    """Remove what a sync pass killed mid-export or mid-compression left in the blob store:
    skopeo's ``oci-put-blob*`` temporaries in the layouts' roots and ``.compress-*``
    directories. Only a sync pass writes these; call it holding the sync lock. Returns how
    many were removed."""
    removed = 0
    with node.state.lock("oci-layout", node.settings.lock_timeout):  # export_compressed's
        for path in [*store.root.glob(".compress-*"), *store.export.glob("oci-put-blob*"),
                     *store.layout.glob("oci-put-blob*")]:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d scratch file(s) of an interrupted sync", removed,
                 extra={"event": "sweep"})
    return removed


def _image_exists(node: Node, image: str) -> bool:
    try:
        node.buildah.inspect_image(image)
        return True
    except BuildahError:
        return False


def run_once(node: Node, *, registry: Registry | None = None,
             sleep: Callable[[float], None] = time.sleep) -> SyncResult:
    """Publish every pending journal entry, oldest first. Stops early if the registry is down."""
    result = SyncResult()
    entries = node.journal.pending()
    metrics.PUSHES_PENDING.set(len(entries))
    if not entries:
        return result
    if node.settings.registry is None:
        raise CachesyncError("sync needs a registry")
    reg = registry or Registry(node.settings.registry, sleep=sleep)
    store = BlobStore(node.state.blobs).ensure()
    skopeo = Skopeo()
    with node.state.lock("sync", node.settings.lock_timeout):
        sweep_scratch(node, store)
        entries = node.journal.pending()
        try:
            reg.retried(reg.ping, attempts=2)
        except RegistryError as e:
            metrics.FAILURES.labels("push").inc()
            result.failed.append(("registry", str(e)))
            result.pending = len(entries)
            log.warning("%s; %d commit(s) stay pending", e, len(entries),
                        extra={"event": "push-failed"})
            return result
        for i, entry in enumerate(entries):
            what = f"{entry.ref}:{entry.tag}"
            if not _image_exists(node, entry.ref.local_image(entry.tag)):
                log.error("journal entry %s: image is gone, dropping it", what,
                          extra={"cache": str(entry.ref), "event": "skip"})
                node.journal.drop(entry)
                result.skipped.append(what)
                continue
            t0 = time.monotonic()
            bar = Progress(f"push {what}")
            try:
                published, pruned = publish(node, reg, store, skopeo, entry, bar)
            except (CachesyncError, OSError) as e:
                bar.close()
                metrics.FAILURES.labels("push").inc()
                result.failed.append((what, str(e)))
                log.warning("publishing %s failed: %s", what, e,
                            extra={"cache": str(entry.ref), "event": "push-failed"})
                if isinstance(e, RegistryUnavailable):
                    result.pending = len(entries) - i
                    return result
                continue
            bar.close()
            node.journal.drop(entry)
            metrics.PUSHES_PENDING.set(len(entries) - i - 1)
            seconds = time.monotonic() - t0
            metrics.COMMITS_PUBLISHED.inc()
            metrics.DURATION.labels("publish").observe(seconds)
            result.published.append(published)
            result.pruned += pruned
            log.info("published %s", what, extra={
                "cache": str(entry.ref), "generation": entry.tag, "digest": published.digest,
                "bytes": published.bytes_sent, "seconds": round(seconds, 3),
                "event": "published"})
        result.pending = len(node.journal.pending())
        if result.published and not result.pending:
            prune_blob_store(node, store)
    metrics.PUSHES_PENDING.set(result.pending)
    return result


def prune_blob_store(node: Node, store: BlobStore, min_age: float = 3600.0) -> int:
    """Drop compressed blobs of layers no local image holds (after gc removed generations)."""
    diff_ids: set[str] = set()
    for image in node.buildah.images():
        try:
            diff_ids.update(node.buildah.inspect_image(image.id)["OCIv1"]["rootfs"]
                            .get("diff_ids") or ())
        except (BuildahError, KeyError):
            return 0  # not sure what is in use: keep everything
    freed = prune_store(store, diff_ids, min_age, time.time())
    if freed:
        log.info("pruned the blob store", extra={"bytes": freed, "event": "prune-blobs"})
    return freed


def used_caches(node: Node) -> list[CacheRef]:
    """Caches this node holds generations of (from its buildah image names)."""
    refs = set()
    for image in node.buildah.images():
        for name in image.names:
            ref = pull.ref_of_local_image(name)
            if ref is not None:
                refs.add(ref)
    return sorted(refs)


def run_daemon(node: Node, stop: threading.Event | None = None) -> None:
    """Publish every ``interval``; keep warm the configured caches and those used here; serve
    metrics. Stops cleanly on SIGTERM/SIGINT (or when ``stop`` is set)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    server = metrics.serve(node.settings.sync.metrics_address)
    warm_refs = [CacheRef.parse(w) for w in node.settings.sync.warm]
    next_refresh = 0.0
    log.info("sync daemon started", extra={"node": node.node_id, "event": "start"})
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                result = run_once(node)
                metrics.DURATION.labels("sync").observe(time.monotonic() - t0)
                if result.published or result.failed:
                    log.info("sync pass: %s", result.summary().splitlines()[0],
                             extra={"event": "sync"})
            except CachesyncError as e:
                metrics.FAILURES.labels("sync").inc()
                log.warning("sync pass failed: %s", e, extra={"event": "sync-failed"})
            if time.monotonic() >= next_refresh and not stop.is_set():
                next_refresh = time.monotonic() + node.settings.sync.refresh_interval
                for ref in sorted(set(warm_refs) | set(used_caches(node))):
                    if stop.is_set():
                        break
                    w = pull.warm(node, ref)
                    if w.fetched_layers or not w.ok:
                        log.info("warm: %s", w.summary(), extra={"cache": str(ref),
                                                                 "event": "warm"})
            stop.wait(node.settings.sync.interval)
    finally:
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined] (a WSGIServer)
        log.info("sync daemon stopped", extra={"node": node.node_id, "event": "stop"})
