"""Volumes against real buildah, overlayfs and bind mounts: setup, teardown, commit, isolation,
concurrency, flattening and crash safety."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from cachesync import mounts, records, store, volume
from cachesync.errors import MountError, VolumeError
from cachesync.generations import Generation
from cachesync.names import CacheRef
from cachesync.volume import CommitDecision, VolumeKey, VolumeSpec

REF = CacheRef("ns", "cache")


def volume_files(vol_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(vol_dir)): p.read_text()
            for p in sorted(vol_dir.rglob("*")) if p.is_file()}


def assert_gone(node, spec: VolumeSpec) -> None:
    """Nothing of the volume is left: no mount, container, directory, record or lock file."""
    assert not mounts.mounts_under(spec.vol_dir)
    assert not spec.vol_dir.exists()
    assert records.load(node.state, spec.vol_name) is None
    assert node.buildah.container(records.container_name(spec.vol_name)) is None
    assert not (node.state.locks / f"volume-{spec.vol_name}.lock").exists()
    assert not [m for m in mounts.mounts_under(node.state.storage)]


# ------------------------------------------------------------------ decisions (pure)

@pytest.mark.parametrize("writable,job,policy,changes,commit", [
    (True, "succeeded", "success", True, True),
    (True, "unknown", "success", True, True),
    (True, "failed", "success", True, False),
    (True, "failed", "always", True, True),
    (True, "succeeded", "success", False, False),
    (True, "failed", "always", False, False),
    (False, "succeeded", "success", True, False),
    (False, "succeeded", "always", True, False),
])
def test_commit_decision(writable, job, policy, changes, commit):
    decision = volume.commit_decision(writable, job, policy, changes)
    assert isinstance(decision, CommitDecision) and decision.commit is commit
    assert decision.reason


@pytest.mark.parametrize("base_layers,max_layers,squash", [
    (0, 16, False), (15, 16, False), (16, 16, True), (40, 16, True), (1, 2, False), (2, 2, True),
])
def test_should_squash(base_layers, max_layers, squash):
    assert volume.should_squash(base_layers, max_layers) is squash


# ------------------------------------------------------------------ setup and teardown

@pytest.fixture
def public_dir():
    """A directory every user may traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="cachesync-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    leaked = mounts.mounts_under(path)
    for m in leaked:
        mounts.umount(m.mountpoint, lazy=True)
    shutil.rmtree(path)
    assert not leaked


def test_setup_makes_a_writable_shared_volume(make_node, vol_spec, public_dir):
    node = make_node()
    spec = vol_spec(vol_dir=public_dir / "vols" / "pvc-1")
    result = volume.setup(node, spec)
    assert result.base is None and not result.existing
    assert "ready" in result.summary() and "\n" not in result.summary()
    entry = mounts.find_mount(spec.vol_dir)
    assert entry is not None and entry.fstype == "overlay" and entry.shared
    assert stat.S_IMODE(os.stat(spec.vol_dir).st_mode) == 0o777
    rec = records.load(node.state, spec.vol_name)
    assert rec.phase == records.READY and rec.container == "cachesync-pvc-1"
    assert rec.cache == REF and rec.writable and Path(rec.upper).is_dir()
    assert node.buildah.container("cachesync-pvc-1") is not None
    # a non-root build user can write, and its file lands in the container's upper layer
    subprocess.run(["setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups",
                    "sh", "-c", f"mkdir {spec.vol_dir}/m2 && echo hi > {spec.vol_dir}/m2/f"],
                   check=True)
    assert (Path(rec.upper) / "m2" / "f").stat().st_uid == 1000
    volume.teardown(node, spec, "failed")
    assert_gone(node, spec)


def test_commit_and_next_volume_sees_it(make_node, vol_spec, read_cache):
    node = make_node("n1")
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "repo").mkdir()
    (spec.vol_dir / "repo" / "lib.jar").write_text("v1")
    result = volume.teardown(node, spec, "succeeded")
    assert result.committed == Generation(1, "n1")
    assert "committed ns/cache@g00000001-n1" in result.summary()
    assert_gone(node, spec)
    [(gen, image)] = store.local_generations(node, REF)
    assert gen == Generation(1, "n1")
    [entry] = node.journal.pending()
    assert (entry.ref, entry.tag, entry.image_id, entry.layers) == (REF, gen.tag, image.id, 1)
    assert read_cache(node) == {"repo/lib.jar": "v1"}

    spec2 = vol_spec("pvc-2")
    assert volume.setup(node, spec2).base == "g00000001-n1"
    (spec2.vol_dir / "repo" / "lib.jar").write_text("v2")
    assert volume.teardown(node, spec2, "succeeded").committed == Generation(2, "n1")
    assert read_cache(node) == {"repo/lib.jar": "v2"}
    assert [e.tag for e in node.journal.pending()] == ["g00000001-n1", "g00000002-n1"]
    assert store.layer_count(node, store.newest_local(node, REF)[1].id) == 2


