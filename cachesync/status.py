"""What a node holds: its caches (generation, layers, size, volumes, last commit, what waits to
be published, and the registry's generation if asked) and the volumes in use."""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Callable

from . import mounts, records, store
from .errors import CachesyncError
from .generations import Generation
from .names import CacheRef
from .node import Node

log = logging.getLogger(__name__)

RemoteLookup = Callable[[CacheRef], "Generation | None"]


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"


@dataclass(frozen=True)
class CacheStatus:
    namespace: str
    name: str
    generation: str | None      # newest local generation (None: only volumes or journal)
    generations: int            # local generations kept
    layers: int                 # layers of the newest generation
    size_bytes: int             # uncompressed size of the newest generation
    volumes: int                # volumes of this cache in use on the node
    last_commit: str | None     # when the newest generation was made (UTC, ISO 8601)
    pending: tuple[str, ...]    # generations committed here, not yet published
    remote_generation: str | None = None
    remote_error: str | None = None  # the registry could not be asked: why


@dataclass(frozen=True)
class VolumeStatus:
    vol_name: str
    vol_dir: str
    cache: str
    writable: bool
    base: str | None
    phase: str
    mounted: bool


@dataclass(frozen=True)
class Report:
    node_id: str
    root: str
    caches: tuple[CacheStatus, ...]
    volumes: tuple[VolumeStatus, ...]
    remote: bool                # a registry was asked

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node_id, "root": self.root,
                "caches": [dict(asdict(c), pending=list(c.pending)) for c in self.caches],
                "volumes": [asdict(v) for v in self.volumes]}

    def to_text(self) -> str:
        lines = [f"node {self.node_id} ({self.root})"]
        if not self.caches:
            lines.append("no caches")
        else:
            head = ["CACHE", "GENERATION", "LAYERS", "SIZE", "VOLUMES", "LAST COMMIT", "PENDING"]
            if self.remote:
                head.append("REMOTE")
            rows = [head]
            for c in self.caches:
                row = [f"{c.namespace}/{c.name}", c.generation or "-", str(c.layers),
                       _size(c.size_bytes), str(c.volumes), c.last_commit or "-",
                       str(len(c.pending))]
                if self.remote:
                    row.append("unreachable" if c.remote_error else c.remote_generation or "-")
                rows.append(row)
            widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
            lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        if self.volumes:
            lines.append("")
            lines.append("volumes in use:")
            for v in self.volumes:
                state = "mounted" if v.mounted else ("not mounted" if v.phase == records.READY
                                                     else v.phase)
                lines.append(f"  {v.vol_name}  {v.cache}@{v.base or 'empty'}  "
                             f"{'writable' if v.writable else 'read-only'}  {v.vol_dir}  "
                             f"{state}")
        errors = sorted({c.remote_error for c in self.caches if c.remote_error})
        lines += [f"registry unreachable: {e}" for e in errors]
        return "\n".join(lines)


def collect(node: Node, remote_lookup: RemoteLookup | None = None) -> Report:
    gens = store.all_generations(node)
    by_cache: dict[CacheRef, list[store.LocalGeneration]] = defaultdict(list)
    for g in gens:
        by_cache[g.ref].append(g)
    recs = records.load_all(node.state)
    in_use = Counter(r.cache for r in recs)
    pending: dict[CacheRef, list[str]] = defaultdict(list)
    for entry in node.journal.pending():
        pending[entry.ref].append(entry.tag)
    layers = node.buildah.layers()
    tops = node.buildah.image_top_layers()

    caches = []
    for ref in sorted(set(by_cache) | set(in_use) | set(pending)):
        local = by_cache.get(ref, [])
        newest = local[-1] if local else None
        chain = store.layer_chain(tops.get(newest.image.id, ""), layers) if newest else []
        remote_gen, remote_error = None, None
        if remote_lookup is not None:
            try:
                found = remote_lookup(ref)
                remote_gen = found.tag if found else None
            except CachesyncError as e:
                remote_error = str(e)
                log.warning("registry unreachable: %s", e, extra={"cache": str(ref)})
        caches.append(CacheStatus(
            namespace=ref.namespace, name=ref.name,
            generation=newest.generation.tag if newest else None, generations=len(local),
            layers=len(chain), size_bytes=sum(layer.size for layer in chain),
            volumes=in_use.get(ref, 0),
            last_commit=_iso(newest.image.created) if newest else None,
            pending=tuple(pending.get(ref, ())),
            remote_generation=remote_gen, remote_error=remote_error))

    volumes = tuple(VolumeStatus(
        r.vol_name, r.vol_dir, str(r.cache), r.writable, r.base_tag, r.phase,
        mounted=bool(mounts.mounts_under(r.vol_dir))) for r in recs)
    return Report(node.node_id, str(node.state.root), tuple(caches), volumes,
                  remote=remote_lookup is not None)
