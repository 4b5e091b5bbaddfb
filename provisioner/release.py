"""Release: a cachesync PV whose claim is gone is torn down on its node, then deleted.

    PV Released (or deleted once unbound) ─► teardown helper Pod on the node (JOB_RESULT from the
    PV's cachesync.io/job-result, CACHE_WRITE from its record) ─► Pod deleted, finalizer
    cachesync.io/teardown lifted, PV deleted

A failed or timed-out teardown is retried with backoff; after ``helper_attempts`` failures, or
at once when the node no longer exists, the PV is let go with a Warning event (a gone node has
nothing left to clean; a live one is cleaned by ``cachesync gc``), so no PV is stuck forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import keys, objects
from .actions import Delete, Event, Outcome, Patch
from .config import Settings
from .errors import ClaimError
from .helper import JobResult
from .helperpod import HelperRun, drive
from .objects import Obj
from .volume import VolumeRecord


@dataclass(frozen=True)
class VolumeView:
    pv: Obj
    node: Obj | None = None          # the node of the record (None: gone)
    teardown_pod: Obj | None = None


def is_ours(pv: Obj | None) -> bool:
    return objects.annotations_of(pv).get(keys.PROVISIONED_BY) == keys.PROVISIONER


def needs_release(pv: Obj) -> bool:
    phase = objects.status(pv).get("phase")
    return phase in ("Released", "Failed") or (objects.is_deleting(pv) and phase != "Bound")


def job_result(pv: Obj) -> JobResult:
    value = objects.annotations_of(pv).get(keys.JOB_RESULT)
    if value == "succeeded":
        return "succeeded"
    return "failed" if value == "failed" else "unknown"


def commit_phrase(write: bool, result: JobResult) -> str:
    if not write:
        return "read-only volume: nothing is committed"
    if result == "failed":
        return "the job failed: its changes are discarded"
    return f"writable volume, job {result}: changes are committed"


def _let_go(pv: Obj) -> list:
    out: list = []
    patch = objects.remove_finalizer_patch(pv, keys.VOLUME_FINALIZER)
    if patch:
        out.append(Patch("PersistentVolume", objects.name(pv), None, patch))
    if not objects.is_deleting(pv):
        out.append(Delete("PersistentVolume", objects.name(pv), None, objects.uid(pv)))
    return out


def reconcile_volume(view: VolumeView, settings: Settings, now: float) -> Outcome:
    pv = view.pv
    if not is_ours(pv):
        return Outcome(note="not a cachesync volume")
    if not needs_release(pv):
        return Outcome(note="in use or not yet bound")
    if keys.VOLUME_FINALIZER not in objects.finalizers(pv):
        return Outcome(_let_go(pv), note="torn down; deleting")
    try:
        record = VolumeRecord.from_annotations(objects.annotations_of(pv),
                                               f"PersistentVolume {objects.name(pv)}")
    except ClaimError as e:
        return Outcome([Event(objects.ref(pv), "Warning", e.reason,
                              f"{e}; cannot tear down: fix the annotation, or remove finalizer "
                              f"{keys.VOLUME_FINALIZER} and run `cachesync gc` on the node")],
                       note="broken record")
    out = Outcome()
    if view.node is None:
        out.note = "node gone"
        return out.add(Event(objects.ref(pv), "Warning", "NodeGone",
                             f"node {record.node} no longer exists: nothing to tear down there; "
                             "deleting the volume"), *_let_go(pv))
    result = job_result(pv)
    return drive(HelperRun(
        "teardown", pv, record, view.teardown_pod,
        start_reason="TearingDown",
        start_message=f"tearing down on node {record.node}: "
                      f"{commit_phrase(record.write, result)}",
        give_up_reason="TeardownAbandoned",
        give_up_message=lambda failures: (
            f"teardown failed {failures} times; deleting the volume anyway: run `cachesync gc` "
            f"on node {record.node} to remove what is left"),
        give_up=_let_go(pv),
        done=_let_go(pv), done_note="torn down",
        done_reason="TornDown", done_message=f"volume removed from node {record.node}",
        job_result=result,
    ), settings, now, out)
