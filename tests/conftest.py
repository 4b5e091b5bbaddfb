"""Shared fixtures: real node roots on a temporary directory, and a guard against leaks.

Every test that makes a node gets its own root under tmp_path (two roots = two nodes that share
nothing). After each test the guard fails the test if a mount under its tmp_path is left, then
unmounts it so one failure does not spread to the next test.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from cachesync import settings as settings_mod
from cachesync.node import Node

# Registry fixtures live in their own module; importing them here makes them visible to all tests.
from registry_fixtures import *  # noqa: F401,F403 (re-exported fixtures)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = line.split()[4].encode().decode("unicode_escape")
            if mountpoint == prefix or mountpoint.startswith(prefix + "/"):
                found.append(mountpoint)
    return found


@pytest.fixture(autouse=True)
def no_leaked_mounts(request, tmp_path):
    yield
    leaked = mounts_under(tmp_path)
    for mountpoint in sorted(leaked, key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)
    if leaked and not getattr(request.node, "allow_leaked_mounts", False):
        pytest.fail(f"test left mounts behind: {leaked}")


@pytest.fixture
def requires_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, buildah)")


def unmount_storage(root: Path) -> None:
    """buildah's overlay driver keeps ``<root>/storage/overlay`` mounted on itself (and a skopeo
    that fails can leave it so): that mount belongs to the node, not to a test's leaks."""
    target = str((root / "storage" / "overlay").resolve())
    if target in mounts_under(root):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


@pytest.fixture
def make_node(tmp_path, requires_root) -> Iterator[Callable[..., Node]]:
    """``make_node("a", max_layers=4)`` -> a Node with its own root under tmp_path."""
    roots: list[Path] = []

    def make(name: str = "node", **overrides) -> Node:
        base = settings_mod.Settings(root=tmp_path / name, node_id=name.replace("-", "")[:32])
        node = Node.open(replace(base, **overrides))
        roots.append(node.state.root)
        return node

    yield make
    for root in roots:
        unmount_storage(root)


def docker_available() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def debian_base_image() -> str:
    """The locally made ``debian:bookworm-slim`` (scripts/docker-base-image.sh)."""
    if not docker_available():
        pytest.skip("no Docker engine running (make test starts one)")
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run(["bash", str(root / "scripts" / "docker-base-image.sh")],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"cannot make the base image: {p.stderr[-2000:]}")
    return "debian:bookworm-slim"


# --- node core helpers (volumes) -------------------------------------------------------------

@pytest.fixture
def vol_spec(tmp_path):
    """``vol_spec("v1", cache="c", write=True)`` -> a VolumeSpec with VOL_DIR under tmp_path."""
    from cachesync.volume import VolumeSpec

    def make(vol_name: str = "pvc-1", cache: str = "cache", namespace: str = "ns",
             write: bool = True, vol_dir: Path | None = None):
        return VolumeSpec.from_inputs({
            "vol_name": vol_name, "vol_dir": str(vol_dir or tmp_path / "vols" / vol_name),
            "vol_mode": "Filesystem", "pvc_namespace": namespace, "pvc_name": "claim",
            "cache_name": cache, "cache_write": "true" if write else "false"})

    return make


@pytest.fixture
def commit_files(vol_spec):
    """``commit_files(node, {"a.txt": "x"}, cache="c")`` -> the generation committed: sets up a
    writable volume, writes the files (a None value deletes), tears it down as succeeded."""
    from cachesync import volume

    counter = iter(range(10**6))

    def commit(node: Node, files: dict[str, str | None], cache: str = "cache",
               namespace: str = "ns"):
        spec = vol_spec(f"commit-{next(counter)}", cache=cache, namespace=namespace)
        volume.setup(node, spec)
        for rel, content in files.items():
            p = spec.vol_dir / rel
            if content is None:
                p.unlink()
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(content)
        result = volume.teardown(node, spec, "succeeded")
        assert result.committed is not None, result.summary()
        return result.committed

    return commit


def volume_files(vol_dir: Path) -> dict[str, str]:
    """Relative path -> content of every file under a volume."""
    return {str(p.relative_to(vol_dir)): p.read_text()
            for p in sorted(vol_dir.rglob("*")) if p.is_file()}


@pytest.fixture
def read_cache(vol_spec):
    """``read_cache(node, cache="c")`` -> the files a fresh read-only volume of the cache shows."""
    from cachesync import volume

    counter = iter(range(10**6))

    def read(node: Node, cache: str = "cache", namespace: str = "ns") -> dict[str, str]:
        spec = vol_spec(f"reader-{next(counter)}", cache=cache, namespace=namespace, write=False)
        volume.setup(node, spec)
        try:
            return volume_files(spec.vol_dir)
        finally:
            assert volume.teardown(node, spec, "succeeded").committed is None

    return read
