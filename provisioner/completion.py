"""Pod-completion release: when a build Pod is done, its cachesync claims go at once.

A Pod with ``restartPolicy: Never`` that Succeeded or Failed, or ``OnFailure`` that Succeeded,
releases each cachesync claim it mounts (by name, or as a generic ephemeral volume it owns):
the pod's result is written on the PV (``cachesync.io/job-result``, what teardown gets as
JOB_RESULT; a failure is never overwritten), the claim is deleted and its
``kubernetes.io/pvc-protection`` finalizer lifted, so teardown commits right away. A claim
still used by a Pod that has not finished is left alone. Any failed Pod marks the PV failed,
even when it does not release it (``OnFailure``), so failed builds write nothing back.
Opt out per StorageClass with ``releaseOnPodCompletion: "false"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from . import classes, keys, objects, release
from .actions import Delete, Event, Outcome, Patch
from .errors import ClaimError
from .helper import JobResult
from .objects import Obj

TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True)
class ClaimUse:
    """A claim a finished Pod mounts, with its class, its PV and every Pod that mounts it."""

    pvc: Obj | None
    storage_class: Obj | None = None
    pv: Obj | None = None
    users: Sequence[Obj] = field(default_factory=list)


@dataclass(frozen=True)
class ClaimMount:
    claim: str
    ephemeral: bool


def claim_mounts(pod: Obj) -> list[ClaimMount]:
    out = []
    for vol in objects.spec(pod).get("volumes") or []:
        if (vol.get("persistentVolumeClaim") or {}).get("claimName"):
            out.append(ClaimMount(vol["persistentVolumeClaim"]["claimName"], False))
        elif "ephemeral" in vol:
            out.append(ClaimMount(f"{objects.name(pod)}-{vol['name']}", True))
    return out


def releases(pod: Obj) -> bool:
    """Does this Pod's end release its claims (restartPolicy Never and done, or OnFailure and
    succeeded)?"""
    phase = objects.status(pod).get("phase")
    policy = objects.spec(pod).get("restartPolicy", "Always")
    return (policy == "Never" and phase in TERMINAL) or (policy == "OnFailure"
                                                         and phase == "Succeeded")


def _owned_by(pvc: Obj, pod: Obj) -> bool:
    return any(o.get("uid") == objects.uid(pod) and o.get("kind") == "Pod"
               for o in objects.meta(pvc).get("ownerReferences") or [])


def aggregate(users: Sequence[Obj]) -> JobResult:
    phases = [objects.status(p).get("phase") for p in users]
    if "Failed" in phases:
        return "failed"
    return "succeeded" if phases and all(p == "Succeeded" for p in phases) else "unknown"


def reconcile_pod(pod: Obj, claims: Mapping[str, ClaimUse]) -> Outcome:
    out = Outcome()
    phase = objects.status(pod).get("phase")
    if phase not in TERMINAL:
        out.note = "pod not finished"
        return out
    notes = []
    for mount in claim_mounts(pod):
        use = claims.get(mount.claim)
        actions, note = _claim(pod, mount, use)
        out.add(*actions)
        notes.append(f"{mount.claim}: {note}")
    out.note = "; ".join(notes) or "no claims"
    return out


def _claim(pod: Obj, mount: ClaimMount, use: ClaimUse | None) -> tuple[list, str]:
    if use is None or use.pvc is None:
        return [], "claim gone"
    pvc, pv = use.pvc, use.pv
    if mount.ephemeral and not _owned_by(pvc, pod):
        return [], "ephemeral claim not owned by this pod"
    if not classes.is_ours(use.storage_class):
        return [], "not a cachesync claim"
    try:
        config = classes.parse(use.storage_class)  # type: ignore[arg-type]  # is_ours checked it
    except ClaimError:
        return [], "class unreadable"
    if pv is None or not release.is_ours(pv) or \
            objects.spec(pvc).get("volumeName") != objects.name(pv):
        return [], "not bound to a cachesync volume"
    users = use.users if any(objects.uid(u) == objects.uid(pod) for u in use.users) else \
        [*use.users, pod]
    busy = [objects.name(u) for u in users if objects.status(u).get("phase") not in TERMINAL]
    result = aggregate(users)
    actions: list = []
    current = objects.annotations_of(pv).get(keys.JOB_RESULT)
    if current != "failed" and current != result and (result == "failed" or not busy):
        actions.append(Patch("PersistentVolume", objects.name(pv), None,
                             objects.annotations_patch({keys.JOB_RESULT: result})))
    if busy:
        return actions, f"still used by {', '.join(sorted(busy))}"
    if not releases(pod) or not config.release_on_pod_completion:
        return actions, ("release on pod completion is off for this class"
                         if not config.release_on_pod_completion else
                         "restart policy keeps the claim")
    ns, name = objects.namespace(pvc), objects.name(pvc)
    if not objects.is_deleting(pvc):
        write = objects.annotations_of(pv).get(keys.VOLUME_PREFIX + "write") == "true"
        effective = "failed" if current == "failed" else result
        what = release.commit_phrase(write, effective)
        actions.append(Event(objects.ref(pvc), "Normal", "ReleasedOnPodCompletion",
                             f"pod {objects.name(pod)} {phase_word(pod)}: deleting the claim so "
                             f"its volume is torn down now ({what})"))
        actions.append(Delete("PersistentVolumeClaim", name, ns, objects.uid(pvc)))
    lift = objects.remove_finalizer_patch(pvc, keys.PVC_PROTECTION)
    if lift:
        actions.append(Patch("PersistentVolumeClaim", name, ns, lift))
    return actions, "released" if actions else "already released"


def phase_word(pod: Obj) -> str:
    return {"Succeeded": "succeeded", "Failed": "failed"}.get(
        objects.status(pod).get("phase", ""), "ended")
