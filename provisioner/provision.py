"""Provisioning: from a pending claim of a cachesync class to a bound hostPath PV.

    claim pending, node selected ─► finalizer cachesync.io/provisioning on the claim
        ─► setup helper Pod on the node ─► PV (record, finalizer cachesync.io/teardown)
        ─► Kubernetes binds it ─► setup Pod deleted, claim finalizer lifted

A failed or timed-out setup is retried with backoff; after ``helper_attempts`` failures the
selected-node annotation is removed so the scheduler may pick again. A claim deleted half way
(finalizer still on it) gets a cleanup helper (teardown that never commits) before it may go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import attempts, claims, classes, keys, objects, policy
from .actions import Create, Delete, Event, Outcome, Patch
from .config import Settings
from .errors import ClaimError
from .helper import Phase, evaluate, force_delete
from .helperpod import HelperRun, drive
from .objects import Obj
from .volume import VolumeRecord, persistent_volume, pv_name_for


@dataclass(frozen=True)
class ClaimView:
    """A claim and everything its provisioning depends on, as read from the API."""

    pvc: Obj
    storage_class: Obj | None
    node: Obj | None = None          # the selected node (None: no annotation, or node gone)
    namespace: Obj | None = None     # the claim's Namespace (labels for the write policy)
    pv: Obj | None = None            # PV pvc-<uid>, once made
    setup_pod: Obj | None = None
    cleanup_pod: Obj | None = None


def _node_name(view: ClaimView) -> str | None:
    return objects.annotations_of(view.pvc).get(keys.SELECTED_NODE) or None


def build_record(request: claims.ClaimRequest, decision: policy.WriteDecision, node: Obj,
                 settings: Settings) -> VolumeRecord:
    pv_name = pv_name_for(request.uid)
    node_name = objects.name(node)
    return VolumeRecord(
        pv_name=pv_name, node=node_name,
        hostname=objects.labels(node).get(keys.HOSTNAME_LABEL, node_name),
        vol_dir=f"{settings.volume_base.rstrip('/')}/{pv_name}",
        pvc_namespace=request.namespace, pvc_name=request.name, pvc_uid=request.uid,
        cache_namespace=request.cache_namespace, cache_name=request.cache_name,
        write=decision.write, size_bytes=request.size_bytes,
        capacity=request.capacity, storage_class=request.config.name)


def _remove_finalizer(pvc: Obj) -> list[Any]:
    patch = objects.remove_finalizer_patch(pvc, keys.CLAIM_FINALIZER)
    return [Patch("PersistentVolumeClaim", objects.name(pvc), objects.namespace(pvc), patch)] \
        if patch else []


def reconcile_claim(view: ClaimView, settings: Settings, now: float) -> Outcome:
    pvc = view.pvc
    if objects.is_deleting(pvc) and keys.CLAIM_FINALIZER in objects.finalizers(pvc):
        return _cleanup(view, settings, now)     # even if its class is gone meanwhile
    if not classes.is_ours(view.storage_class):
        return Outcome(note="not a cachesync claim")
    if objects.is_deleting(pvc):
        return Outcome(note="being deleted")
    if view.pv is not None or objects.spec(pvc).get("volumeName"):
        return _finish(view, settings)
    if view.node is not None and evaluate(view.setup_pod, now, settings.helper_timeout).phase \
            is Phase.SUCCEEDED:
        return _make_pv(view, settings)
    try:
        request = claims.read(pvc, view.storage_class)  # type: ignore[arg-type]  # is_ours checked it
    except ClaimError as e:
        return Outcome([Event(objects.ref(pvc), "Warning", e.reason, str(e))],
                       note="invalid claim")
    node_name = _node_name(view)
    if node_name is None:
        return Outcome(note="waiting for the scheduler to select a node")
    if view.node is None:
        return _node_gone(view, node_name, settings)
    decision = policy.decide(request.config.policy, request.requested_write, request.namespace,
                             objects.labels(view.namespace))
    record = build_record(request, decision, view.node, settings)
    return _setup(view, record, decision, settings, now)


def _make_pv(view: ClaimView, settings: Settings) -> Outcome:
    """Setup succeeded: the PV, from the record the setup Pod ran with (the claim or the policy
    may have changed since; re-checking them now could strand the volume on the node)."""
    pod = view.setup_pod or {}
    try:
        done = VolumeRecord.from_annotations(objects.annotations_of(pod),
                                             f"Pod {objects.name(pod)}")
    except ClaimError as e:
        return Outcome([Event(objects.ref(view.pvc), "Warning", e.reason, str(e))],
                       note="setup pod record unreadable")
    return Outcome([
        Create("PersistentVolume", persistent_volume(done)),
        Event(objects.ref(view.pvc), "Normal", "ProvisioningSucceeded",
              f"volume {done.pv_name} ready on node {done.node}: cache {done.cache}, "
              f"{'writable' if done.write else 'read-only'}"),
        Delete("Pod", objects.name(pod), settings.namespace, objects.uid(pod) or None),
    ], note="PV created")


def _setup(view: ClaimView, record: VolumeRecord, decision: policy.WriteDecision,
           settings: Settings, now: float) -> Outcome:
    """Start, watch, and retry the setup helper (its success is _make_pv)."""
    pvc = view.pvc
    out = Outcome()
    add = objects.add_finalizer_patch(pvc, keys.CLAIM_FINALIZER)
    if add:
        out.add(Patch("PersistentVolumeClaim", record.pvc_name, record.pvc_namespace, add))
    denied = [Event(objects.ref(pvc), "Warning", "WriteDenied",
                    f"annotation {keys.WRITE}=true ignored: {decision.reason}")] \
        if decision.denied else []
    return drive(HelperRun(
        "setup", pvc, record, view.setup_pod,
        start_reason="Provisioning",
        start_message=f"setting up cache {record.cache} on node {record.node}, {decision.reason}",
        start_also=denied,
        give_up_reason="ProvisioningFailed",
        give_up_message=lambda failures: (
            f"setup failed {failures} times on node {record.node}; asking the scheduler to "
            "select a node again"),
        give_up=[Patch("PersistentVolumeClaim", record.pvc_name, record.pvc_namespace,
                       objects.annotations_patch({keys.SELECTED_NODE: None,
                                                  **attempts.reset("setup")}))],
    ), settings, now, out)


def _node_gone(view: ClaimView, node_name: str, settings: Settings) -> Outcome:
    """The selected node no longer exists: let the scheduler pick another one."""
    pvc = view.pvc
    out = Outcome(note="selected node is gone")
    out.add(Event(objects.ref(pvc), "Warning", "NodeNotFound",
                  f"selected node {node_name} does not exist; asking the scheduler to select "
                  "a node again"),
            Patch("PersistentVolumeClaim", objects.name(pvc), objects.namespace(pvc),
                  objects.annotations_patch({keys.SELECTED_NODE: None, **attempts.reset("setup")})))
    if view.setup_pod is not None and not objects.is_deleting(view.setup_pod):
        out.add(Delete("Pod", objects.name(view.setup_pod), settings.namespace,
                       objects.uid(view.setup_pod)))
    return out


def _finish(view: ClaimView, settings: Settings) -> Outcome:
    """The PV exists (or the claim is bound): the PV's own finalizer guards it from now on."""
    out = Outcome(note="provisioned")
    if view.setup_pod is not None and not objects.is_deleting(view.setup_pod):
        out.add(Delete("Pod", objects.name(view.setup_pod), settings.namespace,
                       objects.uid(view.setup_pod)))
    out.add(*_remove_finalizer(view.pvc))
    return out


