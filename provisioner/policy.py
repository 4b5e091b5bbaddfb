"""Write policy: may a claim's volume commit its changes back to the cache?

The cluster admin decides, through StorageClass parameters; the claim's ``cachesync.io/write``
annotation can only narrow that, never widen it:

    readOnly                "true": no claim of this class ever writes (default "false")
    writeDefault            what a claim without the annotation gets (default "true")
    writeNamespaces         comma-separated namespaces allowed to write
    writeNamespaceSelector  a label selector on the claim's Namespace allowed to write

With neither ``writeNamespaces`` nor ``writeNamespaceSelector`` every namespace may write; with
one or both, a namespace may write when it is listed or its labels match. A claim that asks to
write where it may not gets a read-only volume and a Warning event (the build still runs; it
just cannot change the cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from . import selector as selector_mod
from .errors import ClaimError


def parse_bool(value: str | None, what: str, default: bool) -> bool:
    if value is None:
        return default
    text = str(value).strip().lower()
    if text == "true":
        return True
    if text == "false":
        return False
    raise ClaimError(f"{what} must be \"true\" or \"false\", not {value!r}")


@dataclass(frozen=True)
class WritePolicy:
    read_only: bool = False
    default_write: bool = True
    namespaces: frozenset[str] = frozenset()
    namespace_selector: selector_mod.Selector | None = None

    @classmethod
    def from_parameters(cls, params: Mapping[str, str], where: str = "StorageClass") -> "WritePolicy":
        namespaces = frozenset(n.strip() for n in params.get("writeNamespaces", "").split(",")
                               if n.strip())
        sel_text = params.get("writeNamespaceSelector", "").strip()
        try:
            sel = selector_mod.parse(sel_text) if sel_text else None
        except ValueError as e:
            raise ClaimError(f"{where}: parameter writeNamespaceSelector: {e}",
                             "InvalidStorageClass") from e
        try:
            return cls(
                read_only=parse_bool(params.get("readOnly"), f"{where}: parameter readOnly", False),
                default_write=parse_bool(params.get("writeDefault"),
                                         f"{where}: parameter writeDefault", True),
                namespaces=namespaces,
                namespace_selector=sel,
            )
        except ClaimError as e:
            raise ClaimError(str(e), "InvalidStorageClass") from e

    def namespace_may_write(self, namespace: str, namespace_labels: Mapping[str, str] | None) -> bool:
        if self.read_only:
            return False
        if not self.namespaces and self.namespace_selector is None:
            return True
        if namespace in self.namespaces:
            return True
        return self.namespace_selector is not None and self.namespace_selector.matches(
            namespace_labels or {})


@dataclass(frozen=True)
class WriteDecision:
    write: bool
    reason: str                  # one phrase for events: why writable or read-only
    denied: bool = False         # the claim asked to write and the policy said no


def decide(policy: WritePolicy, requested: bool | None, namespace: str,
           namespace_labels: Mapping[str, str] | None) -> WriteDecision:
    """``requested``: the claim's annotation (None when absent)."""
    allowed = policy.namespace_may_write(namespace, namespace_labels)
    if requested is False:
        return WriteDecision(False, "read-only: the claim asks for it")
    if not allowed:
        why = ("the StorageClass is read-only" if policy.read_only else
               f"namespace {namespace} is not allowed to write by the StorageClass")
        return WriteDecision(False, f"read-only: {why}", denied=requested is True)
    if requested is True:
        return WriteDecision(True, "writable: the claim asks for it and the policy allows it")
    if policy.default_write:
        return WriteDecision(True, "writable: the StorageClass default")
    return WriteDecision(False, "read-only: the StorageClass default (annotate "
                                "cachesync.io/write: \"true\" to write)")
