"""OCI images as plain data, and the node's local blob store.

Pure functions: parse and validate manifests and configs (media types, well-formed digests,
content that hashes to its descriptor), build our manifests, decide which layers a node lacks.

``BlobStore`` is the directory ``<root>/blobs``:

    layout/              an OCI image layout of compressed blobs (pushed or pulled), with
                         index entries only while an import runs
    export/              the uncompressed OCI layout skopeo exports commits into; exported layer
                         blobs are replaced by sparse placeholders of the same size once
                         compressed, so the next export skips them without keeping the bytes
    diffids/<c>/<hex>    which compressed blob (zstd or gzip) holds the layer with DiffID <hex>
    repos/<hex>          registry repositories known to hold blob <hex> (for cross-repo mounts)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from .errors import DigestMismatch, RegistryError
from .state import write_atomic

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = LAYER_TAR + "+gzip"
LAYER_ZSTD = LAYER_TAR + "+zstd"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
LAYER_TYPES = {LAYER_TAR, LAYER_GZIP, LAYER_ZSTD, DOCKER_LAYER_GZIP}
COMPRESSED_TYPE = {"zstd": LAYER_ZSTD, "gzip": LAYER_GZIP}
ANNOTATION_GENERATION = "io.cachesync.generation"
ANNOTATION_CREATED = "org.opencontainers.image.created"
REF_NAME = "org.opencontainers.image.ref.name"
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def check_digest(digest: object, what: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise RegistryError(f"{what}: digest {str(digest)[:80]!r} is not a sha256 digest")
    return digest


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: object, what: str) -> "Descriptor":
        if not isinstance(data, dict):
            raise RegistryError(f"{what}: descriptor is not an object")
        size = data.get("size")
        if not isinstance(size, int) or size < 0:
            raise RegistryError(f"{what}: descriptor size {size!r} is not a byte count")
        media_type = data.get("mediaType")
        if not isinstance(media_type, str):
            raise RegistryError(f"{what}: descriptor has no media type")
        return cls(media_type, check_digest(data.get("digest"), what), size,
                   dict(data.get("annotations") or {}))


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    digest: str
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]

    @property
    def generation_tag(self) -> str | None:
        return self.annotations.get(ANNOTATION_GENERATION)


@dataclass(frozen=True)
class ImageConfig:
    raw: bytes
    diff_ids: tuple[str, ...]


def parse_manifest(raw: bytes, expected_digest: str | None = None, what: str = "manifest"
                   ) -> Manifest:
    """Validate an image manifest: JSON, schema 2, known media types, well-formed digests, and
    (given ``expected_digest``) content that hashes to it."""
    digest = digest_of(raw)
    if expected_digest is not None and digest != expected_digest:
        raise DigestMismatch(f"{what}: content hashes to {digest[:19]}..., not "
                             f"{expected_digest[:19]}...; refused")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise RegistryError(f"{what}: not JSON") from e
    if not isinstance(data, dict) or data.get("schemaVersion") != 2:
        raise RegistryError(f"{what}: not a schema 2 image manifest")
    media_type = data.get("mediaType") or MANIFEST
    if media_type not in (MANIFEST, DOCKER_MANIFEST):
        raise RegistryError(f"{what}: unsupported media type {str(media_type)[:80]!r}")
    config = Descriptor.from_json(data.get("config"), f"{what} config")
    if config.media_type not in (CONFIG, DOCKER_CONFIG):
        raise RegistryError(f"{what}: unsupported config type {config.media_type[:80]!r}")
    layers_raw = data.get("layers")
    if not isinstance(layers_raw, list):
        raise RegistryError(f"{what}: no layer list")
    layers = tuple(Descriptor.from_json(d, f"{what} layer {i}") for i, d in enumerate(layers_raw))
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise RegistryError(f"{what}: unsupported layer type {layer.media_type[:80]!r}")
    return Manifest(raw, digest, media_type, config, layers, dict(data.get("annotations") or {}))


def parse_config(raw: bytes, descriptor: Descriptor, layer_count: int, what: str = "config"
                 ) -> ImageConfig:
    """Validate an image config against its descriptor and the manifest's layer count."""
    if len(raw) != descriptor.size or digest_of(raw) != descriptor.digest:
        raise DigestMismatch(f"{what}: content does not match {descriptor.digest[:19]}...; "
                             "refused")
    try:
        data = json.loads(raw)
        diff_ids = tuple(data["rootfs"]["diff_ids"] or ())
    except (ValueError, KeyError, TypeError) as e:
        raise RegistryError(f"{what}: not an image config with rootfs.diff_ids") from e
    for d in diff_ids:
        check_digest(d, f"{what} diff_id")
    if len(diff_ids) != layer_count:
        raise RegistryError(f"{what}: {len(diff_ids)} diff_ids for {layer_count} layers")
    return ImageConfig(raw, diff_ids)


def build_manifest(config: Descriptor, layers: Iterable[Descriptor],
                   annotations: Mapping[str, str]) -> bytes:
    """Our manifests: canonical JSON bytes (sorted keys), so a rebuild gives the same digest."""
    data = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config.to_json(),
            "layers": [d.to_json() for d in layers], "annotations": dict(annotations)}
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def layout_name(cache_key: str, tag: str, kind: str) -> str:
    """A name an OCI layout accepts (its ref names allow no '__'), unique per cache and tag."""
    return f"{kind}-{hashlib.sha256(f'{cache_key}:{tag}'.encode()).hexdigest()[:24]}"


