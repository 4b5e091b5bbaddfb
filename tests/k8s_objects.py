"""Kubernetes objects as the API serves them (``kubectl get -o json`` shapes), for the
provisioner tests. Each factory returns a fresh dict; tweak it with ``with_()``."""

from __future__ import annotations

import copy
from typing import Any

T0 = 1_800_000_000.0          # a fixed "now" for the pure reconcilers
T0_TEXT = "2027-01-15T08:00:00Z"
PVC_UID = "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"
POD_UID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
PV_NAME = f"pvc-{PVC_UID}"


def with_(obj: dict, **paths: Any) -> dict:
    """A copy with dotted paths set (``with_(pvc, **{"metadata.annotations.x": "y"})``); a value
    of ``...`` deletes the key."""
    out = copy.deepcopy(obj)
    for path, value in paths.items():
        parts = path.split("|") if "|" in path else path.split(".")
        cur = out
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        if value is ...:
            cur.pop(parts[-1], None)
        else:
            cur[parts[-1]] = value
    return out


def storage_class(name: str = "cachesync", **parameters: str) -> dict:
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name, "uid": "5c0e6f3a-1111-4222-8333-444455556666",
                     "resourceVersion": "812", "creationTimestamp": "2027-01-01T00:00:00Z"},
        "provisioner": "cachesync.io/cache",
        "parameters": dict(parameters),
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": False,
    }


def pvc(name: str = "gradle-cache", namespace: str = "ci", node: str | None = "worker-a",
        annotations: dict | None = None, storage_class_name: str = "cachesync",
        uid: str = PVC_UID) -> dict:
    ann = {"volume.beta.kubernetes.io/storage-provisioner": "cachesync.io/cache",
           "volume.kubernetes.io/storage-provisioner": "cachesync.io/cache"}
    if node:
        ann["volume.kubernetes.io/selected-node"] = node
    ann.update(annotations or {})
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "uid": uid,
                     "resourceVersion": "40211", "creationTimestamp": T0_TEXT,
                     "annotations": ann, "finalizers": ["kubernetes.io/pvc-protection"]},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}},
                 "storageClassName": storage_class_name, "volumeMode": "Filesystem"},
        "status": {"phase": "Pending"},
    }


def node(name: str = "worker-a", hostname: str | None = None) -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": "a0a0a0a0-b1b1-4c2c-8d3d-e4e4e4e4e4e4",
                     "labels": {"kubernetes.io/hostname": hostname or name,
                                "kubernetes.io/os": "linux"}},
        "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def namespace(name: str = "ci", labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": "9e9e9e9e-8d8d-4c7c-8b6b-5a5a5a5a5a5a",
                         "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def finished(pod: dict, phase: str, exit_code: int | None = None, message: str = "",
             reason: str | None = None) -> dict:
    """The pod as the kubelet reports it when its container has ended."""
    code = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
    term = {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"),
            "startedAt": T0_TEXT, "finishedAt": T0_TEXT,
            "containerID": "containerd://1234"}
    if message:
        term["message"] = message
    out = copy.deepcopy(pod)
    out.setdefault("metadata", {}).setdefault("uid", POD_UID)
    out["status"] = {"phase": phase, "startTime": T0_TEXT, "containerStatuses": [{
        "name": "helper", "ready": False, "restartCount": 0, "image": "x", "imageID": "",
        "state": {"terminated": term}}]}
    return out


def running(pod: dict, created: str = T0_TEXT, waiting: str | None = None) -> dict:
    out = copy.deepcopy(pod)
    out["metadata"].setdefault("uid", POD_UID)
    out["metadata"]["creationTimestamp"] = created
    state = {"waiting": {"reason": waiting, "message": "Back-off pulling image"}} if waiting \
        else {"running": {"startedAt": created}}
    out["status"] = {"phase": "Pending" if waiting else "Running",
                     "containerStatuses": [{"name": "helper", "ready": not waiting,
                                            "restartCount": 0, "image": "x", "imageID": "",
                                            "state": state}]}
    return out


def build_pod(name: str = "build-1", namespace: str = "ci", claims: tuple[str, ...] = ("gradle-cache",),
              restart_policy: str = "Never", phase: str = "Running", uid: str = POD_UID,
              ephemeral: tuple[str, ...] = ()) -> dict:
    vols: list[dict] = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                        for i, c in enumerate(claims)]
    for e in ephemeral:
        vols.append({"name": e, "ephemeral": {"volumeClaimTemplate": {
            "metadata": {"annotations": {"cachesync.io/cache-name": "gradle"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "cachesync",
                     "resources": {"requests": {"storage": "1Gi"}}}}}})
    vols.append({"name": "kube-api-access-x", "projected": {"sources": []}})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid,
                     "creationTimestamp": T0_TEXT},
        "spec": {"restartPolicy": restart_policy, "nodeName": "worker-a",
                 "containers": [{"name": "build", "image": "gradle:8"}], "volumes": vols},
        "status": {"phase": phase},
    }
