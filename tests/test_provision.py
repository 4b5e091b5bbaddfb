"""Provisioning decisions (provisioner/provision.py) over real object shapes: every step,
every refusal, failures, retries and claims deleted half way."""

from __future__ import annotations

import pytest

from k8s_objects import (PV_NAME, PVC_UID, T0, T0_TEXT, finished, namespace, node, pvc, running,
                         storage_class, with_)
from provisioner import keys
from provisioner.actions import Create, Delete, Event, Patch
from provisioner.config import Settings
from provisioner.helper import helper_pod
from provisioner.objects import format_time
from provisioner.provision import ClaimView, reconcile_claim
from provisioner.volume import VolumeRecord

S = Settings(helper_image="registry.example/cachesync:test", helper_attempts=3, retry_base=10,
             retry_max=100, helper_timeout=120, poll_interval=5)
FIN = keys.CLAIM_FINALIZER


def view(claim=None, **kw) -> ClaimView:
    kw.setdefault("storage_class", storage_class())
    kw.setdefault("node", node())
    kw.setdefault("namespace", namespace())
    return ClaimView(pvc=claim if claim is not None else pvc(), **kw)


def with_finalizer(claim: dict) -> dict:
    return with_(claim, **{"metadata.finalizers": ["kubernetes.io/pvc-protection", FIN]})


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def setup_pod(claim=None, write=True) -> dict:
    """The setup pod the provisioner made for ``claim`` (as created, no status)."""
    out = reconcile_claim(view(with_finalizer(claim or pvc())), S, T0)
    pod = out.of(Create)[0].body
    pod = with_(pod, **{"metadata.uid": "11111111-2222-4333-8444-555555555555",
                        "metadata.creationTimestamp": T0_TEXT})
    assert env_of(pod)["CACHE_WRITE"] == ("true" if write else "false")
    return pod


def test_not_a_cachesync_class_is_left_alone():
    out = reconcile_claim(view(storage_class=with_(storage_class(), provisioner="ebs.csi.aws.com")),
                          S, T0)
    assert out.actions == [] and out.requeue_after is None
    assert reconcile_claim(view(storage_class=None), S, T0).actions == []