def missing_layers(layers: Iterable[Descriptor], diff_ids: Iterable[str],
                   local_diff_ids: set[str], local_blobs: set[str]) -> list[Descriptor]:
    """Layers to download: those whose DiffID the node's storage lacks and whose compressed
    blob is not already in its blob store."""
    return [layer for layer, diff_id in zip(layers, diff_ids)
            if diff_id not in local_diff_ids and layer.digest not in local_blobs]


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.layout = self.root / "layout"
        self.export = self.root / "export"

    def ensure(self) -> "BlobStore":
        for layout in (self.layout, self.export):
            (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            if not (layout / "oci-layout").exists():
                write_atomic(layout / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            if not (layout / "index.json").exists():
                write_atomic(layout / "index.json",
                             b'{"schemaVersion":2,"manifests":[]}')
        return self

    # blobs
    def blob_path(self, digest: str, layout: Path | None = None) -> Path:
        check_digest(digest, "blob")
        return (layout or self.layout) / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def blobs(self) -> set[str]:
        d = self.layout / "blobs" / "sha256"
        return {"sha256:" + p.name for p in d.iterdir() if len(p.name) == 64} if d.exists() \
            else set()

    def read_blob(self, digest: str, layout: Path | None = None) -> bytes:
        return self.blob_path(digest, layout).read_bytes()

    def put_bytes(self, data: bytes) -> Descriptor:
        digest = digest_of(data)
        path = self.blob_path(digest)
        if not path.exists():
            write_atomic(path, data)
        return Descriptor("", digest, len(data))

    # index entries
    def _index(self, layout: Path) -> dict:
        try:
            return json.loads((layout / "index.json").read_text())
        except (OSError, ValueError):
            return {"schemaVersion": 2, "manifests": []}

    def index_entry(self, name: str, layout: Path | None = None) -> Descriptor | None:
        for m in self._index(layout or self.layout).get("manifests", []):
            if (m.get("annotations") or {}).get(REF_NAME) == name:
                return Descriptor.from_json(m, f"index entry {name}")
        return None

    def set_index_entry(self, name: str, manifest: Descriptor, layout: Path | None = None) -> None:
        layout = layout or self.layout
        index = self._index(layout)
        entries = [m for m in index.get("manifests", [])
                   if (m.get("annotations") or {}).get(REF_NAME) != name]
        entry = manifest.to_json()
        entry["annotations"] = {REF_NAME: name}
        index["manifests"] = entries + [entry]
        write_atomic(layout / "index.json", json.dumps(index, sort_keys=True).encode())

    def remove_index_entry(self, name: str, layout: Path | None = None) -> None:
        layout = layout or self.layout
        index = self._index(layout)
        index["manifests"] = [m for m in index.get("manifests", [])
                              if (m.get("annotations") or {}).get(REF_NAME) != name]
        write_atomic(layout / "index.json", json.dumps(index, sort_keys=True).encode())

    # which compressed blob holds a DiffID
    def compressed_for(self, diff_id: str, compression: str) -> Descriptor | None:
        path = self.root / "diffids" / compression / diff_id.removeprefix("sha256:")
        try:
            d = Descriptor.from_json(json.loads(path.read_text()), "diffid record")
        except (OSError, ValueError, RegistryError):
            return None
        return d if self.has_blob(d.digest) else None

    def remember_compressed(self, diff_id: str, compression: str, blob: Descriptor) -> None:
        write_atomic(self.root / "diffids" / compression / diff_id.removeprefix("sha256:"),
                     json.dumps(blob.to_json()).encode())

    # which repositories hold a blob
    def repos_with(self, digest: str) -> list[str]:
        path = self.root / "repos" / digest.removeprefix("sha256:")
        try:
            return [r for r in path.read_text().split() if r]
        except OSError:
            return []

    def remember_repo(self, digest: str, repo: str) -> None:
        known = self.repos_with(digest)
        if repo not in known:
            write_atomic(self.root / "repos" / digest.removeprefix("sha256:"),
                         "\n".join([*known[-7:], repo]).encode())


def prune_store(store: BlobStore, keep_diff_ids: set[str], min_age: float, now: float) -> int:
    """Remove compressed blobs (and their DiffID records) of layers no local image holds any
    more, if older than ``min_age`` seconds (a pull in flight keeps its fresh blobs). Manifests
    and configs go the same way once old. Returns the bytes freed."""
    keep: set[str] = set()
    freed = 0
    for comp_dir in (store.root / "diffids").glob("*"):
        for record in comp_dir.iterdir():
            diff_id = "sha256:" + record.name
            try:
                blob = json.loads(record.read_text())["digest"]
            except (OSError, ValueError, KeyError):
                continue
            if diff_id in keep_diff_ids:
                keep.add(blob)
            elif now - record.stat().st_mtime > min_age:
                record.unlink(missing_ok=True)
    blob_dir = store.layout / "blobs" / "sha256"
    for path in blob_dir.iterdir() if blob_dir.exists() else ():
        if "sha256:" + path.name in keep:
            continue
        st = path.stat()
        if now - st.st_mtime > min_age:  # includes .part files of downloads killed midway
            path.unlink(missing_ok=True)
            freed += st.st_size
    for tmp in store.root.glob(".compress-*"):  # left by a compression killed midway
        if now - tmp.stat().st_mtime > min_age:
            shutil.rmtree(tmp, ignore_errors=True)
    return freed


def punch_placeholder(path: Path) -> None:
    """Replace a file by a sparse file of the same size (its bytes are kept elsewhere)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(0)
        f.truncate(size)
        os.fsync(f.fileno())