def test_read_only_volume_writes_never_reach_the_cache(make_node, vol_spec, commit_files,
                                                       read_cache):
    node = make_node()
    commit_files(node, {"keep": "base"})
    spec = vol_spec("ro", write=False)
    volume.setup(node, spec)
    (spec.vol_dir / "keep").write_text("changed")   # a read-only volume is a scratch copy
    (spec.vol_dir / "new").write_text("x")
    result = volume.teardown(node, spec, "succeeded")
    assert result.committed is None and "read-only" in result.summary()
    assert len(store.local_generations(node, REF)) == 1 and len(node.journal.pending()) == 1
    assert read_cache(node) == {"keep": "base"}
    assert_gone(node, spec)


@pytest.mark.parametrize("policy,job,committed", [
    ("success", "failed", False), ("success", "unknown", True), ("always", "failed", True),
])
def test_commit_policy(make_node, vol_spec, read_cache, policy, job, committed):
    node = make_node(commit_on=policy)
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "out").write_text(job)
    result = volume.teardown(node, spec, job)
    assert (result.committed is not None) is committed
    assert read_cache(node) == ({"out": job} if committed else {})
    assert_gone(node, spec)


def test_no_changes_no_commit(make_node, vol_spec, commit_files):
    node = make_node()
    commit_files(node, {"a": "1"})
    spec = vol_spec("idle")
    volume.setup(node, spec)
    (spec.vol_dir / "a").read_text()
    result = volume.teardown(node, spec, "succeeded")
    assert result.committed is None and result.reason == "no changes"
    assert len(store.local_generations(node, REF)) == 1


def test_deletions_are_committed(make_node, commit_files, read_cache):
    node = make_node()
    commit_files(node, {"a": "1", "b": "2"})
    commit_files(node, {"a": None})
    assert read_cache(node) == {"b": "2"}


def test_volumes_are_isolated(make_node, vol_spec, commit_files, read_cache):
    node = make_node()
    commit_files(node, {"shared": "base"})
    a, b = vol_spec("vol-a"), vol_spec("vol-b")
    volume.setup(node, a)
    volume.setup(node, b)
    (a.vol_dir / "only-a").write_text("a")
    (a.vol_dir / "shared").write_text("changed by a")
    (b.vol_dir / "only-b").write_text("b")
    assert volume_files(a.vol_dir) == {"only-a": "a", "shared": "changed by a"}
    assert volume_files(b.vol_dir) == {"only-b": "b", "shared": "base"}
    assert read_cache(node) == {"shared": "base"}    # nor does the cache see them before commit
    assert volume.teardown(node, b, "failed").committed is None
    assert volume.teardown(node, a, "succeeded").committed == Generation(2, "node")
    assert read_cache(node) == {"only-a": "a", "shared": "changed by a"}


def test_caches_of_two_namespaces_do_not_mix(make_node, commit_files, read_cache):
    node = make_node()
    commit_files(node, {"f": "team-a"}, namespace="team-a")
    commit_files(node, {"f": "team-b"}, namespace="team-b")
    assert read_cache(node, namespace="team-a") == {"f": "team-a"}
    assert read_cache(node, namespace="team-b") == {"f": "team-b"}
    assert read_cache(node, namespace="team-c") == {}


def test_racing_commits_all_finish_with_distinct_generations(make_node, vol_spec, read_cache):
    node = make_node()
    specs = [vol_spec(f"racer-{i}") for i in range(4)]
    for i, spec in enumerate(specs):
        volume.setup(node, spec)
        (spec.vol_dir / "who").write_text(str(i))
        (spec.vol_dir / f"mine-{i}").write_text(str(i))
    results: dict[int, object] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(specs))

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = volume.teardown(node, specs[i], "succeeded")
        except BaseException as e:  # reported below, with the thread's own failure
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    gens = sorted(r.committed for r in results.values())
    assert gens == [Generation(n, "node") for n in (1, 2, 3, 4)]
    # each generation holds exactly its writer's files (base was empty: last writer wins)
    newest_writer = next(i for i, r in results.items() if r.committed == gens[-1])
    assert read_cache(node) == {"who": str(newest_writer), f"mine-{newest_writer}":
                                str(newest_writer)}
    assert len(node.journal.pending()) == 4
    for spec in specs:
        assert_gone(node, spec)
    with node.state.cache_lock(REF, timeout=0):   # the lock is free again
        pass


