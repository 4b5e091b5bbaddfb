"""Publishing journaled commits to a real registry (docker-registry on 127.0.0.1), and reading
them back on a second node root. Images are made straight through buildah (commit_generation)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
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
def nodes(sync_node, registry, unique_prefix):
    settings = registry.settings(prefix=unique_prefix)
    return sync_node("a", registry=settings), sync_node("b", registry=settings)


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


def test_registry_down_during_commits_then_up_publishes_all(sync_node, own_registry):
    a = sync_node("a", registry=own_registry.settings(prefix="down"))
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


def test_retention_keeps_the_last_generations(sync_node, registry, unique_prefix):
    a = sync_node("a", registry=registry.settings(prefix=unique_prefix, keep_generations=2))
    ref = CacheRef("ci", "ccache")
    entries = [commit_generation(a, ref, {f"f{i}": b"y" * i}) for i in range(1, 5)]
    result = sync.run_once(a, sleep=NO_SLEEP)
    assert result.ok and result.pruned == 2, result.summary()
    assert set(tag_digests(reg_of(a), ref)) == {entries[2].tag, entries[3].tag, "latest"}


def test_gzip_compression_option(sync_node, registry, unique_prefix):
    a = sync_node("a", registry=registry.settings(prefix=unique_prefix, compression="gzip"))
    ref = CacheRef("ci", "gz")
    e = commit_generation(a, ref, {"f": b"gzip please"})
    assert sync.run_once(a, sleep=NO_SLEEP).ok
    reg = reg_of(a)
    raw, digest, _ = reg.get_manifest(reg.repository("ci", "gz"), e.tag)
    assert [x.media_type for x in parse_manifest(raw, digest).layers] == [LAYER_GZIP]


def test_skopeo_inspect_and_buildah_pull_read_the_pushed_image(nodes, sync_node):
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
    c = sync_node("c")
    c.buildah._run("pull", "--quiet", "--tls-verify=false", f"{remote}:{e.tag}")
    assert read_cache_file(c, f"{remote}:{e.tag}", "hello.txt") == b"hello registry\n"
    raw, digest, _ = reg.get_manifest(reg.repository("team", "readable"), "latest")
    assert parse_manifest(raw, digest).annotations[ANNOTATION_GENERATION] == e.tag


def test_kill_9_mid_push_then_restart_publishes_everything_once(sync_node, own_registry):
    settings = own_registry.settings(prefix="kill")
    a = sync_node("a", registry=settings)
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


def test_wrong_password_is_a_one_line_error_without_the_password(sync_node, auth_registry):
    from registry_fixtures import AUTH_PASSWORD

    good = auth_registry.settings(prefix="auth")
    a = sync_node("a", registry=good)
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


def test_daemon_publishes_serves_metrics_and_stops_on_sigterm(sync_node, registry,
                                                            unique_prefix, tmp_path):
    from registry_fixtures import free_port

    settings = registry.settings(prefix=unique_prefix)
    a = sync_node("a", registry=settings)
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
                if "cachesync_commits_published_total 1.0" in text:
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
