"""A node's local generations, read from a real buildah storage."""

from __future__ import annotations

import os

import pytest

from cachesync import store
from cachesync.buildah import Layer
from cachesync.generations import Generation
from cachesync.names import CacheRef

REF = CacheRef("ns", "cache")


@pytest.mark.parametrize("name,expected", [
    ("localhost/cachesync/ns/cache:g00000003-ab", (REF, Generation(3, "ab"))),
    ("localhost/cachesync/team-a/go.mod:g00000010-n1", (CacheRef("team-a", "go.mod"),
                                                         Generation(10, "n1"))),
    ("localhost/cachesync/ns/cache:latest", None),
    ("localhost/cachesync/ns/cache", None),
    ("localhost/other/ns/cache:g00000003-ab", None),
    ("localhost/cachesync/ns/sub/cache:g00000003-ab", None),
    ("localhost/cachesync/NS/cache:g00000003-ab", None),
    ("docker.io/library/debian:bookworm-slim", None),
])
def test_parse_name(name, expected):
    assert store._parse_name(name) == expected


@pytest.mark.parametrize("top,expected", [
    ("c", ["c", "b", "a"]), ("a", ["a"]), ("x", []), ("", []), ("loop1", ["loop1", "loop2"]),
])
def test_layer_chain(top, expected):
    layers = {"a": Layer("a", None, 1), "b": Layer("b", "a", 2), "c": Layer("c", "b", 3),
              "loop1": Layer("loop1", "loop2", 0), "loop2": Layer("loop2", "loop1", 0)}
    assert [layer.id for layer in store.layer_chain(top, layers)] == expected


def test_empty_node(make_node):
    node = make_node()
    assert store.local_generations(node, REF) == []
    assert store.newest_local(node, REF) is None
    assert store.list_caches(node) == {}


def test_generations_oldest_first_per_cache(make_node, commit_files):
    node = make_node("n1")
    for i in range(3):
        commit_files(node, {"f": str(i)})
    commit_files(node, {"g": "x"}, cache="other")
    gens = store.local_generations(node, REF)
    assert [g for g, _ in gens] == [Generation(n, "n1") for n in (1, 2, 3)]
    assert len({image.id for _, image in gens}) == 3
    assert store.newest_local(node, REF) == gens[-1]
    assert store.list_caches(node) == {REF: [Generation(n, "n1") for n in (1, 2, 3)],
                                       CacheRef("ns", "other"): [Generation(1, "n1")]}


def test_pulled_and_foreign_tags(make_node, commit_files):
    """Any image tagged ref.local_image(<generation>) counts (pulled ones too); other tags
    do not."""
    node = make_node("n1")
    commit_files(node, {"f": "1"})
    (gen, image), = store.local_generations(node, REF)
    node.buildah.tag(image.id, REF.local_image("g00000007-remote"), REF.local_image("latest"),
                     "localhost/somebody/else:g00000009-x")
    assert [g for g, _ in store.local_generations(node, REF)] == [gen, Generation(7, "remote")]
    assert store.newest_local(node, REF)[0] == Generation(7, "remote")
    assert list(store.list_caches(node)) == [REF]


def test_image_size_and_layers(make_node, vol_spec):
    from cachesync import volume

    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "blob").write_bytes(os.urandom(1 << 20))
    volume.teardown(node, spec, "succeeded")
    spec2 = vol_spec("second")
    volume.setup(node, spec2)
    (spec2.vol_dir / "blob2").write_bytes(os.urandom(1 << 19))
    volume.teardown(node, spec2, "succeeded")
    (g1, i1), (g2, i2) = store.local_generations(node, REF)
    s1, s2 = store.image_size(node, i1.id), store.image_size(node, i2.id)
    assert (1 << 20) <= s1 < (1 << 20) + 64 * 1024
    assert (1 << 19) <= s2 - s1 < (1 << 19) + 64 * 1024   # its own layer on top of the first
    assert (store.layer_count(node, i1.id), store.layer_count(node, i2.id)) == (1, 2)
    assert store.layer_count(node, i2.id) == node.buildah.layer_count(i2.id)
    assert store.image_size(node, "0" * 64) == 0
