"""A cachesync StorageClass, read and checked: its parameters as one typed value.

Unknown parameters are refused (a typo must not silently widen or narrow anything).
"""

from __future__ import annotations

from dataclasses import dataclass

from cachesync.errors import UsageError
from cachesync.names import validate_namespace

from . import keys, objects
from .errors import ClaimError
from .objects import Obj
from .policy import WritePolicy, parse_bool

PARAMETERS = {
    "readOnly": "\"true\": no claim of this class may write (default \"false\")",
    "writeDefault": "write mode of a claim without cachesync.io/write (default \"true\")",
    "writeNamespaces": "comma-separated namespaces allowed to write",
    "writeNamespaceSelector": "label selector on Namespaces allowed to write",
    "cacheNamespace": "namespace whose caches claims of this class use (default: the claim's "
                      "own); e.g. pull-request namespaces reading the caches of ci",
    "releaseOnPodCompletion": "delete the claims of a finished Pod at once, passing its result "
                              "to teardown (default \"true\")",
}


@dataclass(frozen=True)
class ClassConfig:
    name: str
    policy: WritePolicy
    release_on_pod_completion: bool = True
    cache_namespace: str | None = None     # None: each claim uses its own namespace's caches


def is_ours(storage_class: Obj | None) -> bool:
    return storage_class is not None and storage_class.get("provisioner") == keys.PROVISIONER


def parse(storage_class: Obj) -> ClassConfig:
    """ClassConfig of a cachesync StorageClass; ClaimError (reason InvalidStorageClass) if its
    parameters or binding mode cannot work."""
    name = objects.name(storage_class)
    where = f"StorageClass {name}"
    params = storage_class.get("parameters") or {}
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ClaimError(f"{where}: unknown parameter(s) {', '.join(unknown)} (known: "
                         f"{', '.join(sorted(PARAMETERS))})", "InvalidStorageClass")
    mode = storage_class.get("volumeBindingMode") or "Immediate"
    if mode != "WaitForFirstConsumer":
        raise ClaimError(f"{where}: volumeBindingMode must be WaitForFirstConsumer (the volume is "
                         f"made on the node the pod is scheduled to), not {mode}",
                         "InvalidStorageClass")
    reclaim = storage_class.get("reclaimPolicy") or "Delete"
    if reclaim != "Delete":
        raise ClaimError(f"{where}: reclaimPolicy must be Delete (a released volume is committed "
                         f"and removed), not {reclaim}", "InvalidStorageClass")
    try:
        release = parse_bool(params.get("releaseOnPodCompletion"),
                             f"{where}: parameter releaseOnPodCompletion", True)
    except ClaimError as e:
        raise ClaimError(str(e), "InvalidStorageClass") from e
    cache_ns = params.get("cacheNamespace", "").strip() or None
    if cache_ns is not None:
        try:
            validate_namespace(cache_ns)
        except UsageError as e:
            raise ClaimError(f"{where}: parameter cacheNamespace: {e}", "InvalidStorageClass") from e
    return ClassConfig(name=name, policy=WritePolicy.from_parameters(params, where),
                       release_on_pod_completion=release, cache_namespace=cache_ns)
