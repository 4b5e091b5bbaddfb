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
from typing import Callable

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


@pytest.fixture
def make_node(tmp_path, requires_root) -> Callable[..., Node]:
    """``make_node("a", max_layers=4)`` -> a Node with its own root under tmp_path."""

    def make(name: str = "node", **overrides) -> Node:
        base = settings_mod.Settings(root=tmp_path / name, node_id=name.replace("-", "")[:32])
        return Node.open(replace(base, **overrides))

    return make


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