@pytest.mark.parametrize("claim, sc, reason, fragment", [
    (with_(pvc(), **{"spec.accessModes": ["ReadWriteMany"]}), None, "UnsupportedAccessMode",
     "ReadWriteOnce"),
    (with_(pvc(), **{"spec.accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}), None,
     "UnsupportedAccessMode", "ReadOnlyMany"),
    (with_(pvc(), **{"spec.volumeMode": "Block"}), None, "UnsupportedVolumeMode", "Block"),
    (with_(pvc(), **{"spec.dataSource": {"kind": "VolumeSnapshot", "name": "s"}}), None,
     "UnsupportedDataSource", "dataSource"),
    (with_(pvc(), **{"spec.selector": {"matchLabels": {"a": "b"}}}), None, "UnsupportedSelector",
     "selector"),
    (with_(pvc(), **{"spec.resources": {}}), None, "InvalidRequest", "requests.storage"),
    (with_(pvc(), **{"spec.resources.requests.storage": "ten gigs"}), None, "InvalidRequest",
     "ten gigs"),
    (pvc(annotations={keys.CACHE_NAME: "Gradle Cache"}), None, "InvalidCacheName",
     "'Gradle Cache'"),
    (pvc(annotations={keys.CACHE_NAME: "a..b"}), None, "InvalidCacheName", "cache-name"),
    (pvc(annotations={keys.WRITE: "yes"}), None, "InvalidAnnotation", "cachesync.io/write"),
    (pvc(annotations={"cachesync.io/cache": "gradle"}), None, "InvalidAnnotation",
     "unknown annotation cachesync.io/cache"),
    (pvc(), storage_class(writeNamespace="ci"), "InvalidStorageClass", "writeNamespace"),
    (pvc(), with_(storage_class(), volumeBindingMode="Immediate"), "InvalidStorageClass",
     "WaitForFirstConsumer"),
    (pvc(node=None), with_(storage_class(), volumeBindingMode="Immediate"),
     "InvalidStorageClass", "WaitForFirstConsumer"),
])
def test_bad_claims_get_one_warning_and_nothing_is_made(claim, sc, reason, fragment):
    out = reconcile_claim(view(claim, storage_class=sc or storage_class()), S, T0)
    assert len(out.actions) == 1, out.actions
    ev = out.actions[0]
    assert isinstance(ev, Event) and ev.type == "Warning" and ev.reason == reason
    assert fragment in ev.message
    assert ev.involved["kind"] == "PersistentVolumeClaim" and ev.involved["uid"] == PVC_UID


def test_waits_for_the_scheduler():
    out = reconcile_claim(view(pvc(node=None)), S, T0)
    assert out.actions == [] and "scheduler" in out.note


def test_fresh_claim_gets_finalizer_then_setup_pod_then_event():
    out = reconcile_claim(view(pvc(annotations={keys.CACHE_NAME: "gradle"})), S, T0)
    patch, create, event = out.actions
    assert isinstance(patch, Patch) and patch.kind == "PersistentVolumeClaim"
    assert patch.patch == [{"op": "add", "path": "/metadata/finalizers/-", "value": FIN}]
    assert isinstance(create, Create) and create.kind == "Pod"
    pod = create.body
    assert pod["metadata"]["name"] == f"cachesync-setup-{PV_NAME}"
    assert pod["metadata"]["namespace"] == "cachesync"
    spec = pod["spec"]
    assert spec["nodeName"] == "worker-a" and spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 120
    c = spec["containers"][0]
    assert c["image"] == "registry.example/cachesync:test"
    assert c["command"] == ["cachesync", "helper", "setup"]
    assert c["securityContext"]["privileged"] is True
    assert c["volumeMounts"] == [{"name": "node-root", "mountPath": "/var/lib/cachesync",
                                  "mountPropagation": "Bidirectional"}]
    assert spec["volumes"][0]["hostPath"]["path"] == "/var/lib/cachesync"
    assert env_of(pod) == {
        "VOL_DIR": f"/var/lib/cachesync/pv/{PV_NAME}", "VOL_NAME": PV_NAME,
        "VOL_MODE": "Filesystem", "VOL_SIZE_BYTES": str(10 * 2**30), "PVC_NAMESPACE": "ci",
        "PVC_NAME": "gradle-cache", "CACHE_NAME": "gradle", "CACHE_WRITE": "true",
        "CACHESYNC_ROOT": "/var/lib/cachesync"}
    assert isinstance(event, Event) and event.type == "Normal" and event.reason == "Provisioning"
    assert "ci/gradle" in event.message and "worker-a" in event.message
    assert out.requeue_after == S.poll_interval


def test_no_finalizer_patch_when_present_and_cache_name_defaults_to_claim_name():
    out = reconcile_claim(view(with_finalizer(pvc())), S, T0)
    assert [type(a) for a in out.actions] == [Create, Event]
    assert env_of(out.actions[0].body)["CACHE_NAME"] == "gradle-cache"


def test_write_asked_where_not_allowed_is_read_only_with_a_warning():
    sc = storage_class(writeNamespaces="ci")
    claim = pvc(namespace="ci-pr", annotations={keys.WRITE: "true"})
    out = reconcile_claim(view(claim, storage_class=sc, namespace=namespace("ci-pr")), S, T0)
    assert env_of(out.of(Create)[0].body)["CACHE_WRITE"] == "false"
    warnings = [e for e in out.events() if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["WriteDenied"]
    assert "ci-pr" in warnings[0].message


def test_write_by_namespace_label_selector():
    sc = storage_class(writeNamespaceSelector="cachesync.io/trusted=true")
    trusted = namespace("ci", {"cachesync.io/trusted": "true"})
    out = reconcile_claim(view(storage_class=sc, namespace=trusted), S, T0)
    assert env_of(out.of(Create)[0].body)["CACHE_WRITE"] == "true"
    out = reconcile_claim(view(storage_class=sc, namespace=namespace("ci")), S, T0)
    assert env_of(out.of(Create)[0].body)["CACHE_WRITE"] == "false"


def test_selected_node_gone_asks_scheduler_again():
    stale = setup_pod()
    out = reconcile_claim(view(with_finalizer(pvc(node="worker-x")), node=None, setup_pod=stale),
                          S, T0)
    ev, patch, delete = out.actions
    assert ev.type == "Warning" and ev.reason == "NodeNotFound" and "worker-x" in ev.message
    assert patch.patch["metadata"]["annotations"][keys.SELECTED_NODE] is None
    assert isinstance(delete, Delete) and delete.name == stale["metadata"]["name"]


def test_running_setup_is_waited_for():
    pod = running(setup_pod(), created=format_time(T0 - 60))
    out = reconcile_claim(view(with_finalizer(pvc()), setup_pod=pod), S, T0)
    assert out.actions == [] and out.requeue_after == S.poll_interval


@pytest.mark.parametrize("pod_state, fragment", [
    (lambda p: finished(p, "Failed", 1, "buildah from: no space left on device"),
     "no space left on device"),
    (lambda p: finished(p, "Failed", 137, reason="OOMKilled"), "exit 137: OOMKilled"),
    (lambda p: with_(finished(p, "Failed"), **{"status.containerStatuses": [],
                                               "status.reason": "DeadlineExceeded",
                                               "status.message": "Pod was active too long"}),
     "DeadlineExceeded"),
    (lambda p: running(p, created=format_time(T0 - 121), waiting="ImagePullBackOff"),
     "timed out"),
])
def test_failed_setup_is_counted_reported_and_deleted(pod_state, fragment):
    pod = pod_state(setup_pod())
    out = reconcile_claim(view(with_finalizer(pvc()), setup_pod=pod), S, T0)
    ev, patch, delete = out.actions
    assert ev.type == "Warning" and ev.reason == "SetupFailed"
    assert fragment in ev.message and "attempt 1 of 3" in ev.message
    assert patch.patch["metadata"]["annotations"] == {
        "cachesync.io/setup-failures": "1", keys.LAST_FAILED_POD: pod["metadata"]["uid"],
        "cachesync.io/setup-retry-after": format_time(T0 + 10)}
    assert isinstance(delete, Delete) and delete.uid == pod["metadata"]["uid"]
    assert out.requeue_after == 10


def test_a_failure_is_counted_once():
    pod = finished(setup_pod(), "Failed")
    claim = with_finalizer(pvc(annotations={"cachesync.io/setup-failures": "1",
                                            keys.LAST_FAILED_POD: pod["metadata"]["uid"]}))
    out = reconcile_claim(view(claim, setup_pod=pod), S, T0)
    assert [type(a) for a in out.actions] == [Delete]


def test_backoff_then_retry_then_give_up():
    retry = format_time(T0 + 15)
    claim = with_finalizer(pvc(annotations={"cachesync.io/setup-failures": "2",
                                            "cachesync.io/setup-retry-after": retry}))
    out = reconcile_claim(view(claim), S, T0)
    assert out.actions == [] and out.requeue_after == pytest.approx(15)
    out = reconcile_claim(view(claim), S, T0 + 16)
    assert [type(a) for a in out.actions] == [Create, Event]
    second = finished(setup_pod(), "Failed", 2, "boom")
    out = reconcile_claim(view(claim, setup_pod=second), S, T0 + 20)
    assert "attempt 3 of 3" in out.events()[0].message
    assert out.of(Patch)[0].patch["metadata"]["annotations"]["cachesync.io/setup-retry-after"] \
        == format_time(T0 + 20 + 40)
    exhausted = with_finalizer(pvc(annotations={"cachesync.io/setup-failures": "3"}))
    out = reconcile_claim(view(exhausted), S, T0 + 100)
    ev, patch = out.actions
    assert ev.reason == "ProvisioningFailed" and "3 times" in ev.message
    assert patch.patch["metadata"]["annotations"] == {
        keys.SELECTED_NODE: None, "cachesync.io/setup-failures": None,
        "cachesync.io/setup-retry-after": None}


def test_succeeded_setup_makes_the_pv_from_the_setup_record():
    pod = finished(setup_pod(), "Succeeded")
    # the policy changed since setup ran: the PV must still say what the volume really is
    later = storage_class(readOnly="true")
    out = reconcile_claim(view(with_finalizer(pvc()), setup_pod=pod, storage_class=later,
                               node=node("worker-a", hostname="ip-10-0-0-7")), S, T0)
    create, ev, delete = out.actions
    pv = create.body
    assert create.kind == "PersistentVolume" and pv["metadata"]["name"] == PV_NAME
    assert pv["metadata"]["finalizers"] == [keys.VOLUME_FINALIZER]
    assert pv["metadata"]["annotations"][keys.PROVISIONED_BY] == "cachesync.io/cache"
    record = VolumeRecord.from_annotations(pv["metadata"]["annotations"], "pv")
    assert record.write is True and record.cache == "ci/gradle-cache"
    assert pv["spec"]["hostPath"] == {"path": f"/var/lib/cachesync/pv/{PV_NAME}",
                                      "type": "Directory"}
    assert pv["spec"]["claimRef"]["uid"] == PVC_UID
    assert pv["spec"]["capacity"] == {"storage": "10Gi"}
    assert pv["spec"]["storageClassName"] == "cachesync"
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == ["worker-a"]  # from the setup record
    assert ev.reason == "ProvisioningSucceeded" and "writable" in ev.message
    assert delete.kind == "Pod" and delete.name == pod["metadata"]["name"]


def test_node_affinity_uses_the_hostname_label():
    out = reconcile_claim(view(with_finalizer(pvc()), node=node("worker-a", "ip-10-0-0-7")),
                          S, T0)
    pod = out.of(Create)[0].body
    record = VolumeRecord.from_annotations(pod["metadata"]["annotations"], "pod")
    assert record.hostname == "ip-10-0-0-7" and record.node == "worker-a"
    assert pod["spec"]["nodeName"] == "worker-a"


def test_pv_exists_lifts_claim_finalizer_and_removes_setup_pod():
    pod = finished(setup_pod(), "Succeeded")
    out = reconcile_claim(view(with_finalizer(pvc()), setup_pod=pod, pv={"metadata": {
        "name": PV_NAME}}), S, T0)
    delete, patch = out.actions
    assert isinstance(delete, Delete) and delete.kind == "Pod"
    assert patch.patch == [{"op": "test", "path": "/metadata/finalizers/1", "value": FIN},
                           {"op": "remove", "path": "/metadata/finalizers/1"}]
    bound = with_(pvc(), **{"spec.volumeName": PV_NAME})
    assert reconcile_claim(view(bound), S, T0).actions == []


# -- a claim deleted half way -----------------------------------------------------------------
def deleting(claim: dict) -> dict:
    return with_(with_finalizer(claim), **{"metadata.deletionTimestamp": T0_TEXT})


def test_deleted_claim_without_our_finalizer_is_left_alone():
    out = reconcile_claim(view(with_(pvc(), **{"metadata.deletionTimestamp": T0_TEXT})), S, T0)
    assert out.actions == []


def test_deleted_claim_waits_for_running_setup():
    pod = running(setup_pod())
    out = reconcile_claim(view(deleting(pvc()), setup_pod=pod), S, T0)
    assert out.actions == [] and out.requeue_after == S.poll_interval


def test_deleted_claim_gets_a_cleanup_that_never_commits():
    pod = finished(setup_pod(), "Succeeded")
    out = reconcile_claim(view(deleting(pvc()), setup_pod=pod), S, T0)
    delete, create, ev = out.actions
    assert delete.name == pod["metadata"]["name"]
    cleanup = create.body
    assert cleanup["metadata"]["name"] == f"cachesync-cleanup-{PV_NAME}"
    assert cleanup["spec"]["containers"][0]["command"] == ["cachesync", "helper", "teardown"]
    env = env_of(cleanup)
    assert env["CACHE_WRITE"] == "false" and env["JOB_RESULT"] == "failed"
    assert env["VOL_DIR"] == f"/var/lib/cachesync/pv/{PV_NAME}"
    assert ev.reason == "CleaningUp"


def test_deleted_claim_cleanup_done_lifts_finalizer():
    cleanup = finished(helper_pod(VolumeRecord.from_annotations(
        setup_pod()["metadata"]["annotations"], "x"), "cleanup", S), "Succeeded")
    out = reconcile_claim(view(deleting(pvc()), cleanup_pod=cleanup), S, T0)
    delete, patch = out.actions
    assert delete.name == f"cachesync-cleanup-{PV_NAME}"
    assert patch.patch[-1] == {"op": "remove", "path": "/metadata/finalizers/1"}


def test_deleted_claim_cleanup_failures_then_abandon():
    cleanup = finished(helper_pod(VolumeRecord.from_annotations(
        setup_pod()["metadata"]["annotations"], "x"), "cleanup", S), "Failed", 1, "umount: busy")
    out = reconcile_claim(view(deleting(pvc()), cleanup_pod=cleanup), S, T0)
    assert out.events()[0].reason == "CleanupFailed" and "umount: busy" in out.events()[0].message
    assert [type(a) for a in out.actions] == [Event, Patch, Delete]
    done = deleting(pvc(annotations={"cachesync.io/cleanup-failures": "3"}))
    out = reconcile_claim(view(done), S, T0)
    ev, patch = out.actions
    assert ev.reason == "CleanupAbandoned" and "cachesync gc" in ev.message
    assert patch.patch[-1]["op"] == "remove"


@pytest.mark.parametrize("kw", [dict(node=None), dict(pv={"metadata": {"name": PV_NAME}})])
def test_deleted_claim_with_gone_node_or_existing_pv_just_lets_go(kw):
    out = reconcile_claim(view(deleting(pvc()), **kw), S, T0)
    assert [type(a) for a in out.actions] == [Patch]
    assert out.actions[0].patch[-1]["op"] == "remove"


def test_shared_cache_namespace_reads_ci_caches_from_a_pr_namespace():
    sc = storage_class("cachesync-ci", cacheNamespace="ci", writeNamespaces="ci")
    claim = pvc(namespace="ci-pr", annotations={keys.CACHE_NAME: "gradle"},
                storage_class_name="cachesync-ci")
    out = reconcile_claim(view(claim, storage_class=sc, namespace=namespace("ci-pr")), S, T0)
    env = env_of(out.of(Create)[0].body)
    assert (env["PVC_NAMESPACE"], env["CACHE_NAME"], env["CACHE_WRITE"]) == ("ci", "gradle", "false")
    claim = pvc(namespace="ci", annotations={keys.CACHE_NAME: "gradle"},
                storage_class_name="cachesync-ci")
    out = reconcile_claim(view(claim, storage_class=sc), S, T0)
    env = env_of(out.of(Create)[0].body)
    assert (env["PVC_NAMESPACE"], env["CACHE_WRITE"]) == ("ci", "true")


def test_bad_cache_namespace_parameter():
    out = reconcile_claim(view(storage_class=storage_class(cacheNamespace="CI_Main")), S, T0)
    assert [e.reason for e in out.events()] == ["InvalidStorageClass"]
    assert "cacheNamespace" in out.events()[0].message and len(out.actions) == 1


def test_succeeded_setup_makes_its_pv_even_if_the_claim_was_edited_since():
    pod = finished(setup_pod(), "Succeeded")
    edited = with_finalizer(pvc(annotations={keys.WRITE: "maybe"}))    # invalid now
    out = reconcile_claim(view(edited, setup_pod=pod), S, T0)
    assert [type(a) for a in out.actions] == [Create, Event, Delete]
    assert out.actions[0].kind == "PersistentVolume"


def test_setup_pod_stuck_terminating_is_force_deleted():
    pod = with_(running(setup_pod()), **{"metadata.deletionTimestamp": format_time(T0 - 121)})
    out = reconcile_claim(view(with_finalizer(pvc()), setup_pod=pod), S, T0)
    (delete,) = out.actions
    assert delete.force and delete.uid == pod["metadata"]["uid"]
    recent = with_(pod, **{"metadata.deletionTimestamp": format_time(T0 - 5)})
    assert reconcile_claim(view(with_finalizer(pvc()), setup_pod=recent), S, T0).actions == []


def test_deleted_claim_whose_class_is_gone_still_gets_cleaned_up():
    pod = finished(setup_pod(), "Succeeded")
    out = reconcile_claim(view(deleting(pvc()), storage_class=None, setup_pod=pod), S, T0)
    assert [a.body["metadata"]["name"] for a in out.of(Create)] == [f"cachesync-cleanup-{PV_NAME}"]
    out = reconcile_claim(view(deleting(pvc()), storage_class=None), S, T0)
    assert [type(a) for a in out.actions] == [Patch]      # nothing known was set up: let go
