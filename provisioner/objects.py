"""Small, total accessors over Kubernetes objects as the API returns them (JSON dicts), and the
patches the provisioner sends. No API calls here."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

Obj = Mapping[str, Any]

_QUANTITY = re.compile(r"^([+]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
_SUFFIX: dict[str, int | Decimal] = {
    "": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "m": Decimal("0.001")}


def meta(obj: Obj | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def name(obj: Obj | None) -> str:
    return meta(obj).get("name", "")


def namespace(obj: Obj | None) -> str:
    return meta(obj).get("namespace", "")


def uid(obj: Obj | None) -> str:
    return meta(obj).get("uid", "")


def annotations_of(obj: Obj | None) -> Mapping[str, str]:
    return meta(obj).get("annotations") or {}


def labels(obj: Obj | None) -> Mapping[str, str]:
    return meta(obj).get("labels") or {}


def finalizers(obj: Obj | None) -> list[str]:
    return list(meta(obj).get("finalizers") or [])


def is_deleting(obj: Obj | None) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def spec(obj: Obj | None) -> Mapping[str, Any]:
    return (obj or {}).get("spec") or {}


def status(obj: Obj | None) -> Mapping[str, Any]:
    return (obj or {}).get("status") or {}


def parse_time(text: str | None) -> float | None:
    """RFC 3339 as the API writes it (``2026-11-23T09:00:00Z``) -> seconds since the epoch."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def format_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_quantity(text: Any) -> int:
    """A Kubernetes quantity (``10Gi``, ``500M``, ``1e9``) -> bytes, rounded up. ValueError if
    it is not one."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    try:
        value = Decimal(m.group(1)) * _SUFFIX[m.group(2) or ""]
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from None
    whole = int(value)
    return whole + (1 if value > whole else 0)


def ref(obj: Obj) -> dict[str, str]:
    """An ObjectReference to ``obj`` (what an Event's involvedObject holds)."""
    out = {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind", ""),
           "name": name(obj), "uid": uid(obj)}
    if namespace(obj):
        out["namespace"] = namespace(obj)
    rv = meta(obj).get("resourceVersion")
    if rv:
        out["resourceVersion"] = rv
    return out


def add_finalizer_patch(obj: Obj, finalizer: str) -> list[dict[str, Any]]:
    """A JSON patch adding ``finalizer`` (empty if present)."""
    current = finalizers(obj)
    if finalizer in current:
        return []
    if not current:
        return [{"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}]
    return [{"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}]


def remove_finalizer_patch(obj: Obj, finalizer: str) -> list[dict[str, Any]]:
    """A JSON patch removing ``finalizer``, guarded by a test so a concurrent change of the list
    makes the patch fail (422/409) instead of removing someone else's finalizer."""
    current = finalizers(obj)
    if finalizer not in current:
        return []
    i = current.index(finalizer)
    path = f"/metadata/finalizers/{i}"
    return [{"op": "test", "path": path, "value": finalizer}, {"op": "remove", "path": path}]


def annotations_patch(values: Mapping[str, str | None]) -> dict[str, Any]:
    """A merge patch setting (or, for None, removing) annotations."""
    return {"metadata": {"annotations": dict(values)}}

