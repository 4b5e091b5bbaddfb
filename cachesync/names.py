"""Cache names: validation and the one place that spells repositories and local image names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

# Kubernetes DNS label (RFC 1123): what a namespace may be called.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_CACHE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
LOCAL_PREFIX = "localhost/cachesync"


def validate_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise UsageError(
            f"invalid namespace {namespace!r}: must be a DNS label "
            "(1-63 characters of a-z, 0-9 and '-', starting and ending alphanumeric)"
        )
    return namespace


def validate_cache_name(name: str) -> str:
    if not isinstance(name, str) or not _CACHE_NAME.fullmatch(name) or ".." in name:
        raise UsageError(
            f"invalid cache name {name!r}: must match [a-z0-9][a-z0-9._-]{{0,127}} "
            "(lowercase letters, digits, '.', '_', '-'; no '..')"
        )
    return name


@dataclass(frozen=True, order=True)
class CacheRef:
    """One cache: ``<namespace>/<name>``. Construction validates both parts."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)
        validate_cache_name(self.name)

    @classmethod
    def parse(cls, text: str) -> "CacheRef":
        """Parse ``namespace/name`` (as typed on the command line)."""
        parts = text.split("/") if isinstance(text, str) else []
        if len(parts) != 2:
            raise UsageError(f"invalid cache reference {text!r}: expected <namespace>/<cache-name>")
        return cls(parts[0], parts[1])

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def local_repository(self) -> str:
        """Repository of this cache's images in a node's buildah storage."""
        return f"{LOCAL_PREFIX}/{self.namespace}/{self.name}"

    def local_image(self, tag: str) -> str:
        return f"{self.local_repository}:{tag}"

    def repository(self, prefix: str) -> str:
        """Repository path in the registry: ``<prefix>/<namespace>/<name>``."""
        prefix = prefix.strip("/")
        return f"{prefix}/{self.namespace}/{self.name}" if prefix else f"{self.namespace}/{self.name}"

    @property
    def key(self) -> str:
        """A file-name-safe key (namespaces cannot contain '_' so '__' is unambiguous)."""
        return f"{self.namespace}__{self.name}"
