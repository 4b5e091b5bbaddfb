"""Release decisions (provisioner/release.py): teardown on the node, then the PV goes; failures,
retries, gone nodes and broken records."""

from __future__ import annotations

import pytest

from k8s_objects import PV_NAME, PVC_UID, T0, T0_TEXT, finished, node, running, with_
from provisioner import keys
from provisioner.actions import Create, Delete, Event, Patch
from provisioner.config import Settings
from provisioner.helper import helper_pod
from provisioner.objects import format_time
from provisioner.release import VolumeView, reconcile_volume
from provisioner.volume import VolumeRecord, persistent_volume

S = Settings(helper_attempts=2, retry_base=10, retry_max=100, helper_timeout=120)
RECORD = VolumeRecord(pv_name=PV_NAME, node="worker-a", hostname="worker-a",
                      vol_dir=f"/var/lib/cachesync/pv/{PV_NAME}", pvc_namespace="ci",
                      pvc_name="gradle-cache", pvc_uid=PVC_UID, cache_namespace="ci",
                      cache_name="gradle", write=True,
                      size_bytes=2**30, capacity="1Gi", storage_class="cachesync")


def pv(phase="Released", record=RECORD, **annotations) -> dict:
    out = persistent_volume(record)
    out["metadata"].update(uid="77777777-8888-4999-8aaa-bbbbbbbbbbbb", resourceVersion="5001",
                           creationTimestamp=T0_TEXT)
    out["metadata"]["finalizers"] = ["kubernetes.io/pv-protection", keys.VOLUME_FINALIZER]
    out["metadata"]["annotations"].update(annotations)
    out["status"] = {"phase": phase}
    return out


def teardown(result="unknown", record=RECORD) -> dict:
    return with_(helper_pod(record, "teardown", S, result),
                 **{"metadata.uid": "cccccccc-dddd-4eee-8fff-000000000000",
                    "metadata.creationTimestamp": T0_TEXT})


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def run(volume, **kw):
    kw.setdefault("node", node())
    return reconcile_volume(VolumeView(volume, **kw), S, T0)


@pytest.mark.parametrize("volume", [
    pv("Bound"), pv("Available"), pv("Pending"),
    with_(pv("Bound"), **{"metadata.deletionTimestamp": T0_TEXT}),   # still in use
    with_(pv(), **{"metadata.annotations": {keys.PROVISIONED_BY: "rancher.io/local-path"}}),
])
def test_nothing_to_do(volume):
    out = run(volume)
    assert out.actions == [] and out.requeue_after is None


@pytest.mark.parametrize("annotation, expected, phrase", [
    ("succeeded", "succeeded", "changes are committed"),
    ("failed", "failed", "changes are discarded"),
    (None, "unknown", "job unknown: changes are committed"),
    ("maybe", "unknown", "job unknown"),
])
def test_released_volume_gets_a_teardown_with_the_job_result(annotation, expected, phrase):
    volume = pv(**({keys.JOB_RESULT: annotation} if annotation else {}))
    out = run(volume)
    create, ev = out.actions
    pod = create.body
    assert pod["metadata"]["name"] == f"cachesync-teardown-{PV_NAME}"
    assert pod["spec"]["nodeName"] == "worker-a"
    assert pod["spec"]["containers"][0]["command"] == ["cachesync", "helper", "teardown"]
    env = env_of(pod)
    assert env["JOB_RESULT"] == expected and env["CACHE_WRITE"] == "true"
    assert env["VOL_DIR"] == RECORD.vol_dir and env["CACHE_NAME"] == "gradle"
    assert ev.reason == "TearingDown" and phrase in ev.message
    assert ev.involved == {"apiVersion": "v1", "kind": "PersistentVolume", "name": PV_NAME,
                           "uid": "77777777-8888-4999-8aaa-bbbbbbbbbbbb", "resourceVersion": "5001"}


def test_read_only_volume_says_nothing_is_committed():
    ro = VolumeRecord(**{**RECORD.as_dict(), "write": False})
    out = run(pv(record=ro, **{keys.JOB_RESULT: "succeeded"}))
    assert env_of(out.of(Create)[0].body)["CACHE_WRITE"] == "false"
    assert "read-only volume: nothing is committed" in out.events()[0].message


def test_deleted_before_bound_is_torn_down_too():
    volume = with_(pv("Available"), **{"metadata.deletionTimestamp": T0_TEXT})
    assert [type(a) for a in run(volume).actions] == [Create, Event]