def _cleanup_record(view: ClaimView, settings: Settings) -> VolumeRecord | None:
    if view.setup_pod is not None:
        try:
            return VolumeRecord.from_annotations(objects.annotations_of(view.setup_pod), "setup Pod")
        except ClaimError:
            pass
    if view.storage_class is None:
        return None
    try:
        request = claims.read(view.pvc, view.storage_class)
    except ClaimError:
        return None
    return build_record(request, policy.WriteDecision(False, "cleanup"), view.node or {},
                        settings)


def _cleanup(view: ClaimView, settings: Settings, now: float) -> Outcome:
    """A claim deleted before its PV existed: undo a setup that may have run, then let it go."""
    pvc = view.pvc
    out = Outcome()
    if view.pv is not None:
        out.note = "PV exists; its teardown takes over"
        return out.add(*_remove_finalizer(pvc))
    setup = evaluate(view.setup_pod, now, settings.helper_timeout)
    if setup.phase in (Phase.RUNNING, Phase.DELETING, Phase.STUCK):
        if setup.phase is Phase.STUCK:
            out.add(force_delete(view.setup_pod, settings))
        out.requeue_after, out.note = settings.poll_interval, "waiting for setup to end"
        return out
    node_name = _node_name(view)
    if node_name is None or view.node is None:
        out.note = "no node to clean up on"
        if view.setup_pod is not None:
            out.add(Delete("Pod", objects.name(view.setup_pod), settings.namespace,
                           objects.uid(view.setup_pod)))
        return out.add(*_remove_finalizer(pvc))
    record = _cleanup_record(view, settings)
    if record is None:
        out.note = "claim unreadable: nothing was set up"
        return out.add(*_remove_finalizer(pvc))
    if view.setup_pod is not None:
        out.add(Delete("Pod", objects.name(view.setup_pod), settings.namespace, setup.pod_uid))
    return drive(HelperRun(
        "cleanup", pvc, record, view.cleanup_pod,
        start_reason="CleaningUp",
        start_message=f"claim deleted before its volume was ready: removing what setup made on "
                      f"node {record.node} (nothing is committed)",
        give_up_reason="CleanupAbandoned",
        give_up_message=lambda failures: (
            f"cleanup failed {failures} times; run `cachesync gc` on node {record.node} to "
            "remove what is left"),
        give_up=_remove_finalizer(pvc),
        done=_remove_finalizer(pvc), done_note="cleaned up",
    ), settings, now, out)
