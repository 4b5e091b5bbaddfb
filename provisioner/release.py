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

from . import attempts, keys, objects
from .actions import Create, Delete, Event, Outcome, Patch
from .config import Settings
from .errors import ClaimError
from .helper import JobResult, Phase, evaluate, force_delete, helper_pod, pod_name
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
    state = evaluate(view.teardown_pod, now, settings.helper_timeout)
    name = pod_name("teardown", record.pv_name)
    if state.phase is Phase.ABSENT:
        tries = attempts.Attempts.of(pv, "teardown")
        if tries.exhausted(settings):
            out.note = "teardown attempts exhausted"
            return out.add(Event(objects.ref(pv), "Warning", "TeardownAbandoned",
                                 f"teardown failed {tries.failures} times; deleting the volume "
                                 f"anyway: run `cachesync gc` on node {record.node} to remove "
                                 "what is left"), *_let_go(pv))
        wait = tries.wait(now)
        if wait is not None:
            out.requeue_after, out.note = wait, "backing off after a failed teardown"
            return out
        out.add(Create("Pod", helper_pod(record, "teardown", settings, result)),
                Event(objects.ref(pv), "Normal", "TearingDown",
                      f"tearing down on node {record.node}: {commit_phrase(record.write, result)}"))
        out.requeue_after, out.note = settings.poll_interval, "teardown started"
    elif state.phase in (Phase.RUNNING, Phase.DELETING, Phase.STUCK):
        if state.phase is Phase.STUCK:
            out.add(force_delete(view.teardown_pod, settings))
        out.requeue_after, out.note = settings.poll_interval, f"teardown {state.phase.value}"
    elif state.phase is Phase.SUCCEEDED:
        detail = f": {state.message}" if state.message else ""
        out.add(Event(objects.ref(pv), "Normal", "TornDown",
                      f"volume removed from node {record.node}{detail}"),
                Delete("Pod", name, settings.namespace, state.pod_uid or None), *_let_go(pv))
        out.note = "torn down"
    else:
        actions, tries = attempts.record_failure(pv, state, "teardown", record.node, name,
                                                 settings, now)
        out.add(*actions)
        out.requeue_after, out.note = settings.backoff(tries.failures), "teardown failed"
    return out