def test_running_teardown_is_waited_for():
    out = run(pv(), teardown_pod=running(teardown()))
    assert out.actions == [] and out.requeue_after == S.poll_interval


def test_teardown_done_lifts_finalizer_and_deletes_pv():
    volume = pv()
    out = run(volume, teardown_pod=finished(teardown(), "Succeeded"))
    ev, delete_pod, patch, delete_pv = out.actions
    assert ev.reason == "TornDown" and ev.type == "Normal"
    assert delete_pod.kind == "Pod" and delete_pod.uid == "cccccccc-dddd-4eee-8fff-000000000000"
    assert patch.kind == "PersistentVolume" and patch.patch == [
        {"op": "test", "path": "/metadata/finalizers/1", "value": keys.VOLUME_FINALIZER},
        {"op": "remove", "path": "/metadata/finalizers/1"}]
    assert isinstance(delete_pv, Delete) and delete_pv.kind == "PersistentVolume"
    assert delete_pv.uid == volume["metadata"]["uid"]


def test_teardown_done_on_a_deleting_pv_does_not_delete_again():
    volume = with_(pv(), **{"metadata.deletionTimestamp": T0_TEXT})
    out = run(volume, teardown_pod=finished(teardown(), "Succeeded"))
    assert not [a for a in out.of(Delete) if a.kind == "PersistentVolume"]
    assert out.of(Patch)


def test_teardown_failure_is_retried_with_backoff_then_abandoned():
    pod = finished(teardown(), "Failed", 1, "buildah commit: lock timeout")
    out = run(pv(), teardown_pod=pod)
    ev, patch, delete = out.actions
    assert ev.reason == "TeardownFailed" and "lock timeout" in ev.message
    assert "attempt 1 of 2" in ev.message
    assert patch.kind == "PersistentVolume"
    assert patch.patch["metadata"]["annotations"]["cachesync.io/teardown-failures"] == "1"
    assert delete.kind == "Pod"
    waiting = pv(**{"cachesync.io/teardown-failures": "1",
                    "cachesync.io/teardown-retry-after": format_time(T0 + 9)})
    out = run(waiting)
    assert out.actions == [] and out.requeue_after == pytest.approx(9)
    timed_out = running(teardown(), created=format_time(T0 - 500))
    out = run(pv(**{"cachesync.io/teardown-failures": "1"}), teardown_pod=timed_out)
    assert "timed out" in out.events()[0].message and "attempt 2 of 2" in out.events()[0].message
    out = run(pv(**{"cachesync.io/teardown-failures": "2"}))
    ev, patch, delete_pv = out.actions
    assert ev.reason == "TeardownAbandoned" and "cachesync gc" in ev.message
    assert delete_pv.kind == "PersistentVolume"


def test_gone_node_does_not_leave_the_pv_stuck():
    out = run(pv(), node=None)
    ev, patch, delete_pv = out.actions
    assert ev.type == "Warning" and ev.reason == "NodeGone" and "worker-a" in ev.message
    assert patch.patch[-1]["op"] == "remove" and delete_pv.kind == "PersistentVolume"


def test_released_without_our_finalizer_is_just_deleted():
    volume = with_(pv(), **{"metadata.finalizers": ["kubernetes.io/pv-protection"]})
    out = run(volume)
    assert [(type(a), a.kind) for a in out.actions] == [(Delete, "PersistentVolume")]


def test_broken_record_is_reported_and_kept():
    volume = with_(pv(), **{f"metadata|annotations|{keys.VOLUME_PREFIX}size-bytes": "lots"})
    out = run(volume)
    assert len(out.actions) == 1 and out.actions[0].reason == "BrokenVolumeRecord"
    assert "size-bytes" in out.actions[0].message
    volume = with_(pv(), **{f"metadata|annotations|{keys.VOLUME_PREFIX}vol-dir": ...})
    assert "vol-dir is missing" in run(volume).actions[0].message


def test_teardown_pod_stuck_terminating_on_a_dead_node_is_force_deleted():
    stuck = with_(running(teardown()), **{"metadata.deletionTimestamp": format_time(T0 - 200)})
    out = run(pv(), teardown_pod=stuck)
    (delete,) = out.actions
    assert delete.kind == "Pod" and delete.force is True
    assert out.requeue_after == S.poll_interval
