"""Pulling: the registry's newest generation of a cache onto this node, only the layers it lacks.

``fetch`` reads the generation's manifest and config (validated, digests checked), works out
which layers the node's storage lacks (by DiffID) and which compressed blobs its blob store
lacks, downloads those in parallel (each verified), then imports the image into buildah storage
with skopeo; layers the storage holds are handed over by DiffID and never read again.

``refresh_for_setup`` (called before a volume is set up) never raises: a registry that is down,
slow or serves a bad blob only costs one log line, and setup uses the newest local generation or
an empty cache. ``warm`` does the same work for ``cachesync warm`` and the daemon, reporting
errors in its result.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from . import metrics
from . import store as local_store
from .errors import BuildahError, CachesyncError, DigestMismatch, RegistryUnavailable
from .generations import Generation, newest, parse_tags
from .names import LOCAL_PREFIX, CacheRef
from .node import Node
from .oci import (LAYER_TAR, BlobStore, Descriptor, build_manifest, layout_name, missing_layers,
                  parse_config, parse_manifest)
from .progress import Progress, human
from .registry import Registry
from .skopeo import Skopeo, import_layout

log = logging.getLogger(__name__)


@dataclass
class FetchResult:
    generation: Generation
    fetched_layers: int = 0
    reused_layers: int = 0
    bytes: int = 0
    already_local: bool = False


@dataclass
class WarmResult:
    cache: str
    generation: Generation | None = None
    local: Generation | None = None
    fetched_layers: int = 0
    reused_layers: int = 0
    bytes: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        if self.error:
            return f"{self.cache}: FAILED: {self.error}"
        if self.generation is None:
            return f"{self.cache}: nothing in the registry yet"
        if not self.fetched_layers and not self.reused_layers:
            return f"{self.cache}: {self.generation} already on this node"
        return (f"{self.cache}: {self.generation} pulled: {self.fetched_layers} layer(s) fetched "
                f"({human(self.bytes)}), {self.reused_layers} already here")


def ref_of_local_image(name: str) -> CacheRef | None:
    """``localhost/cachesync/<ns>/<name>:<tag>`` -> the cache, or None for other images."""
    repo, _, _tag = name.rpartition(":")
    parts = repo.removeprefix(LOCAL_PREFIX + "/").split("/") if repo.startswith(
        LOCAL_PREFIX + "/") else []
    if len(parts) != 2:
        return None
    try:
        return CacheRef(parts[0], parts[1])
    except CachesyncError:
        return None


def _local_images(node: Node, ref: CacheRef) -> dict[Generation, str]:
    """Generations of ``ref`` in this node's storage -> image id."""
    return {g: image.id for g, image in local_store.local_generations(node, ref)}


