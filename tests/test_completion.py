"""Pod-completion release (provisioner/completion.py): which finished pods release which
claims, what job result teardown gets, and what is left alone."""

from __future__ import annotations

import pytest

from k8s_objects import PV_NAME, PVC_UID, T0_TEXT, build_pod, pvc, storage_class, with_
from provisioner import keys
from provisioner.actions import Delete, Event, Patch
from provisioner.completion import ClaimUse, reconcile_pod
from provisioner.volume import VolumeRecord, persistent_volume

RECORD = VolumeRecord(pv_name=PV_NAME, node="worker-a", hostname="worker-a",
                      vol_dir=f"/var/lib/cachesync/pv/{PV_NAME}", pvc_namespace="ci",
                      pvc_name="gradle-cache", pvc_uid=PVC_UID, cache_namespace="ci",
                      cache_name="gradle", write=True,
                      size_bytes=2**30, capacity="1Gi", storage_class="cachesync")


def bound_pvc(**kw) -> dict:
    return with_(pvc(**kw), **{"spec.volumeName": PV_NAME, "status.phase": "Bound"})


def pv(**annotations) -> dict:
    out = persistent_volume(RECORD)
    out["metadata"]["uid"] = "77777777-8888-4999-8aaa-bbbbbbbbbbbb"
    out["metadata"]["annotations"].update(annotations)
    out["status"] = {"phase": "Bound"}
    return out


def use(pod, claim=None, sc=None, volume=None, others=()) -> dict[str, ClaimUse]:
    return {"gradle-cache": ClaimUse(bound_pvc() if claim is None else claim,
                                     sc or storage_class(), volume or pv(), [pod, *others])}


def kinds(out):
    return [(type(a).__name__, getattr(a, "kind", a.reason if isinstance(a, Event) else ""))
            for a in out.actions]


@pytest.mark.parametrize("policy, phase, result", [
    ("Never", "Succeeded", "succeeded"),
    ("Never", "Failed", "failed"),
    ("OnFailure", "Succeeded", "succeeded"),
])
def test_finished_pod_releases_its_claim(policy, phase, result):
    pod = build_pod(restart_policy=policy, phase=phase)
    out = reconcile_pod(pod, use(pod))
    patch_pv, ev, delete, lift = out.actions
    assert patch_pv.kind == "PersistentVolume" and patch_pv.name == PV_NAME
    assert patch_pv.patch == {"metadata": {"annotations": {keys.JOB_RESULT: result}}}
    assert ev.reason == "ReleasedOnPodCompletion" and ev.involved["kind"] == "PersistentVolumeClaim"
    assert ("discarded" if result == "failed" else "committed") in ev.message
    assert isinstance(delete, Delete) and (delete.kind, delete.namespace, delete.name, delete.uid) \
        == ("PersistentVolumeClaim", "ci", "gradle-cache", PVC_UID)
    assert lift.patch == [
        {"op": "test", "path": "/metadata/finalizers/0", "value": "kubernetes.io/pvc-protection"},
        {"op": "remove", "path": "/metadata/finalizers/0"}]


@pytest.mark.parametrize("policy, phase", [
    ("Never", "Running"), ("Never", "Pending"), ("OnFailure", "Running"),
    ("Always", "Running"), ("Never", "Unknown"),
])
def test_unfinished_pods_release_nothing(policy, phase):
    pod = build_pod(restart_policy=policy, phase=phase)
    assert reconcile_pod(pod, use(pod)).actions == []


def test_on_failure_pod_that_failed_marks_the_volume_failed_but_keeps_the_claim():
    pod = build_pod(restart_policy="OnFailure", phase="Failed")
    out = reconcile_pod(pod, use(pod))
    assert kinds(out) == [("Patch", "PersistentVolume")]
    assert out.actions[0].patch["metadata"]["annotations"][keys.JOB_RESULT] == "failed"


