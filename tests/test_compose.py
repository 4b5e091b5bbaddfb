"""docker-compose.yml brought up with Docker on images built here: the registry and a cachesync
node in containers, and one round trip between the node in Compose and a node on this host."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cachesync import pull, sync
from cachesync.names import CacheRef
from cachesync.settings import RegistrySettings
from registry_fixtures import commit_generation, free_port, read_cache_file

pytestmark = [pytest.mark.docker, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
REF = CacheRef("team", "compose")


@pytest.fixture
def compose(debian_base_image):
    project = f"cstest{secrets.token_hex(3)}"
    env = {**os.environ, "CACHESYNC_REGISTRY_PORT": str(free_port()),
           "CACHESYNC_METRICS_PORT": str(free_port())}
    base = ["docker-compose", "-p", project, "-f", str(ROOT / "docker-compose.yml")]

    def run(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        p = subprocess.run([*base, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            pytest.fail(f"docker-compose {' '.join(args)}: {p.stderr[-3000:]}")
        return p

    built = subprocess.run(["bash", str(ROOT / "registry-config" / "build-images.sh"), "-p",
                            project], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if built.returncode != 0:
        pytest.fail(f"building the compose images failed: {built.stderr[-3000:]}")
    run("up", "-d", timeout=300)
    run.port = int(env["CACHESYNC_REGISTRY_PORT"])  # type: ignore[attr-defined] (test helper)
    run.metrics_port = int(env["CACHESYNC_METRICS_PORT"])  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        logs = run("logs", "--no-color", "--tail", "50", check=False).stdout
        run("down", "-v", "--remove-orphans", check=False)
        print(logs[-4000:])


def wait_for(url: str, expect: str | None = None, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        try:
            last = urllib.request.urlopen(url, timeout=2).read().decode()
            if expect is None or expect in last:
                return last
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer{' with ' + expect if expect else ''} in {seconds}s: "
                f"{last[-500:]}")


def in_node(compose, script: str) -> str:
    p = compose("exec", "-T", "node", "bash", "-ec", script, check=False)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p.stdout


VOLUME = ("export VOL_DIR=/tmp/vol VOL_NAME=job1 VOL_MODE=Filesystem PVC_NAMESPACE=team "
          "PVC_NAME=compose JOB_RESULT=succeeded CACHE_WRITE={write}\n")


def test_compose_registry_and_node_round_trip(compose, make_node):
    port = compose.port
    wait_for(f"http://127.0.0.1:{port}/v2/")
    # 1. a job on the node in Compose writes the cache; the node's sync daemon publishes it
    in_node(compose, VOLUME.format(write="true") + "cachesync helper setup\n"
            "echo 'written in compose' > /tmp/vol/from-compose.txt\n"
            "cachesync helper teardown\n")
    wait_for(f"http://127.0.0.1:{port}/v2/cachesync/team/compose/tags/list", "latest")
    # 2. a node on this host pulls it from the registry in Compose
    settings = RegistrySettings(host=f"127.0.0.1:{port}", prefix="cachesync", insecure=True,
                                retry_attempts=3, retry_max_wait=0.5)
    b = make_node("b", registry=settings)
    pull.refresh_for_setup(b, REF)
    newest = pull.remote_newest(b, REF)
    assert newest is not None and newest.node == "compose"
    assert read_cache_file(b, REF.local_image(newest.tag), "from-compose.txt") == \
        b"written in compose\n"
    # 3. and back: the host node commits on top and publishes; the Compose node sees both files
    commit_generation(b, REF, {"from-host.txt": b"written on the host\n"})
    assert sync.run_once(b, sleep=lambda _s: None).ok
    out = in_node(compose, VOLUME.format(write="false") + "cachesync helper setup >/dev/null\n"
                  "cat /tmp/vol/from-compose.txt /tmp/vol/from-host.txt\n"
                  "cachesync helper teardown >/dev/null\n")
    assert out.splitlines()[-2:] == ["written in compose", "written on the host"]
    metrics = wait_for(f"http://127.0.0.1:{compose.metrics_port}/metrics",
                       "cachesync_commits_published_total 1.0")
    assert "cachesync_bytes_pushed_total" in metrics