def test_racing_commits_from_processes(make_node, vol_spec, tmp_path):
    """Two teardowns in separate processes (the CLI), same cache: both commit, in turn."""
    node = make_node("proc")
    specs = [vol_spec(f"proc-{i}") for i in range(2)]
    for i, spec in enumerate(specs):
        volume.setup(node, spec)
        (spec.vol_dir / f"f{i}").write_text(str(i))
    cli = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "cachesync"
    env = {"PATH": os.environ["PATH"], "CACHESYNC_ROOT": str(node.state.root),
           "CACHESYNC_NODE_ID": "proc", "JOB_RESULT": "succeeded"}
    procs = [subprocess.Popen([str(cli), "helper", "teardown", "--vol-name", s.vol_name],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in specs]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(g for g, _ in store.local_generations(node, REF)) == [
        Generation(1, "proc"), Generation(2, "proc")]
    for spec in specs:
        assert_gone(node, spec)


def test_flattening_keeps_the_chain_bounded(make_node, commit_files, read_cache):
    node = make_node(max_layers=3)
    counts = []
    for i in range(5):
        commit_files(node, {f"f{i}": str(i)})
        counts.append(store.layer_count(node, store.newest_local(node, REF)[1].id))
    assert counts == [1, 2, 3, 1, 2]
    assert read_cache(node) == {f"f{i}": str(i) for i in range(5)}
    assert [e.layers for e in node.journal.pending()] == counts


def test_squash_keeps_every_lower_layer(make_node, vol_spec, commit_files, read_cache):
    """buildah 1.28 `commit --squash` of a container based on an image: one layer holding the
    image's whole content plus the container's changes (deletions included)."""
    node = make_node(max_layers=16)
    commit_files(node, {"l1/a": "1", "gone": "x"})
    commit_files(node, {"l2/b": "2", "l1/a": "1b"})
    spec = vol_spec("squash")
    volume.setup(node, spec)
    (spec.vol_dir / "gone").unlink()
    (spec.vol_dir / "l3").write_text("3")
    rec = records.load(node.state, spec.vol_name)
    image = node.buildah.commit(rec.container, REF.local_image("g00000099-x"), squash=True)
    volume.teardown(node, spec, "failed")
    assert node.buildah.layer_count(image) == 1 == store.layer_count(node, image)
    assert read_cache(node) == {"l1/a": "1b", "l2/b": "2", "l3": "3"}


# ------------------------------------------------------------------ idempotence, crash safety

def test_setup_twice_is_a_no_op(make_node, vol_spec):
    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "w").write_text("1")
    again = volume.setup(node, spec)
    assert again.existing and not again.repaired and "already set up" in again.summary()
    assert [c.name for c in node.buildah.containers()] == ["cachesync-pvc-1"]
    assert len([m for m in mounts.mounts_under(spec.vol_dir)]) == 1
    assert volume_files(spec.vol_dir) == {"w": "1"}
    volume.teardown(node, spec, "failed")
    assert_gone(node, spec)


def test_setup_of_a_name_in_use_for_another_cache_is_refused(make_node, vol_spec):
    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    with pytest.raises(VolumeError, match="already set up"):
        volume.setup(node, vol_spec(cache="other"))
    assert records.load(node.state, spec.vol_name).cache == REF
    assert mounts.is_mountpoint(spec.vol_dir)
    volume.teardown(node, spec)


def test_setup_refuses_a_vol_dir_in_use(make_node, vol_spec, tmp_path):
    node = make_node()
    spec = vol_spec()
    spec.vol_dir.mkdir(parents=True)
    (spec.vol_dir / "precious").write_text("data")
    with pytest.raises(VolumeError, match="not an empty directory"):
        volume.setup(node, spec)
    assert (spec.vol_dir / "precious").read_text() == "data"
    assert node.buildah.containers() == [] and records.load_all(node.state) == []
    assert list(node.state.locks.iterdir()) == []


