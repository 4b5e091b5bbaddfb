"""Manifest and config validation, our manifests, which layers are missing, the blob store."""

from __future__ import annotations

import json

import pytest

from cachesync.errors import DigestMismatch, RegistryError
from cachesync.oci import (CONFIG, LAYER_TAR, LAYER_ZSTD, MANIFEST, BlobStore, Descriptor,
                           build_manifest, digest_of, missing_layers, parse_config,
                           parse_manifest, punch_placeholder)

D1, D2, D3 = (digest_of(x) for x in (b"1", b"2", b"3"))
CONFIG_RAW = json.dumps({"rootfs": {"type": "layers", "diff_ids": [D1, D2]}}).encode()
CONFIG_DESC = Descriptor(CONFIG, digest_of(CONFIG_RAW), len(CONFIG_RAW))
LAYERS = (Descriptor(LAYER_ZSTD, D2, 10), Descriptor(LAYER_ZSTD, D3, 20))


def manifest(**changes) -> bytes:
    data = json.loads(build_manifest(CONFIG_DESC, LAYERS, {"io.cachesync.generation": "g1"}))
    data.update(changes)
    return json.dumps(data).encode()


def test_build_manifest_is_canonical_and_parses_back():
    raw = build_manifest(CONFIG_DESC, LAYERS, {"io.cachesync.generation": "g00000001-a"})
    assert raw == build_manifest(CONFIG_DESC, LAYERS, {"io.cachesync.generation": "g00000001-a"})
    m = parse_manifest(raw, digest_of(raw))
    assert (m.config, m.layers, m.generation_tag) == (CONFIG_DESC, LAYERS, "g00000001-a")
    assert m.media_type == MANIFEST


@pytest.mark.parametrize("raw,error", [
    (b"not json", "not JSON"),
    (json.dumps({"schemaVersion": 1}).encode(), "schema 2"),
    (manifest(mediaType="application/vnd.oci.image.index.v1+json"), "unsupported media type"),
    (manifest(config={"mediaType": CONFIG, "digest": "sha256:abc", "size": 1}), "not a sha256"),
    (manifest(config={"mediaType": CONFIG, "digest": D1, "size": -1}), "byte count"),
    (manifest(config={"mediaType": "text/plain", "digest": D1, "size": 1}), "config type"),
    (manifest(layers=[{"mediaType": "application/x-evil", "digest": D1, "size": 1}]),
     "layer type"),
    (manifest(layers=[{"mediaType": LAYER_TAR, "digest": "md5:00", "size": 1}]), "not a sha256"),
    (manifest(layers="nope"), "no layer list"),
])
def test_bad_manifests_are_refused(raw, error):
    with pytest.raises(RegistryError, match=error):
        parse_manifest(raw)


def test_manifest_not_matching_its_digest_is_refused():
    raw = manifest()
    with pytest.raises(DigestMismatch):
        parse_manifest(raw, digest_of(raw + b" "))


def test_config_must_match_its_descriptor_and_layer_count():
    assert parse_config(CONFIG_RAW, CONFIG_DESC, 2).diff_ids == (D1, D2)
    with pytest.raises(DigestMismatch):
        parse_config(CONFIG_RAW.replace(b"layers", b"Layers"), CONFIG_DESC, 2)
    with pytest.raises(RegistryError, match="2 diff_ids for 3 layers"):
        parse_config(CONFIG_RAW, CONFIG_DESC, 3)


@pytest.mark.parametrize("local_diffs,local_blobs,expected", [
    (set(), set(), [0, 1]),            # a cold node fetches everything
    ({D1}, set(), [1]),                # storage holds layer 0 (by DiffID)
    (set(), {D2}, [1]),                # the blob store holds layer 0's compressed blob
    ({D1, D2}, set(), []),             # everything here
    ({D3}, {D1}, [0, 1]),              # unrelated content does not count
])
def test_missing_layers(local_diffs, local_blobs, expected):
    assert missing_layers(LAYERS, (D1, D2), local_diffs, local_blobs) == [LAYERS[i]
                                                                         for i in expected]


def test_blob_store_index_entries_and_records(tmp_path):
    store = BlobStore(tmp_path / "blobs").ensure()
    desc = store.put_bytes(b"hello")
    assert store.has_blob(desc.digest) and store.read_blob(desc.digest) == b"hello"
    assert desc.digest in store.blobs()
    store.set_index_entry("one", Descriptor(MANIFEST, desc.digest, 5))
    store.set_index_entry("one", Descriptor(MANIFEST, desc.digest, 5))
    assert store.index_entry("one").digest == desc.digest
    assert len(json.loads((store.layout / "index.json").read_text())["manifests"]) == 1
    store.remove_index_entry("one")
    assert store.index_entry("one") is None
    store.remember_compressed(D1, "zstd", Descriptor(LAYER_ZSTD, desc.digest, 5))
    assert store.compressed_for(D1, "zstd").digest == desc.digest
    assert store.compressed_for(D1, "gzip") is None
    store.blob_path(desc.digest).unlink()
    assert store.compressed_for(D1, "zstd") is None  # a record without its blob is no blob
    store.remember_repo(D2, "p/ns/a")
    store.remember_repo(D2, "p/ns/b")
    store.remember_repo(D2, "p/ns/a")
    assert store.repos_with(D2) == ["p/ns/a", "p/ns/b"]


def test_placeholder_keeps_the_size_not_the_bytes(tmp_path):
    path = tmp_path / "layer"
    path.write_bytes(b"x" * 1_000_000)
    punch_placeholder(path)
    assert path.stat().st_size == 1_000_000 and path.stat().st_blocks == 0


def test_prune_store_keeps_blobs_of_layers_in_use_and_fresh_ones(tmp_path):
    import os

    from cachesync.oci import prune_store

    store = BlobStore(tmp_path / "blobs").ensure()
    used, unused, fresh = (store.put_bytes(x * 1000) for x in (b"u", b"x", b"f"))
    store.remember_compressed(D1, "zstd", Descriptor(LAYER_ZSTD, used.digest, used.size))
    store.remember_compressed(D2, "zstd", Descriptor(LAYER_ZSTD, unused.digest, unused.size))
    old = 1_000_000.0
    for path in [store.blob_path(used.digest), store.blob_path(unused.digest),
                 *(store.root / "diffids").rglob("*")]:
        os.utime(path, (old, old))
    freed = prune_store(store, {D1}, min_age=3600, now=old + 7200)
    assert freed == 1000
    assert store.has_blob(used.digest) and store.has_blob(fresh.digest)
    assert not store.has_blob(unused.digest)
    assert store.compressed_for(D1, "zstd") is not None
    assert store.compressed_for(D2, "zstd") is None