def test_claim_still_used_by_a_running_pod_is_not_released():
    pod = build_pod(phase="Succeeded")
    other = build_pod("build-2", phase="Running", uid="22222222-3333-4444-8555-666666666666")
    out = reconcile_pod(pod, use(pod, others=[other]))
    assert out.actions == [] and "build-2" in out.note
    failed = build_pod(phase="Failed")
    out = reconcile_pod(failed, use(failed, others=[other]))
    assert kinds(out) == [("Patch", "PersistentVolume")]   # the failure is kept for teardown


def test_last_of_several_pods_releases_with_the_worst_result():
    pod = build_pod(phase="Succeeded")
    other = build_pod("build-2", phase="Failed", uid="22222222-3333-4444-8555-666666666666")
    out = reconcile_pod(pod, use(pod, others=[other]))
    assert out.of(Patch)[0].patch["metadata"]["annotations"][keys.JOB_RESULT] == "failed"
    assert out.of(Delete)


def test_a_recorded_failure_is_never_overwritten():
    pod = build_pod(phase="Succeeded")
    out = reconcile_pod(pod, use(pod, volume=pv(**{keys.JOB_RESULT: "failed"})))
    assert not [a for a in out.of(Patch) if a.kind == "PersistentVolume"]
    assert "discarded" in out.events()[0].message
    assert out.of(Delete)


def test_opt_out_per_storage_class():
    pod = build_pod(phase="Succeeded")
    out = reconcile_pod(pod, use(pod, sc=storage_class(releaseOnPodCompletion="false")))
    assert kinds(out) == [("Patch", "PersistentVolume")]      # result recorded, claim kept
    assert "off for this class" in out.note
    failed = build_pod(phase="Failed")
    out = reconcile_pod(failed, use(failed, sc=storage_class(releaseOnPodCompletion="false")))
    assert not out.of(Delete)


@pytest.mark.parametrize("claim, sc, volume", [
    (None, None, None),   # filled below: claim gone
    (pvc(), None, None),   # not bound
    (bound_pvc(), with_(storage_class(), provisioner="ebs.csi.aws.com"), None),
    (bound_pvc(), None, with_(pv(), **{"metadata.annotations": {}})),   # PV not ours
    (bound_pvc(), storage_class(bogus="x"), None),   # class unreadable now
])
def test_claims_that_are_not_ours_to_release(claim, sc, volume):
    pod = build_pod(phase="Succeeded")
    uses = use(pod, claim=claim if claim is not None else {}, sc=sc, volume=volume)
    if claim is None:
        uses = {"gradle-cache": ClaimUse(None)}
    assert reconcile_pod(pod, uses).actions == []


def test_already_deleting_claim_only_gets_pvc_protection_lifted():
    pod = build_pod(phase="Succeeded")
    claim = with_(bound_pvc(), **{"metadata.deletionTimestamp": T0_TEXT})
    out = reconcile_pod(pod, use(pod, claim=claim, volume=pv(**{keys.JOB_RESULT: "succeeded"})))
    assert kinds(out) == [("Patch", "PersistentVolumeClaim")]
    claim = with_(claim, **{"metadata.finalizers": []})
    assert reconcile_pod(pod, use(pod, claim=claim, volume=pv(
        **{keys.JOB_RESULT: "succeeded"}))).actions == []


def test_ephemeral_claim_is_released_only_when_owned_by_the_pod():
    pod = build_pod(claims=(), ephemeral=("cache",), phase="Succeeded")
    claim = bound_pvc(name="build-1-cache")
    owned = with_(claim, **{"metadata.ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "build-1", "uid": pod["metadata"]["uid"],
         "controller": True, "blockOwnerDeletion": True}]})
    uses = {"build-1-cache": ClaimUse(owned, storage_class(), pv(), [pod])}
    out = reconcile_pod(pod, uses)
    assert [a.name for a in out.of(Delete)] == ["build-1-cache"]
    uses = {"build-1-cache": ClaimUse(claim, storage_class(), pv(), [pod])}
    assert reconcile_pod(pod, uses).actions == []