def test_teardown_twice_is_harmless(make_node, vol_spec):
    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "x").write_text("1")
    assert volume.teardown(node, spec, "succeeded").committed == Generation(1, "node")
    again = volume.teardown(node, spec, "succeeded")
    assert not again.removed and again.committed is None
    assert again.summary() == "volume pvc-1: nothing to tear down"
    assert len(store.local_generations(node, REF)) == 1
    assert volume.teardown(node, VolumeKey("never-made"), "failed").removed is False


def test_teardown_by_name_alone_uses_the_record(make_node, vol_spec, read_cache):
    node = make_node()
    spec = vol_spec(cache="npm", namespace="web")
    volume.setup(node, spec)
    (spec.vol_dir / "n").write_text("1")
    result = volume.teardown(node, VolumeKey(spec.vol_name), "succeeded")
    assert result.cache == CacheRef("web", "npm") and result.committed == Generation(1, "node")
    assert read_cache(node, cache="npm", namespace="web") == {"n": "1"}
    assert_gone(node, spec)


def test_teardown_told_read_only_never_commits(make_node, vol_spec, read_cache):
    node = make_node(commit_on="always")
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "x").write_text("1")
    result = volume.teardown(node, VolumeKey(spec.vol_name, writable=False), "succeeded")
    assert result.committed is None and "read-only" in result.reason
    assert read_cache(node) == {}
    assert_gone(node, spec)


def test_teardown_naming_another_cache_changes_nothing(make_node, vol_spec):
    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    with pytest.raises(VolumeError, match="not of ns/other; nothing was changed"):
        volume.teardown(node, VolumeKey(spec.vol_name, cache=CacheRef("ns", "other")))
    assert mounts.is_mountpoint(spec.vol_dir) and records.load(node.state, spec.vol_name)
    volume.teardown(node, spec)
    assert_gone(node, spec)


def test_teardown_with_another_vol_dir_changes_nothing(make_node, vol_spec, tmp_path):
    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    with pytest.raises(VolumeError, match="nothing was changed"):
        volume.teardown(node, VolumeKey(spec.vol_name, tmp_path / "elsewhere"), "succeeded")
    assert mounts.is_mountpoint(spec.vol_dir) and records.load(node.state, spec.vol_name)
    volume.teardown(node, spec)


def _reboot(node, spec) -> None:
    """What a reboot does to a volume: both mounts gone (buildah's run root still counts one)."""
    rec = records.load(node.state, spec.vol_name)
    subprocess.run(["umount", "-l", str(spec.vol_dir)], check=True)
    subprocess.run(["umount", "-l", rec.merged], check=True)
    assert not mounts.is_mountpoint(spec.vol_dir) and not mounts.is_mountpoint(rec.merged)


def test_teardown_after_reboot_still_commits_and_cleans_up(make_node, vol_spec, read_cache):
    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "built").write_text("artifact")
    _reboot(node, spec)
    result = volume.teardown(node, spec, "succeeded")
    assert result.committed == Generation(1, "node")
    assert read_cache(node) == {"built": "artifact"}
    assert_gone(node, spec)


def test_teardown_after_reboot_of_a_failed_job_discards(make_node, vol_spec, read_cache):
    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "built").write_text("artifact")
    _reboot(node, spec)
    assert volume.teardown(node, spec, "failed").committed is None
    assert read_cache(node) == {}
    assert_gone(node, spec)


def test_setup_again_after_reboot_remounts(make_node, vol_spec):
    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "kept").write_text("1")
    _reboot(node, spec)
    again = volume.setup(node, spec)
    assert again.repaired and "remounted" in again.summary()
    assert volume_files(spec.vol_dir) == {"kept": "1"}
    assert mounts.find_mount(spec.vol_dir).shared
    assert volume.teardown(node, spec, "succeeded").committed == Generation(1, "node")
    assert_gone(node, spec)


def _failing_buildah(tmp_path: Path, verb: str) -> str:
    script = tmp_path / f"buildah-failing-{verb}"
    script.write_text("#!/bin/sh\n"
                      f'for a in "$@"; do [ "$a" = {verb} ] && '
                      '{ echo "injected failure" >&2; exit 125; }; done\n'
                      'exec buildah "$@"\n')
    script.chmod(0o755)
    return str(script)


def test_setup_rolls_back_when_buildah_mount_fails(make_node, vol_spec, tmp_path):
    node = make_node()
    node.buildah.binary = _failing_buildah(tmp_path, "mount")
    spec = vol_spec()
    with pytest.raises(Exception, match="injected failure"):
        volume.setup(node, spec)
    node.buildah.binary = "buildah"
    assert node.buildah.containers() == []
    assert_gone(node, spec)


