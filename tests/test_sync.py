"""Publishing journaled commits to a real registry (docker-registry on 127.0.0.1), and reading
them back on a second node root. Images are made straight through buildah (commit_generation)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cachesync import pull, sync
from cachesync.generations import Generation
from cachesync.names import CacheRef
from cachesync.oci import ANNOTATION_GENERATION, LAYER_GZIP, LAYER_ZSTD, parse_manifest
from cachesync.registry import Registry
from registry_fixtures import commit_generation, read_cache_file

ROOT = Path(__file__).resolve().parent.parent
NO_SLEEP = lambda _s: None  # noqa: E731 (injected sleep: retries take no time)


@pytest.fixture
def nodes(make_node, registry, unique_prefix):
    settings = registry.settings(prefix=unique_prefix)
    return make_node("a", registry=settings), make_node("b", registry=settings)


def reg_of(node) -> Registry:
    return Registry(node.settings.registry, sleep=NO_SLEEP)


def tag_digests(reg: Registry, ref: CacheRef) -> dict[str, str]:
    repo = reg.repository(ref.namespace, ref.name)
    return {t: reg.manifest_digest(repo, t) for t in sorted(reg.list_tags(repo))}


def test_file_written_on_a_is_seen_on_b_and_b_fetches_only_the_new_layer(nodes):
    a, b = nodes
    ref = CacheRef("team", "gradle")
    big = os.urandom(3 * 1024 * 1024)
    e1 = commit_generation(a, ref, {"deps/big.bin": big})
    r1 = sync.run_once(a, sleep=NO_SLEEP)
    assert r1.ok, r1.summary()
    assert [p.tag for p in r1.published] == [e1.tag] and a.journal.pending() == []

    pull.refresh_for_setup(b, ref)
    assert read_cache_file(b, ref.local_image(e1.tag), "deps/big.bin") == big

    e2 = commit_generation(a, ref, {"out/small.txt": b"second build\n"})
    r2 = sync.run_once(a, sleep=NO_SLEEP)
    assert r2.ok, r2.summary()
    # only the new layer and the config went up; layer 1 was already there
    assert (r2.published[0].pushed, r2.published[0].present) == (2, 1)

    reg = reg_of(a)
    raw, digest, _ = reg.get_manifest(reg.repository("team", "gradle"), e2.tag)
    manifest = parse_manifest(raw, digest)
    assert manifest.generation_tag == e2.tag
    assert [x.media_type for x in manifest.layers] == [LAYER_ZSTD, LAYER_ZSTD]
    w = pull.warm(b, ref)
    assert w.ok, w.summary()
    assert (w.fetched_layers, w.reused_layers) == (1, 1)
    assert w.bytes == manifest.layers[1].size < manifest.layers[0].size
    assert read_cache_file(b, ref.local_image(e2.tag), "out/small.txt") == b"second build\n"
    assert read_cache_file(b, ref.local_image(e2.tag), "deps/big.bin") == big
    assert pull.warm(b, ref).summary().endswith("already on this node")


def test_latest_never_moves_back_and_tags_come_in_generation_order(nodes):
    a, b = nodes
    ref = CacheRef("team", "npm")
    commit_generation(b, ref, {"x": b"from b"}, number=5)
    assert sync.run_once(b, sleep=NO_SLEEP).ok
    old = commit_generation(a, ref, {"x": b"from a, older"}, number=3)
    result = sync.run_once(a, sleep=NO_SLEEP)
    assert result.ok and not result.published[0].latest_moved
    reg = reg_of(a)
    tags = tag_digests(reg, ref)
    assert tags["latest"] == tags["g00000005-b"] != tags[old.tag]
    assert pull.remote_newest(a, ref) == Generation(5, "b")


def test_cross_repository_mount_of_a_shared_layer(nodes):
    a, _ = nodes
    base, other = CacheRef("team", "base"), CacheRef("team", "derived")
    e = commit_generation(a, base, {"shared.bin": os.urandom(256 * 1024)})
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    # a cache whose first layer is the other cache's layer
    a.buildah.tag(base.local_image(e.tag), other.local_image("g00000001-a"))
    commit_generation(a, other, {"own.txt": b"derived"})
    a.buildah.rmi(other.local_image("g00000001-a"))
    result = sync.run_once(a, sleep=NO_SLEEP)
    assert result.ok, result.summary()
    assert result.published[0].mounted == 1


def test_registry_down_during_commits_then_up_publishes_all(make_node, own_registry):
    a = make_node("a", registry=own_registry.settings(prefix="down"))
    ref = CacheRef("ci", "maven")
    own_registry.stop()
    entries = [commit_generation(a, ref, {f"f{i}": b"x" * i}) for i in range(1, 4)]
    down = sync.run_once(a, sleep=NO_SLEEP)
    assert not down.ok and down.pending == 3 and len(a.journal.pending()) == 3
    assert "unreachable" in down.summary()
    own_registry.start()
    up = sync.run_once(a, sleep=NO_SLEEP)
    assert up.ok, up.summary()
    assert [p.tag for p in up.published] == [e.tag for e in entries]
    assert a.journal.pending() == []
    tags = tag_digests(reg_of(a), ref)
    assert set(tags) == {e.tag for e in entries} | {"latest"}
    assert tags["latest"] == tags[entries[-1].tag]


def test_retention_keeps_the_last_generations(make_node, registry, unique_prefix):
    a = make_node("a", registry=registry.settings(prefix=unique_prefix, keep_generations=2))
    ref = CacheRef("ci", "ccache")
    entries = [commit_generation(a, ref, {f"f{i}": b"y" * i}) for i in range(1, 5)]
    result = sync.run_once(a, sleep=NO_SLEEP)
    assert result.ok and result.pruned == 2, result.summary()
    assert set(tag_digests(reg_of(a), ref)) == {entries[2].tag, entries[3].tag, "latest"}


def test_gzip_compression_option(make_node, registry, unique_prefix):
    a = make_node("a", registry=registry.settings(prefix=unique_prefix, compression="gzip"))
    ref = CacheRef("ci", "gz")
    e = commit_generation(a, ref, {"f": b"gzip please"})
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    reg = reg_of(a)
    raw, digest, _ = reg.get_manifest(reg.repository("ci", "gz"), e.tag)
    assert [x.media_type for x in parse_manifest(raw, digest).layers] == [LAYER_GZIP]


def test_skopeo_inspect_and_buildah_pull_read_the_pushed_image(nodes, make_node):
    a, _ = nodes
    ref = CacheRef("team", "readable")
    e = commit_generation(a, ref, {"hello.txt": b"hello registry\n"})
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    s = a.settings.registry
    remote = f"{s.host}/{s.prefix}/team/readable"
    p = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{remote}:latest"],
                       capture_output=True, text=True, check=True)
    info = json.loads(p.stdout)
    reg = reg_of(a)
    assert info["Digest"] == tag_digests(reg, ref)[e.tag]
    assert len(info["Layers"]) == 1
    c = make_node("c")
    c.buildah.pull(f"{remote}:{e.tag}", tls_verify=False)
    assert read_cache_file(c, f"{remote}:{e.tag}", "hello.txt") == b"hello registry\n"
    raw, digest, _ = reg.get_manifest(reg.repository("team", "readable"), "latest")
    assert parse_manifest(raw, digest).annotations[ANNOTATION_GENERATION] == e.tag


def test_kill_9_mid_push_then_restart_publishes_everything_once(make_node, own_registry):
    settings = own_registry.settings(prefix="kill")
    a = make_node("a", registry=settings)
    ref = CacheRef("ci", "huge")
    entries = [commit_generation(a, ref, {"small": b"1"}),
               commit_generation(a, ref, {"big.bin": os.urandom(160 * 1024 * 1024)}),
               commit_generation(a, ref, {"after": b"3"})]
    env = {**os.environ, "CACHESYNC_ROOT": str(a.state.root), "CACHESYNC_NODE_ID": "a",
           "CACHESYNC_REGISTRY": f"{settings.host}/{settings.prefix}",
           "CACHESYNC_INSECURE": "true"}
    argv = [sys.executable, "-m", "cachesync.cli", "sync", "--once"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    uploads = own_registry.storage / "docker/registry/v2/repositories/kill/ci/huge/_uploads"
    killed_mid_upload = False
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(f.stat().st_size > 16 * 1024 * 1024 for f in uploads.glob("*/data")):
            proc.send_signal(signal.SIGKILL)
            killed_mid_upload = True
            break
        time.sleep(0.02)
    proc.wait()
    assert killed_mid_upload, proc.stdout.read().decode()[-2000:]
    assert len(a.journal.pending()) == 2  # the first was published, the big one was not
    again = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert a.journal.pending() == []
    reg = reg_of(a)
    tags = tag_digests(reg, ref)
    assert set(tags) == {e.tag for e in entries} | {"latest"}
    assert tags["latest"] == tags[entries[-1].tag]
    repo = reg.repository("ci", "huge")
    raw, digest, _ = reg.get_manifest(repo, entries[1].tag)
    for layer in parse_manifest(raw, digest).layers:
        assert reg.blob_exists(repo, layer.digest)
    # a third run has nothing to do
    third = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert third.returncode == 0 and "published 0 commit(s)" in third.stdout


def test_wrong_password_is_a_one_line_error_without_the_password(make_node, auth_registry):
    from registry_fixtures import AUTH_PASSWORD

    good = auth_registry.settings(prefix="auth")
    a = make_node("a", registry=good)
    ref = CacheRef("ci", "secure")
    e = commit_generation(a, ref, {"f": b"auth"})
    env = {**os.environ, "CACHESYNC_ROOT": str(a.state.root), "CACHESYNC_NODE_ID": "a",
           "CACHESYNC_REGISTRY": f"{good.host}/auth", "CACHESYNC_INSECURE": "true",
           "CACHESYNC_REGISTRY_USERNAME": good.username,
           "CACHESYNC_REGISTRY_PASSWORD": "not-the-" + AUTH_PASSWORD}
    argv = [sys.executable, "-m", "cachesync.cli", "sync", "--once"]
    bad = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    out = bad.stdout + bad.stderr
    assert AUTH_PASSWORD not in out
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "refused the credentials" in failed[0]
    assert len(a.journal.pending()) == 1
    warm = subprocess.run([sys.executable, "-m", "cachesync.cli", "warm", "ci/secure"],
                          env=env, capture_output=True, text=True)
    assert warm.returncode == 1 and AUTH_PASSWORD not in warm.stdout + warm.stderr
    assert "refused the credentials" in warm.stdout
    env["CACHESYNC_REGISTRY_PASSWORD"] = AUTH_PASSWORD
    ok = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert AUTH_PASSWORD not in ok.stdout + ok.stderr
    assert e.tag in tag_digests(Registry(good, sleep=NO_SLEEP), ref)


def test_daemon_publishes_serves_metrics_and_stops_on_sigterm(make_node, registry,
                                                            unique_prefix, tmp_path):
    from registry_fixtures import free_port

    settings = registry.settings(prefix=unique_prefix)
    a = make_node("a", registry=settings)
    ref = CacheRef("ci", "daemon")
    e = commit_generation(a, ref, {"f": b"daemon"})
    port = free_port()
    env = {**os.environ, "CACHESYNC_ROOT": str(a.state.root), "CACHESYNC_NODE_ID": "a",
           "CACHESYNC_REGISTRY": f"{settings.host}/{settings.prefix}",
           "CACHESYNC_INSECURE": "true", "CACHESYNC_LOG_FORMAT": "json"}
    proc = subprocess.Popen([sys.executable, "-m", "cachesync.cli", "sync", "--interval", "0.2",
                             "--metrics-address", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=2).read().decode()
                if ("cachesync_commits_published_total 1.0" in text
                        and "cachesync_pushes_pending 0.0" in text):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert "cachesync_commits_published_total 1.0" in text
        assert "cachesync_bytes_pushed_total" in text and "cachesync_pushes_pending 0.0" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    events = [json.loads(line).get("event") for line in err.splitlines() if line.startswith("{")]
    assert "published" in events and events[-1] == "stop"
    assert e.tag in tag_digests(reg_of(a), ref)


# --- end to end through the CLI: real volumes (cachesync helper setup/teardown) ---------------

def cli(root: Path, settings, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "CACHESYNC_ROOT": str(root), "CACHESYNC_NODE_ID": root.name,
            "CACHESYNC_REGISTRY": f"{settings.host}/{settings.prefix}",
            "CACHESYNC_INSECURE": "true", **env}
    return subprocess.run([sys.executable, "-m", "cachesync.cli", *args], env=full,
                          capture_output=True, text=True, timeout=300)


def volume_env(vol_dir: Path, name: str, cache: str, write: bool, result: str = "unknown"):
    return {"VOL_DIR": str(vol_dir), "VOL_NAME": name, "VOL_MODE": "Filesystem",
            "PVC_NAMESPACE": "team", "PVC_NAME": cache, "CACHE_WRITE": str(write).lower(),
            "JOB_RESULT": result}


def job(root: Path, settings, vol_dir: Path, cache: str, write: bool, result: str,
        files: dict[str, bytes]) -> dict[str, bytes]:
    """One job: setup, read what is there, write ``files``, teardown. Returns what it saw."""
    env = volume_env(vol_dir, f"v-{vol_dir.name}", cache, write, result)
    up = cli(root, settings, "helper", "setup", **env)
    assert up.returncode == 0, up.stderr
    seen = {str(p.relative_to(vol_dir)): p.read_bytes() for p in vol_dir.rglob("*")
            if p.is_file()}
    for rel, data in files.items():
        (vol_dir / rel).write_bytes(data)
    down = cli(root, settings, "helper", "teardown", **env)
    assert down.returncode == 0, down.stderr
    return seen


def test_cli_file_written_through_a_volume_on_a_is_seen_on_b(make_node, registry,
                                                             unique_prefix, tmp_path):
    settings = registry.settings(prefix=unique_prefix)
    a, b = make_node("a", registry=settings), make_node("b", registry=settings)
    job(a.state.root, settings, tmp_path / "va1", "pip", True, "succeeded",
        {"wheel.whl": b"built on a"})
    pushed = cli(a.state.root, settings, "sync", "--once")
    assert pushed.returncode == 0 and "published 1 commit(s)" in pushed.stdout, pushed.stderr
    seen = job(b.state.root, settings, tmp_path / "vb1", "pip", True, "succeeded",
               {"second.txt": b"from b"})
    assert seen == {"wheel.whl": b"built on a"}
    assert cli(b.state.root, settings, "sync", "--once").returncode == 0
    # and back: a sees b's commit on top of its own
    seen = job(a.state.root, settings, tmp_path / "va2", "pip", False, "succeeded", {})
    assert seen == {"wheel.whl": b"built on a", "second.txt": b"from b"}
    status = cli(b.state.root, settings, "status", "--json")
    assert status.returncode == 0, status.stderr
    caches = {f"{c['namespace']}/{c['name']}": c for c in json.loads(status.stdout)["caches"]}
    assert caches["team/pip"]["generation"] == caches["team/pip"]["remote_generation"] \
        == "g00000002-b"


def test_cli_read_only_and_failed_jobs_never_change_the_registry(make_node, registry,
                                                                unique_prefix, tmp_path):
    settings = registry.settings(prefix=unique_prefix)
    a = make_node("a", registry=settings)
    job(a.state.root, settings, tmp_path / "v1", "go", True, "succeeded", {"mod": b"v1"})
    assert cli(a.state.root, settings, "sync", "--once").returncode == 0
    ref = CacheRef("team", "go")
    before = tag_digests(reg_of(a), ref)
    job(a.state.root, settings, tmp_path / "v2", "go", False, "succeeded", {"ro": b"lost"})
    job(a.state.root, settings, tmp_path / "v3", "go", True, "failed", {"failed": b"lost"})
    again = cli(a.state.root, settings, "sync", "--once")
    assert again.returncode == 0 and "published 0 commit(s)" in again.stdout
    assert tag_digests(reg_of(a), ref) == before and set(before) == {"g00000001-a", "latest"}


def test_lost_compressed_blob_is_made_again_from_storage(make_node, registry, unique_prefix):
    from cachesync.oci import BlobStore

    settings = registry.settings(prefix=unique_prefix)
    a = make_node("a", registry=settings)
    ref = CacheRef("ci", "rebuild")
    commit_generation(a, ref, {"one": os.urandom(100_000)})
    e2 = commit_generation(a, ref, {"two": b"2" * 5000})
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    reg = reg_of(a)
    raw, digest, _ = reg.get_manifest(reg.repository("ci", "rebuild"), e2.tag)
    lost = parse_manifest(raw, digest).layers[1]
    BlobStore(a.state.blobs).blob_path(lost.digest).unlink()  # e.g. a disk clean-up
    e3 = commit_generation(a, ref, {"three": b"3"})
    result = sync.run_once(a, sleep=NO_SLEEP)
    assert result.ok, result.summary()
    b = make_node("b", registry=settings)
    assert pull.warm(b, ref).ok
    assert read_cache_file(b, ref.local_image(e3.tag), "two") == b"2" * 5000
    assert read_cache_file(b, ref.local_image(e3.tag), "three") == b"3"


def test_crash_after_the_tags_before_the_journal_drop_publishes_nothing_twice(nodes):
    a, _ = nodes
    ref = CacheRef("team", "twice")
    e = commit_generation(a, ref, {"f": os.urandom(50_000)})
    first = sync.run_once(a, sleep=NO_SLEEP)
    assert first.ok and first.published[0].pushed == 2
    before = tag_digests(reg_of(a), ref)
    a.journal.add(e)  # as if the process died between the tags and the drop
    again = sync.run_once(a, sleep=NO_SLEEP)
    assert again.ok and a.journal.pending() == []
    p = again.published[0]
    assert (p.pushed, p.present, p.bytes_sent, p.digest) == (0, 2, 0, first.published[0].digest)
    assert tag_digests(reg_of(a), ref) == before


def test_cli_warm_pulls_only_what_is_missing(nodes):
    a, b = nodes
    ref = CacheRef("team", "warmed")
    commit_generation(a, ref, {"f": os.urandom(200_000)})
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    s = b.settings.registry
    env = {**os.environ, "CACHESYNC_ROOT": str(b.state.root), "CACHESYNC_NODE_ID": "b",
           "CACHESYNC_REGISTRY": f"{s.host}/{s.prefix}", "CACHESYNC_INSECURE": "true"}
    argv = [sys.executable, "-m", "cachesync.cli", "warm", "team/warmed"]
    first = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "g00000001-a pulled: 1 layer(s) fetched" in first.stdout
    second = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert second.returncode == 0 and "already on this node" in second.stdout
    bad = subprocess.run([*argv[:-1], "Bad/Name"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid namespace" in bad.stderr


# --- latest converges under concurrent writers --------------------------------------------------

def test_latest_converges_after_an_older_node_wrote_it_last(nodes, caplog):
    a, b = nodes
    ref = CacheRef("team", "race")
    commit_generation(b, ref, {"x": b"from b"}, number=7)
    assert sync.run_once(b, sleep=NO_SLEEP).ok
    older = commit_generation(a, ref, {"x": b"from a"}, number=6)
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    reg = reg_of(a)
    repo = reg.repository(ref.namespace, ref.name)
    # a's stale write: it read latest (g5) before b wrote g7, and wrote g6 after
    raw6, digest6, media_type = reg.get_manifest(repo, older.tag)
    reg.put_manifest(repo, raw6, media_type, "latest")
    assert tag_digests(reg, ref)["latest"] == digest6
    # a's next publish moves latest to g7-a (newer than g6), then finds g7-b and repairs
    mine = commit_generation(a, ref, {"y": b"a again"})
    assert mine.generation == Generation(7, "a")
    with caplog.at_level("INFO", logger="cachesync.sync"):
        result = sync.run_once(a, sleep=NO_SLEEP)
    assert result.ok and not result.published[0].latest_moved, result.summary()
    tags = tag_digests(reg, ref)
    assert tags["latest"] == tags["g00000007-b"] != tags[mine.tag]
    assert reg.get_manifest(repo, "latest")[0] == reg.get_manifest(repo, "g00000007-b")[0]
    repairs = [r for r in caplog.records if getattr(r, "event", None) == "latest-repaired"]
    assert [(r.cache, r.generation, r.digest) for r in repairs] == [
        (str(ref), "g00000007-b", tags["g00000007-b"])]


def test_converge_latest_repairs_a_stale_latest_once(nodes):
    a, b = nodes
    ref = CacheRef("team", "converge")
    old = commit_generation(a, ref, {"x": b"a"}, number=1)
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    commit_generation(b, ref, {"x": b"b"}, number=2)
    assert sync.run_once(b, sleep=NO_SLEEP).ok
    reg = reg_of(a)
    repo = reg.repository(ref.namespace, ref.name)
    raw, _, media_type = reg.get_manifest(repo, old.tag)
    reg.put_manifest(repo, raw, media_type, "latest")  # the stale write
    assert sync.converge_latest(reg, repo, str(ref)) == Generation(2, "b")
    tags = tag_digests(reg, ref)
    assert tags["latest"] == tags["g00000002-b"] != tags[old.tag]
    assert sync.converge_latest(reg, repo, str(ref)) is None  # right now: nothing to do


# --- kill -9 at several moments -------------------------------------------------------------------

AFTER_MANIFEST = "after-manifest"


def sync_env(node, settings) -> dict[str, str]:
    return {**os.environ, "CACHESYNC_ROOT": str(node.state.root),
            "CACHESYNC_NODE_ID": node.node_id,
            "CACHESYNC_REGISTRY": f"{settings.host}/{settings.prefix}",
            "CACHESYNC_INSECURE": "true"}


def manifest_revisions(registry, repo: str) -> list[Path]:
    """Every manifest the registry stores for ``repo`` (one per distinct digest ever put)."""
    revisions = (registry.storage / "docker/registry/v2/repositories" / repo
                 / "_manifests/revisions/sha256")
    return list(revisions.iterdir()) if revisions.exists() else []


def half_written(store) -> list[str]:
    """Files of the node's blob store that are not whole: scratch left by a killed pass, or a
    blob that does not hash to its name (export placeholders, without blocks, are whole)."""
    from cachesync.oci import file_digest

    bad = [str(p) for p in store.root.glob(".compress-*")]
    for layout in (store.layout, store.export):
        bad += [str(p) for p in layout.iterdir() if p.name not in ("blobs", "index.json",
                                                                    "oci-layout")]
        for path in (layout / "blobs" / "sha256").iterdir():
            if layout == store.export and path.stat().st_blocks == 0:
                continue
            if len(path.name) != 64 or file_digest(path) != "sha256:" + path.name:
                bad.append(str(path))
    return bad


def test_scratch_of_a_killed_pass_is_swept_by_the_next(make_node, registry, unique_prefix):
    from cachesync.oci import BlobStore

    a = make_node("a", registry=registry.settings(prefix=unique_prefix))
    store = BlobStore(a.state.blobs).ensure()
    (store.root / ".compress-x1y2" / "out").mkdir(parents=True)
    (store.root / ".compress-x1y2" / "out" / "oci-put-blob1").write_bytes(b"half")
    (store.export / "oci-put-blob2").write_bytes(b"half an export")
    (store.layout / "oci-put-blob3").write_bytes(b"half a first push")
    assert len(half_written(store)) == 3
    commit_generation(a, CacheRef("ci", "swept"), {"f": b"1"})
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    assert half_written(store) == []
    assert store.blobs()  # the pass's own blobs are whole and kept


@pytest.mark.parametrize("moment", [0.05, 0.3, 0.7, 1.0, 1.5, AFTER_MANIFEST])
def test_kill_9_at_any_moment_then_restart_publishes_each_commit_once(
        make_node, registry, unique_prefix, tmp_path, moment):
    from cachesync.oci import BlobStore

    settings = registry.settings(prefix=unique_prefix)
    a = make_node("a", registry=settings)
    ref = CacheRef("ci", "killed")
    entries = [commit_generation(a, ref, {"small": b"1"}),
               commit_generation(a, ref, {"big.bin": os.urandom(96 * 1024 * 1024)}),
               commit_generation(a, ref, {"after": b"3"})]
    reg = reg_of(a)
    repo = reg.repository(ref.namespace, ref.name)
    argv = [sys.executable, "-m", "cachesync.cli", "sync", "--once"]
    # its own session: the kill takes skopeo children along, as a dying pod would
    proc = subprocess.Popen(argv, env=sync_env(a, settings), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if moment == AFTER_MANIFEST:  # the big commit's manifest is in (the first one's was)
            deadline = time.monotonic() + 60
            while (len(manifest_revisions(registry, repo)) < 2 and proc.poll() is None
                   and time.monotonic() < deadline):
                time.sleep(0.005)
        else:
            time.sleep(moment)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it had finished: the restart has nothing to do, the same asserts hold
        proc.wait()
    again = subprocess.run(argv, env=sync_env(a, settings), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert a.journal.pending() == []
    tags = tag_digests(reg, ref)
    assert set(tags) == {e.tag for e in entries} | {"latest"}
    assert tags["latest"] == tags[entries[-1].tag]
    # exactly once: one stored manifest per commit, none rebuilt with other bytes
    assert len(manifest_revisions(registry, repo)) == len(entries)
    blobs = {}
    for e in entries:
        raw, digest, _ = reg.get_manifest(repo, e.tag)
        manifest = parse_manifest(raw, digest)
        assert manifest.generation_tag == e.tag
        blobs.update({d.digest: d.size for d in (manifest.config, *manifest.layers)})
    for digest, size in blobs.items():  # pull_blob verifies the digest of what it reads
        assert reg.pull_blob(repo, digest, tmp_path / "check" / digest) == size
    assert half_written(BlobStore(a.state.blobs)) == []
