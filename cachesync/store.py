"""The cache images a node holds: its local generations, their layers and sizes.

Every generation of a cache, committed here or pulled from the registry, is an image tagged
``<namespace>/<name>`` ``ref.local_image(gen.tag)`` in the node's buildah storage; these functions
read that storage and nothing else.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .buildah import Buildah, Image, Layer
from .errors import UsageError
from .generations import Generation
from .names import LOCAL_PREFIX, CacheRef
from .node import Node


@dataclass(frozen=True)
class LocalGeneration:
    ref: CacheRef
    generation: Generation
    image: Image


def _parse_name(name: str) -> tuple[CacheRef, Generation] | None:
    """``localhost/cachesync/<ns>/<name>:<tag>`` -> (ref, generation); None for other names."""
    repo, sep, tag = name.rpartition(":")
    if not sep or not repo.startswith(LOCAL_PREFIX + "/"):
        return None
    parts = repo[len(LOCAL_PREFIX) + 1:].split("/")
    gen = Generation.parse(tag)
    if len(parts) != 2 or gen is None:
        return None
    try:
        return CacheRef(parts[0], parts[1]), gen
    except UsageError:  # a foreign image that merely looks like ours: not a cache
        return None


def all_generations(node: Node) -> list[LocalGeneration]:
    """Every local generation of every cache, oldest first (by cache, then generation)."""
    out = []
    for image in node.buildah.images():
        for name in image.names:
            parsed = _parse_name(name)
            if parsed:
                out.append(LocalGeneration(parsed[0], parsed[1], image))
    return sorted(out, key=lambda g: (g.ref, g.generation))


def local_generations(node: Node, ref: CacheRef) -> list[tuple[Generation, Image]]:
    """The generations of ``ref`` on this node, oldest first."""
    return [(g.generation, g.image) for g in all_generations(node) if g.ref == ref]


def newest_local(node: Node, ref: CacheRef) -> tuple[Generation, Image] | None:
    gens = local_generations(node, ref)
    return gens[-1] if gens else None


def list_caches(node: Node) -> dict[CacheRef, list[Generation]]:
    """Every cache with at least one local generation, and its generations oldest first."""
    out: dict[CacheRef, list[Generation]] = defaultdict(list)
    for g in all_generations(node):
        out[g.ref].append(g.generation)
    return dict(out)


def layer_chain(top: str, layers: dict[str, Layer]) -> list[Layer]:
    """The layers of an image from its top layer down to the bottom one."""
    chain, seen = [], set()
    current: str | None = top
    while current and current in layers and current not in seen:
        seen.add(current)
        chain.append(layers[current])
        current = layers[current].parent
    return chain


def image_layers(buildah: Buildah, image_id: str) -> list[Layer]:
    """The layers of a local image, top first ([] for an unknown image)."""
    top = buildah.image_top_layers().get(image_id)
    return layer_chain(top, buildah.layers()) if top else []


def image_size(node: Node, image_id: str) -> int:
    """Bytes the image's layers take uncompressed (shared layers counted in full)."""
    return sum(layer.size for layer in image_layers(node.buildah, image_id))


def layer_count(node: Node, image_id: str) -> int:
    return len(image_layers(node.buildah, image_id))