def _registry(node: Node, registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    if node.settings.registry is None:
        raise CachesyncError("no registry configured")
    return Registry(node.settings.registry)


def remote_newest(node: Node, ref: CacheRef, registry: Registry | None = None
                  ) -> Generation | None:
    """The newest generation tag of ``ref`` in the registry (None: none). Raises RegistryError."""
    reg = _registry(node, registry)
    return newest(parse_tags(reg.list_tags(reg.repository(ref.namespace, ref.name))))


def _local_diff_ids(node: Node, images: dict[Generation, str]) -> set[str]:
    out: set[str] = set()
    for image_id in set(images.values()):
        try:
            out.update(node.buildah.inspect_image(image_id)["OCIv1"]["rootfs"]["diff_ids"] or ())
        except (BuildahError, KeyError, TypeError):
            continue
    return out


def fetch(node: Node, ref: CacheRef, gen: Generation, registry: Registry | None = None, *,
          deadline: float | None = None, attempts: int | None = None) -> FetchResult:
    """Bring generation ``gen`` of ``ref`` into this node's storage as ``ref.local_image(tag)``."""
    reg = _registry(node, registry)
    repo = reg.repository(ref.namespace, ref.name)
    store = BlobStore(node.state.blobs).ensure()
    result = FetchResult(gen)
    ctx = {"cache": str(ref), "generation": gen.tag}

    def check_deadline(_n: int = 0) -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise RegistryUnavailable(f"pull of {ref}:{gen.tag} took longer than the setup "
                                      f"timeout")

    with node.state.lock(f"pull-{ref.key}", node.settings.lock_timeout):
        local = _local_images(node, ref)
        if gen in local:
            result.already_local = True
            return result
        raw, digest, _ = reg.retried(lambda: reg.get_manifest(repo, gen.tag), attempts)
        manifest = parse_manifest(raw, digest, f"manifest {repo}:{gen.tag}")
        check_deadline()
        config_path = store.blob_path(manifest.config.digest)
        if not config_path.exists():
            reg.retried(lambda: reg.pull_blob(repo, manifest.config.digest, config_path,
                                              max_bytes=manifest.config.size), attempts)
        try:
            config = parse_config(config_path.read_bytes(), manifest.config,
                                  len(manifest.layers), f"config of {repo}:{gen.tag}")
        except DigestMismatch:
            config_path.unlink(missing_ok=True)
            raise
        local_diffs = _local_diff_ids(node, local)
        have = store.blobs()
        need = missing_layers(manifest.layers, config.diff_ids, local_diffs, have)
        total = sum(layer.size for layer in need)
        bar = Progress(f"pull {ref}:{gen.tag}", total)
        lock = threading.Lock()

        def progress(n: int) -> None:
            bar(n)
            metrics.BYTES_PULLED.inc(n)
            check_deadline()

        def download(layer: Descriptor) -> int:
            got = reg.retried(lambda: reg.pull_blob(repo, layer.digest,
                                                    store.blob_path(layer.digest), progress,
                                                    max_bytes=layer.size), attempts)
            if got != layer.size:
                store.blob_path(layer.digest).unlink(missing_ok=True)
                raise DigestMismatch(f"blob {layer.digest[:19]} of {repo}: {got} bytes, the "
                                     f"manifest says {layer.size}")
            with lock:
                result.bytes += got
            log.info("fetched layer", extra={**ctx, "digest": layer.digest, "bytes": got,
                                              "event": "fetch"})
            return got

        t0 = time.monotonic()
        parallel = node.settings.registry.parallel if node.settings.registry else 4
        try:
            with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
                list(pool.map(download, need))
        finally:
            bar.close()
        result.fetched_layers = len(need)
        result.reused_layers = len(manifest.layers) - len(need)
        check_deadline()
        # Layers storage holds go in by DiffID (reused, never read); the rest from the store.
        layers = [Descriptor(LAYER_TAR, diff, layer.size) if diff in local_diffs else layer
                  for layer, diff in zip(manifest.layers, config.diff_ids)]
        import_raw = build_manifest(manifest.config, layers, dict(manifest.annotations))
        with node.state.lock("oci-layout", node.settings.lock_timeout):
            import_layout(Skopeo(), node.buildah, store, import_raw,
                          layout_name(ref.key, gen.tag, "import"), ref.local_image(gen.tag))
        for layer, diff in zip(manifest.layers, config.diff_ids):
            if store.has_blob(layer.digest) and layer.media_type.endswith(("+zstd", "+gzip")):
                store.remember_compressed(diff, "zstd" if layer.media_type.endswith("+zstd")
                                          else "gzip", layer)
            store.remember_repo(layer.digest, repo)
        store.remember_repo(manifest.config.digest, repo)
        metrics.DURATION.labels("pull").observe(time.monotonic() - t0)
        log.info("pulled %s:%s", ref, gen.tag, extra={**ctx, "bytes": result.bytes,
                                                      "event": "pulled"})
        return result


def warm(node: Node, ref: CacheRef, registry: Registry | None = None) -> WarmResult:
    """Pull the registry's newest generation of ``ref`` unless the node has it or a newer one."""
    result = WarmResult(str(ref))
    try:
        reg = _registry(node, registry)
        result.generation = remote_newest(node, ref, reg)
        result.local = newest(_local_images(node, ref))
        if result.generation is None or (result.local and result.local >= result.generation):
            return result
        got = fetch(node, ref, result.generation, reg)
        result.fetched_layers, result.reused_layers, result.bytes = (
            got.fetched_layers, got.reused_layers, got.bytes)
    except (CachesyncError, OSError) as e:
        metrics.FAILURES.labels("pull").inc()
        result.error = str(e)
    return result


def refresh_for_setup(node: Node, ref: CacheRef, *,
                      registry: Registry | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> None:
    """Before setup: pull a newer remote generation if there is one. Never raises for registry
    problems: on failure or timeout, one log line says what setup falls back to."""
    settings = node.settings.registry
    if settings is None:
        return
    timeout = settings.setup_timeout
    deadline = time.monotonic() + timeout
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            reg = registry or Registry(settings, sleep=sleep)
            remote = remote_newest(node, ref, reg)
            local = newest(_local_images(node, ref))
            outcome["remote"], outcome["local"] = remote, local
            if remote is None or (local is not None and local >= remote):
                return
            outcome["fetched"] = fetch(node, ref, remote, reg, deadline=deadline, attempts=2)
        except Exception as e:  # noqa: BLE001 (setup must never fail for the registry's sake)
            outcome["error"] = e

    worker = threading.Thread(target=work, name=f"pull-{ref.key}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        outcome["error"] = RegistryUnavailable(f"registry slower than the setup timeout "
                                               f"({timeout:g}s)")
    error = outcome.get("error")
    if error is None:
        fetched = outcome.get("fetched")
        if isinstance(fetched, FetchResult) and not fetched.already_local:
            log.info("pulled %s:%s from the registry (%d layer(s), %s; %d already here)", ref,
                     fetched.generation, fetched.fetched_layers, human(fetched.bytes),
                     fetched.reused_layers, extra={"cache": str(ref), "event": "lazy-pull"})
        return
    try:
        local = newest(_local_images(node, ref))
    except CachesyncError:
        local = None
    fallback = f"the newest local generation {local}" if local else "an empty cache"
    metrics.FAILURES.labels("lazy-pull").inc()
    log.warning("cache %s: registry pull failed (%s); setting up from %s", ref,
                str(error).splitlines()[0][:300] if str(error) else type(error).__name__,
                fallback, extra={"cache": str(ref), "event": "lazy-pull-fallback"})
