"""The ``cachesync`` command as a helper Pod runs it: environment in, one line out, exit code."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from cachesync import mounts, settings as settings_mod, store
from cachesync.names import CacheRef
from cachesync.node import Node

CLI = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "cachesync"


@pytest.fixture
def cli(tmp_path, requires_root):
    root = tmp_path / "node"

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        full = {"PATH": os.environ["PATH"], "CACHESYNC_ROOT": str(root),
                "CACHESYNC_NODE_ID": "cli", **env}
        return subprocess.run([str(CLI), *args], env=full, capture_output=True, text=True,
                              timeout=120)

    run.root = root
    return run


@pytest.fixture
def helper_env(tmp_path):
    return {"VOL_DIR": str(tmp_path / "vols" / "pvc-1"), "VOL_NAME": "pvc-1",
            "VOL_MODE": "Filesystem", "VOL_SIZE_BYTES": "1073741824", "PVC_NAMESPACE": "ci",
            "PVC_NAME": "build-cache", "CACHE_NAME": "maven", "CACHE_WRITE": "true"}


def node_of(cli) -> Node:
    return Node.open(settings_mod.Settings(root=cli.root, node_id="cli"))


def test_setup_write_teardown_commit(cli, helper_env, tmp_path):
    p = cli("helper", "setup", **helper_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == (f"volume pvc-1: ready at {helper_env['VOL_DIR']} from "
                                "ci/maven@empty (writable)")
    vol_dir = Path(helper_env["VOL_DIR"])
    assert mounts.is_mountpoint(vol_dir)
    (vol_dir / "dep.jar").write_text("jar")
    p = cli("helper", "setup", **helper_env)
    assert p.returncode == 0 and "already set up" in p.stdout
    # teardown needs VOL_NAME (and VOL_DIR) only: the rest comes from the record
    p = cli("helper", "teardown", VOL_NAME="pvc-1", VOL_DIR=str(vol_dir),
            JOB_RESULT="succeeded")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "volume pvc-1: committed ci/maven@g00000001-cli; removed"
    assert not vol_dir.exists()
    p = cli("helper", "teardown", VOL_NAME="pvc-1", JOB_RESULT="succeeded")
    assert p.returncode == 0 and p.stdout.strip() == "volume pvc-1: nothing to tear down"
    node = node_of(cli)
    assert [g.tag for g, _ in store.local_generations(node, CacheRef("ci", "maven"))] == [
        "g00000001-cli"]


def test_flags_win_over_environment(cli, helper_env, tmp_path):
    vol_dir = tmp_path / "vols" / "by-flag"
    p = cli("helper", "setup", "--vol-dir", str(vol_dir), "--cache-name", "npm", **helper_env)
    assert p.returncode == 0, p.stderr
    assert f"at {vol_dir} from ci/npm@empty" in p.stdout
    assert not Path(helper_env["VOL_DIR"]).exists()
    p = cli("helper", "teardown", "--vol-name", "pvc-1", "--job-result", "failed")
    assert p.returncode == 0 and "not committed (job failed" in p.stdout


@pytest.mark.parametrize("change,message", [
    ({"PVC_NAMESPACE": "Not_A_Label"}, "invalid namespace 'Not_A_Label'"),
    ({"CACHE_NAME": "../../etc"}, "invalid cache name '../../etc'"),
    ({"CACHE_NAME": "UPPER"}, "invalid cache name"),
    ({"VOL_NAME": "a/b"}, "invalid VOL_NAME"),
    ({"VOL_DIR": None}, "missing VOL_DIR (or --vol-dir)"),
    ({"VOL_NAME": None}, "missing VOL_NAME"),
    ({"PVC_NAMESPACE": None}, "missing PVC_NAMESPACE"),
    ({"VOL_DIR": "relative/path"}, "must be an absolute path"),
    ({"VOL_MODE": "Block"}, "Filesystem only"),
    ({"CACHE_WRITE": "maybe"}, "CACHE_WRITE"),
    ({"VOL_SIZE_BYTES": "lots"}, "VOL_SIZE_BYTES"),
])
def test_bad_setup_input_is_one_line_and_touches_nothing(cli, helper_env, change, message):
    env = {k: v for k, v in {**helper_env, **change}.items() if v is not None}
    p = cli("helper", "setup", **env)
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("cachesync: error: ")
    assert message in p.stderr
    assert not Path(helper_env["VOL_DIR"]).exists()
    assert not Path(helper_env["VOL_DIR"]).parent.exists()
    assert not cli.root.exists()  # input is checked before the node root is even created


@pytest.mark.parametrize("env,message", [
    ({}, "missing VOL_NAME"),
    ({"VOL_NAME": "pvc-1", "JOB_RESULT": "exploded"}, "invalid JOB_RESULT 'exploded'"),
])
def test_bad_teardown_input(cli, env, message):
    p = cli("helper", "teardown", **env)
    assert p.returncode == 2 and message in p.stderr and p.stderr.count("\n") == 1


def test_bad_teardown_input_leaves_the_volume_alone(cli, helper_env):
    assert cli("helper", "setup", **helper_env).returncode == 0
    p = cli("helper", "teardown", **{**helper_env, "JOB_RESULT": "nope"})
    assert p.returncode == 2
    assert mounts.is_mountpoint(helper_env["VOL_DIR"])
    assert cli("helper", "teardown", VOL_NAME="pvc-1").returncode == 0
    assert not Path(helper_env["VOL_DIR"]).exists()


def test_a_volume_error_is_exit_1(cli, helper_env):
    Path(helper_env["VOL_DIR"]).mkdir(parents=True)
    (Path(helper_env["VOL_DIR"]) / "precious").write_text("x")
    p = cli("helper", "setup", **helper_env)
    assert p.returncode == 1 and "not an empty directory" in p.stderr
    assert p.stderr.count("\n") == 1
    assert (Path(helper_env["VOL_DIR"]) / "precious").read_text() == "x"


def test_bad_setting_is_a_usage_error(cli, helper_env):
    p = cli("helper", "setup", CACHESYNC_COMMIT_ON="sometimes", **helper_env)
    assert p.returncode == 2 and "commit-on" in p.stderr
    assert not Path(helper_env["VOL_DIR"]).exists()


def test_status_and_gc(cli, helper_env):
    assert cli("helper", "setup", **helper_env).returncode == 0
    (Path(helper_env["VOL_DIR"]) / "f").write_text("1")
    assert cli("helper", "teardown", VOL_NAME="pvc-1", JOB_RESULT="succeeded").returncode == 0
    assert cli("helper", "setup", **{**helper_env, "VOL_NAME": "pvc-2",
                                     "VOL_DIR": helper_env["VOL_DIR"] + "-2"}).returncode == 0
    p = cli("status", "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    [cache] = report["caches"]
    assert (cache["namespace"], cache["name"], cache["generation"], cache["layers"],
            cache["volumes"], cache["pending"]) == ("ci", "maven", "g00000001-cli", 1, 1,
                                                    ["g00000001-cli"])
    assert [v["vol_name"] for v in report["volumes"]] == ["pvc-2"]
    p = cli("status")
    assert p.returncode == 0 and "ci/maven" in p.stdout and "pvc-2" in p.stdout
    p = cli("gc", "--dry-run")
    assert p.returncode == 0 and p.stdout.startswith("gc: would remove 0 generation(s)")
    assert cli("helper", "teardown", VOL_NAME="pvc-2").returncode == 0
    p = cli("gc")
    assert p.returncode == 0 and p.stdout.startswith("gc: removed 0 generation(s)")


def _hanging_buildah(tmp_path: Path, verb: str) -> tuple[Path, Path]:
    """A `buildah` first on PATH that hangs (after saying so) when asked to ``verb``."""
    bindir, marker = tmp_path / f"hang-{verb}", tmp_path / f"hanging-{verb}"
    bindir.mkdir()
    real = subprocess.run(["sh", "-c", "command -v buildah"], capture_output=True,
                          text=True).stdout.strip()
    (bindir / "buildah").write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do [ "$a" = {verb} ] && {{ touch {marker}; exec sleep 60; }}; done\n'
        f'exec {real} "$@"\n')
    (bindir / "buildah").chmod(0o755)
    return bindir, marker


def _kill_when_hanging(cli, tmp_path, verb: str, *args: str, **env: str) -> None:
    """Run the CLI, and SIGKILL it (and its buildah) once it reaches ``verb``."""
    import signal
    import time

    bindir, marker = _hanging_buildah(tmp_path, verb)
    full = {"PATH": f"{bindir}:{os.environ['PATH']}", "CACHESYNC_ROOT": str(cli.root),
            "CACHESYNC_NODE_ID": "cli", **env}
    p = subprocess.Popen([str(CLI), *args], env=full, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert p.poll() is None and time.monotonic() < deadline, "never reached " + verb
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def test_setup_killed_half_way_is_finished_by_teardown(cli, helper_env, tmp_path):
    _kill_when_hanging(cli, tmp_path, "mount", "helper", "setup", **helper_env)
    node = node_of(cli)
    assert [c.name for c in node.buildah.containers()] == ["cachesync-pvc-1"]  # a leftover
    p = cli("helper", "teardown", VOL_NAME="pvc-1", JOB_RESULT="succeeded")
    assert p.returncode == 0 and "setup never finished" in p.stdout, p.stderr
    assert node.buildah.containers() == [] and list((cli.root / "volumes").iterdir()) == []
    assert not Path(helper_env["VOL_DIR"]).exists()


def test_setup_killed_half_way_then_setup_again(cli, helper_env, tmp_path):
    _kill_when_hanging(cli, tmp_path, "mount", "helper", "setup", **helper_env)
    p = cli("helper", "setup", **helper_env)
    assert p.returncode == 0 and "ready" in p.stdout, p.stderr
    assert [c.name for c in node_of(cli).buildah.containers()] == ["cachesync-pvc-1"]
    assert cli("helper", "teardown", VOL_NAME="pvc-1").returncode == 0
    assert node_of(cli).buildah.containers() == []


def test_teardown_killed_during_commit_commits_once(cli, helper_env, tmp_path):
    assert cli("helper", "setup", **helper_env).returncode == 0
    (Path(helper_env["VOL_DIR"]) / "out").write_text("built")
    _kill_when_hanging(cli, tmp_path, "commit", "helper", "teardown", VOL_NAME="pvc-1",
                       JOB_RESULT="succeeded")
    assert not mounts.is_mountpoint(helper_env["VOL_DIR"])   # it got as far as unmounting
    p = cli("helper", "teardown", VOL_NAME="pvc-1", JOB_RESULT="succeeded")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "volume pvc-1: committed ci/maven@g00000001-cli; removed"
    node = node_of(cli)
    assert [g.tag for g, _ in store.local_generations(node, CacheRef("ci", "maven"))] == [
        "g00000001-cli"]
    assert [e.tag for e in node.journal.pending()] == ["g00000001-cli"]
    assert node.buildah.containers() == []


def test_gc_finishes_a_killed_setup(cli, helper_env, tmp_path):
    _kill_when_hanging(cli, tmp_path, "mount", "helper", "setup", **helper_env)
    p = cli("gc")
    assert p.returncode == 0 and "1 volume record(s)" in p.stdout, p.stdout
    assert node_of(cli).buildah.containers() == []
    assert list((cli.root / "volumes").iterdir()) == []
