"""What a PVC asks for, read and checked against what cachesync can provide.

Everything is checked before anything is made: a claim that cannot work gets one Warning event
saying what to change, and no helper Pod, PV or finalizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachesync.errors import UsageError
from cachesync.names import validate_cache_name, validate_namespace

from . import classes, keys, objects
from .errors import ClaimError
from .objects import Obj
from .policy import parse_bool

# cachesync.io/ annotations a claim may carry: the two a user sets, and those we keep on it.
_OURS = (keys.LAST_FAILED_POD,)
_OUR_SUFFIXES = ("-failures", "-retry-after")


@dataclass(frozen=True)
class ClaimRequest:
    namespace: str
    name: str
    cache_namespace: str              # the class's cacheNamespace, else the claim's namespace
    uid: str
    cache_name: str
    requested_write: bool | None      # the cachesync.io/write annotation (None: absent)
    size_bytes: int
    capacity: str
    config: classes.ClassConfig


def _check_annotations(pvc: Obj, where: str) -> None:
    for key in objects.annotations_of(pvc):
        if not key.startswith("cachesync.io/") or key in (keys.CACHE_NAME, keys.WRITE) or \
                key in _OURS or key.endswith(_OUR_SUFFIXES):
            continue
        raise ClaimError(f"{where}: unknown annotation {key} (known: {keys.CACHE_NAME}, "
                         f"{keys.WRITE})", "InvalidAnnotation")


def read(pvc: Obj, storage_class: Obj) -> ClaimRequest:
    """The checked request of a claim of a cachesync class; ClaimError says what is wrong."""
    ns, name = objects.namespace(pvc), objects.name(pvc)
    where = f"PersistentVolumeClaim {ns}/{name}"
    config = classes.parse(storage_class)
    spec = objects.spec(pvc)
    modes = set(spec.get("accessModes") or [])
    if modes != {"ReadWriteOnce"}:
        raise ClaimError(f"{where}: accessModes must be [ReadWriteOnce] (a cache volume lives on "
                         f"one node), not {sorted(modes)}", "UnsupportedAccessMode")
    mode = spec.get("volumeMode") or "Filesystem"
    if mode != "Filesystem":
        raise ClaimError(f"{where}: volumeMode must be Filesystem, not {mode}",
                         "UnsupportedVolumeMode")
    if spec.get("dataSource") or spec.get("dataSourceRef"):
        raise ClaimError(f"{where}: dataSource is not supported (a cache volume starts from "
                         "its cache)", "UnsupportedDataSource")
    if spec.get("selector"):
        raise ClaimError(f"{where}: a selector cannot be used with a provisioned class",
                         "UnsupportedSelector")
    request = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if request is None:
        raise ClaimError(f"{where}: resources.requests.storage is required", "InvalidRequest")
    try:
        size = objects.parse_quantity(request)
    except ValueError as e:
        raise ClaimError(f"{where}: resources.requests.storage: {e}", "InvalidRequest") from e
    _check_annotations(pvc, where)
    ann = objects.annotations_of(pvc)
    cache_name = ann.get(keys.CACHE_NAME, name)
    try:
        validate_namespace(ns)
        validate_cache_name(cache_name)
    except UsageError as e:
        source = f"annotation {keys.CACHE_NAME}" if keys.CACHE_NAME in ann else "the claim's name"
        raise ClaimError(f"{where}: {source}: {e}", "InvalidCacheName") from e
    requested = None
    if keys.WRITE in ann:
        try:
            requested = parse_bool(ann[keys.WRITE], f"{where}: annotation {keys.WRITE}", False)
        except ClaimError as e:
            raise ClaimError(str(e), "InvalidAnnotation") from e
    return ClaimRequest(namespace=ns, name=name, cache_namespace=config.cache_namespace or ns,
                        uid=objects.uid(pvc), cache_name=cache_name,
                        requested_write=requested, size_bytes=size, capacity=str(request),
                        config=config)
