"""Adapter for the skopeo CLI: copies between a node's buildah storage and local OCI layouts.

How a commit's layers become compressed blobs without recompressing unchanged lower layers
(skopeo 1.9 / containers-image 5.23, checked with a two-generation image):

- ``containers-storage -> oci:`` with ``--dest-compress-format zstd`` recompresses every layer on
  every copy: the OCI layout destination only reuses a blob of the exact same digest, and layers
  in storage are offered by their uncompressed DiffID (a 400 MB lower layer took as long the
  second time as the first);
- ``containers-storage -> oci:`` *uncompressed* (``--dest-oci-accept-uncompressed-layers``)
  names blobs by DiffID, so a layer already exported is skipped without being read (0.01 s
  instead of 2 s for the same image);
- so ``export`` copies uncompressed, and ``compress`` then runs skopeo again on a small layout
  holding only the layers that have no compressed blob yet, with ``--dest-compress-format``.
  The DiffID -> compressed blob table lives in the BlobStore (oci.py);
- an image none of whose layers was compressed before (a cache's first push) is copied
  compressed in one pass instead (``export_compressed``), and its layers are marked exported.

For a pull, ``import_layout`` copies ``oci: -> containers-storage``; layers the storage already
holds are given to it by DiffID (uncompressed descriptor) and are reused, never read.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from .buildah import Buildah
from .errors import BuildahError
from .oci import (CONFIG, LAYER_TAR, MANIFEST, BlobStore, Descriptor, build_manifest, digest_of,
                  parse_manifest)
from .state import write_atomic

log = logging.getLogger(__name__)


class Skopeo:
    def __init__(self, binary: str = "skopeo"):
        self.binary = binary

    def _run(self, *args: str) -> str:
        argv = [self.binary, *args]
        log.debug("run skopeo %s", args[0] if args else "")
        try:
            p = subprocess.run(argv, capture_output=True, text=True, check=False)
        except FileNotFoundError as e:
            raise BuildahError(argv, 127, f"{self.binary} is not installed "
                                          "(apt-get install skopeo)") from e
        if p.returncode != 0:
            raise BuildahError(argv, p.returncode, p.stderr)
        return p.stdout

    def copy(self, src: str, dest: str, *flags: str) -> None:
        self._run("copy", "--quiet", *flags, src, dest)

    def inspect(self, ref: str, *flags: str) -> dict:
        return json.loads(self._run("inspect", *flags, ref))


def export(skopeo: Skopeo, buildah: Buildah, image: str, store: BlobStore, name: str
           ) -> tuple[Descriptor, tuple[Descriptor, ...], tuple[str, ...]]:
    """Copy ``image`` uncompressed into the export layout as ``name``.

    Returns (config descriptor, uncompressed layer descriptors, DiffIDs). Layers exported before
    are skipped by skopeo (same DiffID)."""
    store.ensure()
    skopeo.copy(buildah.storage_transport + image, f"oci:{store.export}:{name}",
                "--dest-oci-accept-uncompressed-layers")
    entry = store.index_entry(name, store.export)
    if entry is None:
        raise BuildahError(["skopeo", "copy"], 1, f"export of {image} left no index entry")
    manifest = parse_manifest(store.read_blob(entry.digest, store.export), entry.digest,
                              f"exported {image}")
    store.remove_index_entry(name, store.export)
    config = json.loads(store.read_blob(manifest.config.digest, store.export))
    diff_ids = tuple(config["rootfs"]["diff_ids"])
    return manifest.config, manifest.layers, diff_ids


def export_compressed(skopeo: Skopeo, buildah: Buildah, image: str, store: BlobStore, name: str,
                      compression: str) -> tuple[Descriptor, tuple[Descriptor, ...]]:
    """Copy ``image`` compressed straight into the blob store's layout, in one pass (for an
    image none of whose layers has a compressed blob yet). Returns (config, layers)."""
    store.ensure()
    skopeo.copy(buildah.storage_transport + image, f"oci:{store.layout}:{name}",
                "--dest-compress-format", compression)
    entry = store.index_entry(name)
    store.remove_index_entry(name)
    if entry is None:
        raise BuildahError(["skopeo", "copy"], 1, f"export of {image} left no index entry")
    manifest = parse_manifest(store.read_blob(entry.digest), entry.digest, f"exported {image}")
    return manifest.config, manifest.layers


def mark_exported(store: BlobStore, diff_id: str) -> None:
    """An empty placeholder for layer ``diff_id`` in the export layout: the next uncompressed
    export skips that layer (skopeo only checks that the blob file exists)."""
    path = store.blob_path(diff_id, store.export)
    if not path.exists():
        path.touch()


def compress(skopeo: Skopeo, store: BlobStore, layers: Sequence[Descriptor], compression: str
             ) -> list[Descriptor]:
    """Compress exported (uncompressed) layers into the blob store, in one skopeo run.

    Returns the compressed descriptors, in order."""
    if not layers:
        return []
    with tempfile.TemporaryDirectory(dir=store.root, prefix=".compress-") as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        (src / "blobs" / "sha256").mkdir(parents=True)
        for layer in layers:
            os.link(store.blob_path(layer.digest, store.export),
                    src / "blobs" / "sha256" / layer.digest.removeprefix("sha256:"))
        config_raw = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
            "type": "layers", "diff_ids": [layer.digest for layer in layers]}}).encode()
        config = Descriptor(CONFIG, digest_of(config_raw), len(config_raw))
        manifest_raw = build_manifest(config, [Descriptor(LAYER_TAR, x.digest, x.size)
                                               for x in layers], {})
        for raw in (config_raw, manifest_raw):
            (src / "blobs" / "sha256" / digest_of(raw).removeprefix("sha256:")).write_bytes(raw)
        (src / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (src / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": MANIFEST, "digest": digest_of(manifest_raw), "size": len(manifest_raw),
             "annotations": {"org.opencontainers.image.ref.name": "x"}}]}))
        skopeo.copy(f"oci:{src}:x", f"oci:{dst}:x", "--dest-compress-format", compression)
        index = json.loads((dst / "index.json").read_text())
        out_digest = index["manifests"][0]["digest"]
        out = parse_manifest((dst / "blobs" / "sha256" / out_digest.removeprefix("sha256:"))
                             .read_bytes(), out_digest, "compressed layers")
        if len(out.layers) != len(layers):
            raise BuildahError(["skopeo", "copy"], 1, "compression changed the layer count")
        for layer in out.layers:
            target = store.blob_path(layer.digest)
            if not target.exists():
                os.replace(dst / "blobs" / "sha256" / layer.digest.removeprefix("sha256:"),
                           target)
        return [Descriptor(x.media_type, x.digest, x.size) for x in out.layers]


def import_layout(skopeo: Skopeo, buildah: Buildah, store: BlobStore, manifest_raw: bytes,
                  name: str, image: str) -> None:
    """Copy a manifest whose blobs are in the layout (or, for uncompressed DiffID descriptors,
    already in storage) into buildah storage as ``image``."""
    store.ensure()
    digest = digest_of(manifest_raw)
    path = store.blob_path(digest)
    if not path.exists():
        write_atomic(path, manifest_raw)
    store.set_index_entry(name, Descriptor(MANIFEST, digest, len(manifest_raw)))
    try:
        skopeo.copy(f"oci:{store.layout}:{name}", buildah.storage_transport + image)
    finally:
        store.remove_index_entry(name)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
