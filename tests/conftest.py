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