def test_setup_rolls_back_when_the_bind_mount_fails(make_node, vol_spec, monkeypatch):
    node = make_node()

    def refuse(source, target):
        raise MountError(f"bind mount {source} onto {target}: injected failure")

    monkeypatch.setattr(mounts, "bind", refuse)
    spec = vol_spec()
    with pytest.raises(MountError, match="injected"):
        volume.setup(node, spec)
    assert node.buildah.containers() == []
    assert not spec.vol_dir.parent.exists()     # the directories setup made are gone too
    assert_gone(node, spec)


def test_setup_rolls_back_a_bind_mount_already_made(make_node, vol_spec, monkeypatch):
    node = make_node()

    def refuse(target):
        raise MountError(f"make-rshared {target}: injected failure")

    monkeypatch.setattr(mounts, "make_rshared", refuse)
    spec = vol_spec()
    with pytest.raises(MountError, match="injected"):
        volume.setup(node, spec)
    assert node.buildah.containers() == []
    assert_gone(node, spec)


def _half_made(node, spec) -> records.VolumeRecord:
    """A setup killed after `buildah from` and `buildah mount`: record in phase creating."""
    rec = records.VolumeRecord(spec.vol_name, str(spec.vol_dir),
                               records.container_name(spec.vol_name), spec.cache.namespace,
                               spec.cache.name, spec.writable)
    records.save(node.state, rec)
    node.buildah.from_image(None, rec.container)
    merged = node.buildah.mount(rec.container)
    (merged / "partial").write_text("x")
    return replace(rec, merged=str(merged))


def test_setup_after_a_crashed_setup_starts_over(make_node, vol_spec):
    node = make_node()
    spec = vol_spec()
    old = _half_made(node, spec)
    volume.setup(node, spec)
    assert volume_files(spec.vol_dir) == {}        # the half-made container's write is gone
    assert records.load(node.state, spec.vol_name).phase == records.READY
    assert [c.name for c in node.buildah.containers()] == [old.container]
    volume.teardown(node, spec)
    assert_gone(node, spec)


def test_teardown_of_a_crashed_setup_never_commits(make_node, vol_spec):
    node = make_node()
    spec = vol_spec()
    old = _half_made(node, spec)
    result = volume.teardown(node, spec, "succeeded")
    assert result.committed is None and result.reason == "setup never finished"
    assert store.local_generations(node, REF) == []
    assert not mounts.is_mountpoint(old.merged)
    assert_gone(node, spec)


def test_teardown_resumes_a_commit_that_finished_before_a_crash(make_node, vol_spec):
    """The commit finished but the teardown died before journaling: no second commit."""
    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "x").write_text("1")
    rec = records.load(node.state, spec.vol_name)
    image = node.buildah.commit(rec.container, REF.local_image("g00000001-node"))
    records.save(node.state, replace(rec, commit_tag="g00000001-node"))
    result = volume.teardown(node, spec, "succeeded")
    assert result.committed == Generation(1, "node")
    assert [(g, i.id) for g, i in store.local_generations(node, REF)] == [
        (Generation(1, "node"), image)]
    assert [e.tag for e in node.journal.pending()] == ["g00000001-node"]
    assert_gone(node, spec)


def test_teardown_after_a_crash_before_the_commit_commits_once(make_node, vol_spec):
    """The record names a commit that never happened: teardown commits it (once)."""
    node = make_node()
    spec = vol_spec()
    volume.setup(node, spec)
    (spec.vol_dir / "x").write_text("1")
    rec = records.load(node.state, spec.vol_name)
    records.save(node.state, replace(rec, commit_tag="g00000001-node"))
    assert volume.teardown(node, spec, "succeeded").committed == Generation(1, "node")
    assert len(store.local_generations(node, REF)) == 1 and len(node.journal.pending()) == 1


def test_two_roots_are_two_nodes(make_node, commit_files, read_cache):
    a, b = make_node("node-a"), make_node("node-b")
    assert commit_files(a, {"f": "a"}) == Generation(1, "nodea")
    assert read_cache(b) == {}
    assert commit_files(b, {"f": "b"}) == Generation(1, "nodeb")
    assert read_cache(a) == {"f": "a"} and read_cache(b) == {"f": "b"}
    assert [e.tag for e in a.journal.pending()] == ["g00000001-nodea"]
