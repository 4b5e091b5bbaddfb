"""A volume's record, and the PersistentVolume that carries it.

The record is everything teardown needs (node, directory, cache, write mode, claim); it is
written as annotations on the setup helper Pod and then copied onto the PV, so the PV alone is
enough to tear the volume down, even after the claim is gone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from . import keys
from .errors import ClaimError

_INT_FIELDS = {"size_bytes"}
_BOOL_FIELDS = {"write"}


@dataclass(frozen=True)
class VolumeRecord:
    pv_name: str
    node: str                    # Node name the volume lives on
    hostname: str                # its kubernetes.io/hostname label (PV node affinity)
    vol_dir: str                 # hostPath of the PV, where the overlay is mounted
    pvc_namespace: str
    pvc_name: str
    pvc_uid: str
    cache_namespace: str         # the claim's namespace, or its class's cacheNamespace
    cache_name: str
    write: bool
    size_bytes: int
    capacity: str                # the claim's request as written (PV capacity)
    storage_class: str

    def to_annotations(self) -> dict[str, str]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            key = keys.VOLUME_PREFIX + f.name.replace("_", "-")
            out[key] = ("true" if value else "false") if f.name in _BOOL_FIELDS else str(value)
        return out

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str], where: str) -> "VolumeRecord":
        """The record back; ClaimError (reason BrokenVolumeRecord) when a field is missing or
        unreadable (someone edited the annotations)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = keys.VOLUME_PREFIX + f.name.replace("_", "-")
            raw = annotations.get(key)
            if raw is None:
                raise ClaimError(f"{where}: annotation {key} is missing", "BrokenVolumeRecord")
            if f.name in _INT_FIELDS:
                if not raw.isdigit():
                    raise ClaimError(f"{where}: annotation {key}={raw!r} is not a number",
                                     "BrokenVolumeRecord")
                values[f.name] = int(raw)
            elif f.name in _BOOL_FIELDS:
                if raw not in ("true", "false"):
                    raise ClaimError(f"{where}: annotation {key}={raw!r} is not true/false",
                                     "BrokenVolumeRecord")
                values[f.name] = raw == "true"
            else:
                values[f.name] = raw
        return cls(**values)

    @property
    def cache(self) -> str:
        return f"{self.cache_namespace}/{self.cache_name}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pv_name_for(pvc_uid: str) -> str:
    """The PV name of a claim: ``pvc-<uid>``, as every external provisioner spells it."""
    return f"pvc-{pvc_uid}"


def persistent_volume(record: VolumeRecord) -> dict[str, Any]:
    """The hostPath PV, pinned to the node, pre-bound to its claim, carrying the record."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": record.pv_name,
            "labels": {keys.MANAGED_BY: keys.MANAGER},
            "annotations": {keys.PROVISIONED_BY: keys.PROVISIONER, **record.to_annotations()},
            "finalizers": [keys.VOLUME_FINALIZER],
        },
        "spec": {
            "capacity": {"storage": record.capacity},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": record.storage_class,
            "volumeMode": "Filesystem",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": record.pvc_namespace, "name": record.pvc_name,
                         "uid": record.pvc_uid},
            "hostPath": {"path": record.vol_dir, "type": "Directory"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": keys.HOSTNAME_LABEL, "operator": "In", "values": [record.hostname]},
            ]}]}},
        },
    }
