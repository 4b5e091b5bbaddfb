"""The layering rules of docs/architecture.md, checked on the source: each outside system is
touched by one adapter module, and only the entry points read the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cachesync", "provisioner")

# imported module -> the only source files allowed to import it
ADAPTERS = {
    "oras": {"cachesync/registry.py"},
    "requests": {"cachesync/registry.py"},
    "kubernetes": {"provisioner/kube.py"},
    "subprocess": {"cachesync/buildah.py", "cachesync/skopeo.py", "cachesync/mounts.py"},
}
ENVIRONMENT_READERS = {"cachesync/cli.py", "provisioner/main.py"}


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def reads_environment(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                return True
    return False


def test_sources_are_found():
    rel = {str(p.relative_to(ROOT)) for p in sources()}
    assert "cachesync/cli.py" in rel and "cachesync/buildah.py" in rel


@pytest.mark.parametrize("module,allowed", sorted(ADAPTERS.items()))
def test_outside_systems_have_one_adapter(module, allowed):
    offenders = [str(p.relative_to(ROOT)) for p in sources()
                 if module in imported_modules(ast.parse(p.read_text()))
                 and str(p.relative_to(ROOT)) not in allowed]
    assert offenders == [], f"{module} may only be imported by {sorted(allowed)}"


def test_only_entry_points_read_the_environment():
    offenders = [str(p.relative_to(ROOT)) for p in sources()
                 if reads_environment(ast.parse(p.read_text()))
                 and str(p.relative_to(ROOT)) not in ENVIRONMENT_READERS]
    assert offenders == []
