"""Lazy pull and warm-up: bad registries never fail a setup and never leave a half image."""

from __future__ import annotations

import json
import logging
import os

import pytest

from cachesync import pull, sync
from cachesync import store as local_store
from cachesync.generations import Generation
from cachesync.names import CacheRef
from cachesync.oci import (CONFIG, LAYER_ZSTD, BlobStore, Descriptor, build_manifest, digest_of,
                           parse_manifest)
from cachesync.registry import Registry
from registry_fixtures import Answer, commit_generation, read_cache_file

NO_SLEEP = lambda _s: None  # noqa: E731
REF = CacheRef("team", "cargo")


def fallback_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "cachesync.pull" and r.levelno >= logging.WARNING]


def local_tags(node, ref=REF) -> list[str]:
    return sorted(g.tag for g, _ in local_store.local_generations(node, ref))


def no_partial_files(node) -> bool:
    return not [p for p in node.state.blobs.rglob("*") if p.name.endswith(".part")]


@pytest.fixture
def published(make_node, own_registry):
    """Node A published two generations of REF to a registry of the test's own."""
    a = make_node("a", registry=own_registry.settings(prefix="p"))
    e1 = commit_generation(a, REF, {"lib/base.bin": os.urandom(512 * 1024)})
    e2 = commit_generation(a, REF, {"lib/new.txt": b"generation two"})
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    reg = Registry(a.settings.registry, sleep=NO_SLEEP)
    repo = reg.repository(REF.namespace, REF.name)
    raw, digest, _ = reg.get_manifest(repo, e2.tag)
    return a, (e1, e2), parse_manifest(raw, digest)


def test_setup_pulls_the_newest_generation(published, make_node, own_registry, caplog):
    _, (_, e2), _ = published
    b = make_node("b", registry=own_registry.settings(prefix="p"))
    caplog.set_level(logging.INFO)
    pull.refresh_for_setup(b, REF)
    assert local_tags(b) == [e2.tag]
    assert read_cache_file(b, REF.local_image(e2.tag), "lib/new.txt") == b"generation two"
    assert fallback_lines(caplog) == []
    assert pull.remote_newest(b, REF) == Generation.parse(e2.tag)


def test_corrupted_blob_falls_back_to_an_empty_cache(published, make_node, own_registry,
                                                     caplog):
    _, _, manifest = published
    own_registry.blob_path(manifest.layers[0].digest).write_bytes(b"not the layer")
    b = make_node("b", registry=own_registry.settings(prefix="p"))
    pull.refresh_for_setup(b, REF)
    lines = fallback_lines(caplog)
    assert len(lines) == 1 and "an empty cache" in lines[0] and "refused" in lines[0]
    assert local_tags(b) == [] and no_partial_files(b)
    assert not BlobStore(b.state.blobs).has_blob(manifest.layers[0].digest)
    w = pull.warm(b, REF)
    assert not w.ok and "refused" in w.summary()


def test_bad_new_layer_falls_back_to_the_newest_local_generation(published, make_node,
                                                                 own_registry, caplog):
    a, (e1, e2), _ = published
    b = make_node("b", registry=own_registry.settings(prefix="p"))
    assert pull.warm(b, REF).ok
    e3 = commit_generation(a, REF, {"lib/third.txt": b"three"})
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    reg = Registry(a.settings.registry, sleep=NO_SLEEP)
    raw, digest, _ = reg.get_manifest(reg.repository(REF.namespace, REF.name), e3.tag)
    own_registry.blob_path(parse_manifest(raw, digest).layers[-1].digest).write_bytes(b"bad")
    pull.refresh_for_setup(b, REF)
    lines = fallback_lines(caplog)
    assert len(lines) == 1 and f"newest local generation {e2.tag}" in lines[0]
    assert local_tags(b) == [e2.tag]


def test_registry_down_at_setup_is_one_line_and_no_error(published, make_node, own_registry,
                                                         caplog):
    b = make_node("b", registry=own_registry.settings(prefix="p"))
    own_registry.stop()
    pull.refresh_for_setup(b, REF, sleep=NO_SLEEP)
    lines = fallback_lines(caplog)
    assert len(lines) == 1 and "unreachable" in lines[0] and "an empty cache" in lines[0]
    w = pull.warm(b, REF, registry=Registry(b.settings.registry, sleep=NO_SLEEP))
    assert not w.ok and "unreachable" in w.summary()


def test_slow_registry_gives_up_after_the_setup_timeout(make_node, static_registry, caplog):
    static_registry.routes[("GET", "/v2/cachesync/team/cargo/tags/list")] = Answer(
        200, b'{"tags":["g00000001-x"]}', delay=4.0)
    b = make_node("b", registry=static_registry.settings(setup_timeout=0.5, timeout=10.0))
    pull.refresh_for_setup(b, REF, sleep=NO_SLEEP)
    lines = fallback_lines(caplog)
    assert len(lines) == 1 and "slower than the setup timeout" in lines[0]
    assert local_tags(b) == []


def _image(config_raw: bytes, layer_bytes: bytes, layer_digest: str | None = None,
           config_digest: str | None = None) -> tuple[bytes, dict[str, bytes]]:
    layer_d = layer_digest or digest_of(layer_bytes)
    config_d = config_digest or digest_of(config_raw)
    manifest = build_manifest(Descriptor(CONFIG, config_d, len(config_raw)),
                              [Descriptor(LAYER_ZSTD, layer_d, len(layer_bytes))],
                              {"io.cachesync.generation": "g00000001-x"})
    return manifest, {config_d: config_raw, layer_d: layer_bytes}


CONFIG_RAW = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
    "type": "layers", "diff_ids": [digest_of(b"whatever")]}}).encode()


@pytest.mark.parametrize("case", ["layer", "config", "manifest-header", "manifest-type"])
def test_manifests_and_blobs_that_do_not_match_are_refused(case, make_node, static_registry):
    repo = "cachesync/team/cargo"
    layer = os.urandom(1000)
    if case == "layer":         # the manifest names a digest the served layer does not hash to
        manifest, blobs = _image(CONFIG_RAW, layer, layer_digest=digest_of(b"other"))
    elif case == "config":      # the config descriptor points at a wrong digest
        manifest, blobs = _image(CONFIG_RAW, layer, config_digest=digest_of(b"other config"))
    else:
        manifest, blobs = _image(CONFIG_RAW, layer)
    static_registry.serve_image(repo, "g00000001-x", manifest, blobs)
    if case == "manifest-header":  # the registry claims another digest for the manifest
        static_registry.routes[("GET", f"/v2/{repo}/manifests/g00000001-x")].headers[
            "Docker-Content-Digest"] = digest_of(b"another manifest")
    if case == "manifest-type":
        static_registry.routes[("GET", f"/v2/{repo}/manifests/g00000001-x")].body = \
            manifest.replace(b"vnd.oci.image.manifest.v1+json", b"vnd.evil+json")
    b = make_node("b", registry=static_registry.settings())
    w = pull.warm(b, REF, registry=Registry(b.settings.registry, sleep=NO_SLEEP))
    assert not w.ok
    expected = {"layer": "refused", "config": "refused", "manifest-header": "refused",
                "manifest-type": "unsupported media type"}[case]
    assert expected in w.error
    assert local_tags(b) == [] and no_partial_files(b)
    for digest in blobs:
        if case in ("layer", "config") and digest != digest_of(blobs[digest]):
            assert not BlobStore(b.state.blobs).has_blob(digest)
