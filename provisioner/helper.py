"""Helper Pods: the spec that runs ``cachesync helper setup|teardown`` on a node, and what a
helper Pod's status means for the reconcilers.

Helper Pods run in the provisioner's own namespace (privileged there, not in user namespaces),
pinned to the node with ``nodeName``, tolerating every taint, with the node root as a hostPath
mounted with Bidirectional propagation so the overlay mount made at VOL_DIR outlives the Pod.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal

from . import keys, objects
from .config import Settings
from .errors import shorten
from .actions import Delete
from .objects import Obj
from .volume import VolumeRecord

Action = Literal["setup", "teardown", "cleanup"]
JobResult = Literal["succeeded", "failed", "unknown"]


def pod_name(action: Action, pv_name: str) -> str:
    return f"cachesync-{action}-{pv_name}"


def helper_pod(record: VolumeRecord, action: Action, settings: Settings,
               job_result: JobResult = "unknown") -> dict[str, Any]:
    """The helper Pod for ``action``: setup makes the volume; teardown commits (when writable and
    the job did not fail) and removes it; cleanup is a teardown that never commits (a claim
    deleted before its PV existed).

    PVC_NAMESPACE is the cache's namespace (the claim's own unless its class sets
    cacheNamespace): the helper protocol reads the cache as <PVC_NAMESPACE>/<CACHE_NAME>."""
    write = record.write and action != "cleanup"
    env = [
        ("VOL_DIR", record.vol_dir), ("VOL_NAME", record.pv_name), ("VOL_MODE", "Filesystem"),
        ("VOL_SIZE_BYTES", str(record.size_bytes)), ("PVC_NAMESPACE", record.cache_namespace),
        ("PVC_NAME", record.pvc_name), ("CACHE_NAME", record.cache_name),
        ("CACHE_WRITE", "true" if write else "false"), ("CACHESYNC_ROOT", settings.node_root),
    ]
    if action != "setup":
        env.append(("JOB_RESULT", "failed" if action == "cleanup" else job_result))
    command = "setup" if action == "setup" else "teardown"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(action, record.pv_name),
            "namespace": settings.namespace,
            "labels": {keys.MANAGED_BY: keys.MANAGER, keys.ACTION: action,
                       keys.FOR_VOLUME: record.pv_name,
                       keys.CLAIM_NAMESPACE: record.pvc_namespace,
                       keys.CLAIM_NAME: record.pvc_name[:63].rstrip("-_.")},
            "annotations": record.to_annotations(),
        },
        "spec": {
            "nodeName": record.node,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": max(1, int(settings.helper_timeout)),
            "serviceAccountName": settings.helper_service_account,
            "automountServiceAccountToken": False,
            "tolerations": [{"operator": "Exists"}],
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "helper",
                "image": settings.helper_image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["cachesync", "helper", command],
                "env": [{"name": k, "value": v} for k, v in env],
                "envFrom": [
                    {"configMapRef": {"name": settings.registry_config_map, "optional": True}},
                    {"secretRef": {"name": settings.registry_secret, "optional": True}},
                ],
                "securityContext": {"privileged": True, "runAsUser": 0},
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                "volumeMounts": [{"name": "node-root", "mountPath": settings.node_root,
                                  "mountPropagation": "Bidirectional"}],
            }],
            "volumes": [{"name": "node-root", "hostPath": {"path": settings.node_root,
                                                           "type": "DirectoryOrCreate"}}],
        },
    }


class Phase(enum.Enum):
    ABSENT = "absent"
    RUNNING = "running"          # pending or running, within its time
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed out"
    DELETING = "deleting"        # being deleted: wait until it is gone
    STUCK = "stuck deleting"     # deleted longer than the timeout ago (node gone or down)


@dataclass(frozen=True)
class HelperState:
    phase: Phase
    message: str = ""
    pod_uid: str = ""

    @property
    def failed(self) -> bool:
        return self.phase in (Phase.FAILED, Phase.TIMED_OUT)


def _container_detail(pod: Obj) -> str:
    for cs in objects.status(pod).get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "terminated" in state:
            t = state["terminated"] or {}
            text = t.get("message") or t.get("reason") or ""
            return f"exit {t.get('exitCode')}: {text}".strip(": ")
        if "waiting" in state:
            w = state["waiting"] or {}
            return ": ".join(p for p in (w.get("reason"), w.get("message")) if p)
    return ""


def evaluate(pod: Obj | None, now: float, timeout: float) -> HelperState:
    """What a helper Pod (or its absence) means now. A Pod pending or running longer than
    ``timeout`` (an image that cannot be pulled, a node that stopped reporting) is TIMED_OUT."""
    if pod is None:
        return HelperState(Phase.ABSENT)
    uid = objects.uid(pod)
    if objects.is_deleting(pod):
        since = objects.parse_time(objects.meta(pod).get("deletionTimestamp"))
        if since is not None and now - since > timeout:
            return HelperState(Phase.STUCK, "still terminating: its node does not answer", uid)
        return HelperState(Phase.DELETING, pod_uid=uid)
    st = objects.status(pod)
    phase = st.get("phase", "Pending")
    detail = _container_detail(pod)
    if phase == "Succeeded":
        return HelperState(Phase.SUCCEEDED, shorten(detail), uid)
    if phase == "Failed":
        why = ": ".join(p for p in (st.get("reason"), st.get("message")) if p)
        return HelperState(Phase.FAILED, shorten(detail or why or "failed"), uid)
    created = objects.parse_time(objects.meta(pod).get("creationTimestamp"))
    if created is not None and now - created > timeout:
        what = f"still {phase.lower()} after {int(timeout)}s"
        return HelperState(Phase.TIMED_OUT, shorten(
            f"{what} ({detail})" if detail else what), uid)
    return HelperState(Phase.RUNNING, detail, uid)


def force_delete(pod: Obj | None, settings: Settings) -> Delete:
    """A helper Pod stuck terminating (its node is down or gone) is removed from the API without
    waiting for the kubelet; if the node comes back, the kubelet stops what no longer exists."""
    return Delete("Pod", objects.name(pod), settings.namespace, objects.uid(pod) or None,
                  force=True)
