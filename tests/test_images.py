"""helper/Dockerfile built with Docker on the local base image, and the helper protocol run in
containers the way Kubernetes runs it: setup in one container, the volume used from another
(the overlay mount outlives the helper, through a shared bind mount = Bidirectional
propagation), teardown in a third; read-only and failed jobs never change the cache."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "cachesync-helper:test"
WHEELS = "build/helper-wheels"
# --privileged is refused on these hosts; this is what the helper Pod's privileged amounts to
PRIVILEGED = ["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt",
              "seccomp=unconfined", "--security-opt", "apparmor=unconfined"]


def sh(*argv: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(argv[:6])}... exit {p.returncode}:\n{p.stdout[-1500:]}\n"
                    f"{p.stderr[-2500:]}")
    return p


@pytest.fixture(scope="session")
def helper_image(debian_base_image) -> str:
    """Build helper/Dockerfile (kept afterwards; Docker's layer cache makes rebuilds quick)."""
    old = sh("docker", "image", "inspect", "-f", "{{.Id}}", IMAGE, check=False).stdout.strip()
    sh("bash", str(ROOT / "helper" / "fetch-wheels.sh"), WHEELS, cwd=ROOT)
    sh("docker", "build", "-q", "--build-arg", f"WHEELS={WHEELS}", "-f", "helper/Dockerfile",
       "-t", IMAGE, ".", cwd=ROOT, timeout=600)
    new = sh("docker", "image", "inspect", "-f", "{{.Id}}", IMAGE).stdout.strip()
    if old and old != new:   # the previous build, now untagged: do not let them pile up
        subprocess.run(["docker", "rmi", old], capture_output=True)
    return IMAGE


def run(image: str, *argv: str, args: tuple[str, ...] = (), entrypoint: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    name = f"cachesync-test-{uuid.uuid4().hex[:10]}"
    cmd = ["docker", "run", "--rm", "--name", name, *args]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    try:
        return sh(*cmd, image, *argv, check=check)
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)


def test_image_runs_the_cli_and_the_tools(helper_image):
    out = run(helper_image, "--help").stdout
    assert "helper" in out and "sync" in out
    assert "buildah version" in run(helper_image, "--version", entrypoint="buildah").stdout
    assert "skopeo version" in run(helper_image, "--version", entrypoint="skopeo").stdout
    assert "--helper-image" in run(helper_image, "--help",
                                   entrypoint="cachesync-provisioner").stdout
    inspect = sh("docker", "image", "inspect", "-f", "{{json .Config.Entrypoint}} "
                 "{{json .Config.Volumes}}", helper_image).stdout
    assert '["cachesync"]' in inspect and "/var/lib/cachesync" in inspect


def test_helper_pod_spec_command_runs_in_the_image(helper_image):
    """The command the provisioner puts in helper Pods exists in the image."""
    from provisioner.config import Settings
    from provisioner.helper import helper_pod
    from provisioner.volume import VolumeRecord

    rec = VolumeRecord("pvc-1", "n", "n", "/var/lib/cachesync/pv/pvc-1", "ci", "c", "u", "ci",
                       "gradle", True, 1, "1Gi", "cachesync")
    command = helper_pod(rec, "setup", Settings())["spec"]["containers"][0]["command"]
    out = run(helper_image, *command[1:], "--help", entrypoint=command[0]).stdout
    assert "VOL_DIR" in out


@pytest.fixture
def shared_root(tmp_path, requires_root):
    """A node root on a shared mount: what the kubelet gives a Bidirectional hostPath."""
    root = tmp_path / "node-root"
    root.mkdir()
    subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
    subprocess.run(["mount", "--make-rshared", str(root)], check=True)
    yield root
    subprocess.run(["umount", "-R", "-l", str(root)], capture_output=True)


def mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


class Node:
    """The node root, and helper runs on it as a helper Pod would run them."""

    def __init__(self, image: str, root: Path):
        self.image, self.root = image, root

    def helper(self, action: str, vol: str, write: bool, job_result: str = "unknown",
               check: bool = True, **overrides: str) -> subprocess.CompletedProcess:
        env = {"VOL_DIR": f"/var/lib/cachesync/pv/{vol}", "VOL_NAME": vol,
               "VOL_MODE": "Filesystem", "VOL_SIZE_BYTES": "1073741824",
               "PVC_NAMESPACE": "ci", "PVC_NAME": f"claim-{vol}", "CACHE_NAME": "gradle",
               "CACHE_WRITE": "true" if write else "false", "JOB_RESULT": job_result,
               **overrides}
        args = [*PRIVILEGED, "-v", f"{self.root}:/var/lib/cachesync:rshared"]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        return run(self.image, "helper", action, args=tuple(args), check=check)

    def build(self, vol: str, script: str) -> str:
        """A build container (uid 1000) using the volume as the kubelet would: a plain bind
        mount of the PV's hostPath, made after the helper has gone."""
        return run(self.image, "-c", script, entrypoint="sh", args=(
            "-u", "1000:1000", "-v", f"{self.root / 'pv' / vol}:/cache")).stdout


def test_setup_use_teardown_across_containers(helper_image, shared_root):
    node = Node(helper_image, shared_root)
    vol = shared_root / "pv" / "v1"

    node.helper("setup", "v1", write=True)
    assert mounted(vol), "the overlay mount must outlive the helper container"
    assert os.listdir(vol) == []
    node.build("v1", "echo built > /cache/artifact && mkdir /cache/deps && echo d > /cache/deps/a")
    out = node.helper("teardown", "v1", write=True, job_result="succeeded").stdout
    assert "committed" in out
    assert not mounted(vol) and not vol.exists()

    # a read-only volume sees the cache; its writes go nowhere
    node.helper("setup", "v2", write=False)
    assert node.build("v2", "cat /cache/artifact; echo pr > /cache/pr-was-here").strip() == "built"
    node.helper("teardown", "v2", write=False, job_result="succeeded")

    # a failed job's writes are discarded
    node.helper("setup", "v3", write=True)
    node.build("v3", "echo broken > /cache/artifact")
    node.helper("teardown", "v3", write=True, job_result="failed")

    node.helper("setup", "v4", write=False)
    seen = node.build("v4", "cat /cache/artifact /cache/deps/a; ls /cache")
    node.helper("teardown", "v4", write=False)
    assert seen.split() == ["built", "d", "artifact", "deps"]

    # teardown run twice is harmless (a helper Pod retried after a lost status)
    node.helper("teardown", "v4", write=False)
    assert not any(mounted(shared_root / "pv" / v) for v in ("v1", "v2", "v3", "v4"))


def test_bad_input_fails_cleanly_and_leaves_nothing(helper_image, shared_root):
    node = Node(helper_image, shared_root)
    p = node.helper("setup", "v1", write=True, check=False, CACHE_NAME="Gradle Cache")
    assert p.returncode == 2, p.stderr
    assert "invalid cache name 'Gradle Cache'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1          # one clear line, no traceback
    assert not mounted(shared_root / "pv" / "v1") and not (shared_root / "pv" / "v1").exists()


def test_provisioner_runs_in_the_image_as_its_deployment_runs_it(helper_image, tmp_path):
    """cachesync-provisioner in the image, as provisioner/deploy runs it (uid 65532, read-only
    root), against a fake API server: it lists, watches, and provisions a pending claim."""
    import time

    import yaml

    from fake_apiserver import route_claim_to_provision, serve
    from k8s_objects import pvc

    claim = pvc()
    token = "image-test-token"
    with serve() as api:
        for path, items in (("/api/v1/persistentvolumeclaims", [claim]),
                            ("/api/v1/persistentvolumes", []), ("/api/v1/pods", []),
                            ("/api/v1/namespaces/cachesync/pods", [])):
            api.on("GET", path, (200, {"metadata": {"resourceVersion": "1"}, "items": items}))
        route_claim_to_provision(api, claim)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}]}))
        kubeconfig.chmod(0o644)
        name = f"cachesync-test-{uuid.uuid4().hex[:10]}"
        sh("docker", "run", "-d", "--name", name, "--network", "host", "--user", "65532:65532",
           "--read-only", "-e", "PYTHONDONTWRITEBYTECODE=1", "-v",
           f"{kubeconfig}:/etc/kubeconfig:ro", "--entrypoint", "cachesync-provisioner",
           helper_image, "--kubeconfig", "/etc/kubeconfig", "--log-format", "json",
           "--helper-image", "example.org/cachesync:test")
        try:
            deadline = time.monotonic() + 60
            while not api.sent("POST") and time.monotonic() < deadline:
                time.sleep(0.2)
            logs = sh("docker", "logs", name, check=False)
            pods = [r for r in api.sent("POST") if r["path"].endswith("/pods")]
            assert pods, f"no setup pod created; logs:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}"
        finally:
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
    pod = pods[0]["body"]
    assert pod["spec"]["containers"][0]["image"] == "example.org/cachesync:test"
    assert pod["spec"]["nodeName"] == "worker-a"
    assert all(r["headers"].get("authorization") == f"Bearer {token}" for r in api.requests)
    watched = {r["path"] for r in api.requests if "watch=" in r["query"].lower()}
    assert {"/api/v1/persistentvolumeclaims", "/api/v1/persistentvolumes",
            "/api/v1/pods"} <= watched
    assert token not in logs.stdout + logs.stderr
