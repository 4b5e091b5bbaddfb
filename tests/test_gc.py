"""gc: the pure plan (table-driven), and runs against real leftovers and generations."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from cachesync import gc, mounts, records, store, volume
from cachesync.generations import Generation
from cachesync.names import CacheRef

A, B = CacheRef("ns", "a"), CacheRef("ns", "b")
MiB = 1 << 20


def gen(ref: CacheRef, n: int, *layers: str, image: str | None = None) -> gc.GenInfo:
    return gc.GenInfo(ref, Generation(n, "x"), image or f"{ref.name}{n}", float(n), layers)


# a: four generations on one chain (each adds a layer); b: flattened at 3 (squash -> layer b3)
CHAIN = [gen(A, 1, "a1"), gen(A, 2, "a1", "a2"), gen(A, 3, "a1", "a2", "a3"),
         gen(A, 4, "a1", "a2", "a3", "a4")]
FLAT = [gen(B, 1, "b1"), gen(B, 2, "b1", "b2"), gen(B, 3, "b3"), gen(B, 4, "b3", "b4")]
SIZES = {"a1": 4 * MiB, "a2": MiB, "a3": MiB, "a4": MiB,
         "b1": 4 * MiB, "b2": 2 * MiB, "b3": 6 * MiB, "b4": MiB}


def names(removed: list[gc.GenInfo]) -> list[str]:
    return [f"{g.ref.name}{g.generation.number}" for g in removed]


@pytest.mark.parametrize("gens,in_use,pending,budget,expected", [
    # no budget: all but the newest two of each cache
    (CHAIN, set(), set(), None, ["a1", "a2"]),
    (CHAIN + FLAT, set(), set(), None, ["a1", "b1", "a2", "b2"]),
    (CHAIN[:2], set(), set(), None, []),
    ([], set(), set(), None, []),
    # protected: in use by a volume, or not yet published
    (CHAIN, {"a1"}, set(), None, ["a2"]),
    (CHAIN, set(), {(A, Generation(2, "x"))}, None, ["a1"]),
    # budget: oldest first while over it, only what frees bytes
    (FLAT, set(), set(), 100 * MiB, []),
    (FLAT, set(), set(), 7 * MiB, ["b2", "b1"]),       # b1 frees b1 only once b2 is gone
    (FLAT, set(), set(), 12 * MiB, ["b2"]),
    (FLAT, {"b2"}, set(), 7 * MiB, []),                 # b1's layer is b2's too: frees nothing
    (CHAIN, set(), set(), 1, []),                       # one chain: old generations cost nothing
    (FLAT, set(), set(), 1, ["b2", "b1"]),              # the newest is kept even over budget
    # the newest generation of every cache is always kept
    ([gen(A, 1, "a1")], set(), set(), 0, []),
])
def test_plan(gens, in_use, pending, budget, expected):
    assert names(gc.plan(gens, SIZES, in_use, pending, budget)) == expected


@pytest.mark.parametrize("gens,expected", [
    (CHAIN, 7 * MiB), (FLAT, 13 * MiB), (CHAIN[:1] + FLAT[2:], 11 * MiB), ([], 0),
])
def test_disk_usage_counts_shared_layers_once(gens, expected):
    assert gc.disk_usage(gens, SIZES) == expected


# ------------------------------------------------------------------ against a real node

def test_orphan_container_removed_others_left(make_node):
    node = make_node()
    node.buildah.from_image(None, "cachesync-ghost")
    node.buildah.from_image(None, "someone-elses")
    result = gc.run(node, dry_run=True)
    assert result.containers == ["cachesync-ghost"] and result.dry_run
    assert {c.name for c in node.buildah.containers()} == {"cachesync-ghost", "someone-elses"}
    result = gc.run(node)
    assert result.containers == ["cachesync-ghost"]
    assert "1 container(s)" in result.summary()
    assert [c.name for c in node.buildah.containers()] == ["someone-elses"]


def test_crashed_setup_and_broken_volume_cleaned(make_node, vol_spec):
    node = make_node()
    # a setup that died right after writing its record
    crashed = vol_spec("crashed")
    records.save(node.state, records.VolumeRecord(
        crashed.vol_name, str(crashed.vol_dir), records.container_name("crashed"), "ns",
        "cache", True))
    # a volume whose container was removed behind our back: its VOL_DIR is still mounted
    broken = vol_spec("broken")
    volume.setup(node, broken)
    node.buildah.rm(records.container_name("broken"))
    # a healthy volume: left alone
    healthy = vol_spec("healthy")
    volume.setup(node, healthy)
    result = gc.run(node)
    assert sorted(result.records) == ["broken", "crashed"]
    assert str(broken.vol_dir) in result.mounts
    assert [r.vol_name for r in records.load_all(node.state)] == ["healthy"]
    assert not mounts.mounts_under(broken.vol_dir) and not broken.vol_dir.exists()
    assert mounts.is_mountpoint(healthy.vol_dir)
    volume.teardown(node, healthy)


def test_busy_volume_is_left_alone(make_node, vol_spec):
    node = make_node()
    spec = vol_spec("busy")
    records.save(node.state, records.VolumeRecord(
        spec.vol_name, str(spec.vol_dir), records.container_name("busy"), "ns", "cache", True))
    with records.volume_lock(node.state, "busy", timeout=1):
        assert gc.run(node).records == []
    assert records.load(node.state, "busy") is not None
    assert gc.run(node).records == ["busy"]


def test_stale_overlay_mount_of_a_gone_layer(make_node, tmp_path):
    node = make_node()
    layer_dir = node.buildah.graphroot / node.buildah.driver / ("f" * 64)
    for d in ("diff", "work", "merged", "lower"):
        (layer_dir / d).mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={layer_dir / 'lower'},upperdir={layer_dir / 'diff'},"
                    f"workdir={layer_dir / 'work'}", str(layer_dir / "merged")], check=True)
    assert gc.run(node, dry_run=True).mounts == [str(layer_dir / "merged")]
    assert mounts.is_mountpoint(layer_dir / "merged")
    assert gc.run(node).mounts == [str(layer_dir / "merged")]
    assert not mounts.is_mountpoint(layer_dir / "merged")


def _publish_all(node) -> None:
    for entry in node.journal.pending():
        node.journal.drop(entry)


def test_generations_without_budget(make_node, vol_spec, commit_files, read_cache):
    node = make_node()
    commit_files(node, {"f": "1"})
    commit_files(node, {"f": "2"})
    user = vol_spec("user", write=False)
    volume.setup(node, user)                        # uses generation 2
    commit_files(node, {"f": "3"})
    commit_files(node, {"f": "4"})
    commit_files(node, {"f": "5"})
    assert gc.run(node).generations == []          # nothing published yet: all kept
    _publish_all(node)
    result = gc.run(node, dry_run=True)
    assert result.generations == ["ns/cache@g00000001-node", "ns/cache@g00000003-node"]
    assert len(store.local_generations(node, CacheRef("ns", "cache"))) == 5
    gc.run(node)
    assert [g.number for g, _ in store.local_generations(node, CacheRef("ns", "cache"))] == [
        2, 4, 5]
    assert (user.vol_dir / "f").read_text() == "2"   # the volume still works
    volume.teardown(node, user)
    assert read_cache(node) == {"f": "5"}


def test_generations_within_budget(make_node, commit_files, read_cache):
    node = make_node("n", max_layers=2)
    for i in range(4):   # layers: [1], [1,2], squashed [3], [3,4]
        commit_files(node, {f"f{i}": os.urandom(256 * 1024).hex()})
    _publish_all(node)
    ref = CacheRef("ns", "cache")
    sizes = {g.number: store.image_size(node, i.id) for g, i in store.local_generations(node, ref)}
    newest_two = sizes[4]   # generation 4 holds generation 3's layer too
    node_big = make_node("n", max_layers=2, gc_budget_bytes=sizes[2] + sizes[4] + 1)
    assert gc.run(node_big).generations == []
    node_small = make_node("n", max_layers=2, gc_budget_bytes=newest_two + 1)
    result = gc.run(node_small)
    assert result.generations == ["ns/cache@g00000002-n", "ns/cache@g00000001-n"]
    assert result.freed_bytes >= sizes[2]
    assert [g.number for g, _ in store.local_generations(node, ref)] == [3, 4]
    assert sorted(read_cache(node)) == ["f0", "f1", "f2", "f3"]


def test_blobs_of_layers_no_image_holds_are_pruned(make_node, commit_files):
    from cachesync.oci import BlobStore, Descriptor

    node = make_node()
    gen = commit_files(node, {"a.txt": "kept"})
    held = node.buildah.inspect_image(CacheRef("ns", "cache").local_image(gen.tag))
    held_diff = held["OCIv1"]["rootfs"]["diff_ids"][0]
    blobs = BlobStore(node.state.blobs).ensure()
    paths = {}
    for diff_id, content in ((held_diff, b"held layer"), ("sha256:" + "e" * 64, b"gone layer")):
        path = blobs.layout / "blobs" / "sha256" / hashlib.sha256(content).hexdigest()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        blobs.remember_compressed(diff_id, "zstd", Descriptor(
            "application/vnd.oci.image.layer.v1.tar+zstd", "sha256:" + path.name, len(content)))
        paths[content] = path
    old = 1_000_000_000  # long ago: past the hour a pull in flight is protected
    for path in [*paths.values(), *(blobs.root / "diffids").rglob("*")]:
        os.utime(path, (old, old))

    result = gc.run(node)
    assert not paths[b"gone layer"].exists()
    assert paths[b"held layer"].exists()
    assert result.blob_bytes == len(b"gone layer")
    assert "MiB of layer blobs" in result.summary()
