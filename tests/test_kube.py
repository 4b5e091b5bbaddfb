"""kube.py against a real HTTP server speaking the Kubernetes API's shapes: paths, patch
content types, error mapping, event aggregation, watch streaming, and no token in any error."""

from __future__ import annotations

import pytest
from kubernetes import client

from fake_apiserver import serve, status
from provisioner import kube as kube_mod
from provisioner.errors import (AlreadyExists, Conflict, Forbidden, Invalid, KubeError,
                                Unauthorized, Unavailable)

TOKEN = "sekret-token-abc123"


@pytest.fixture
def api():
    with serve() as state:
        yield state


def make_kube(url: str) -> kube_mod.Kube:
    cfg = client.Configuration()
    cfg.host = url
    cfg.api_key = {"authorization": TOKEN}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    cfg.retries = 0
    return kube_mod.Kube(client.ApiClient(cfg), request_timeout=5)


PVC = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
       "metadata": {"name": "c", "namespace": "ci", "uid": "u1"}, "spec": {}}


def test_get_returns_the_raw_object_and_none_when_missing(api):
    api.on("GET", "/api/v1/namespaces/ci/persistentvolumeclaims/c", (200, PVC))
    k = make_kube(api.url)
    assert k.get("PersistentVolumeClaim", "c", "ci") == PVC
    assert k.get("PersistentVolumeClaim", "gone", "ci") is None
    assert api.requests[0]["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_cluster_scoped_and_storage_paths(api):
    api.on("GET", "/apis/storage.k8s.io/v1/storageclasses/cachesync",
           (200, {"metadata": {"name": "cachesync"}, "provisioner": "cachesync.io/cache"}))
    api.on("GET", "/api/v1/nodes/worker-a", (200, {"metadata": {"name": "worker-a"}}))
    k = make_kube(api.url)
    assert k.get("StorageClass", "cachesync")["kind"] == "StorageClass"
    assert k.get("Node", "worker-a")["metadata"]["name"] == "worker-a"


def test_list_all_namespaces_with_selectors(api):
    api.on("GET", "/api/v1/pods", (200, {"metadata": {"resourceVersion": "77"},
                                         "items": [{"metadata": {"name": "p"}}]}))
    items, rv = make_kube(api.url).list("Pod", field_selector="status.phase!=Running",
                                        label_selector="a=b")
    assert rv == "77" and items == [{"metadata": {"name": "p"}, "kind": "Pod"}]
    q = api.requests[-1]["query"]
    assert "fieldSelector=status.phase%21%3DRunning" in q and "labelSelector=a%3Db" in q


def test_patch_content_types(api):
    api.on("PATCH", "/api/v1/persistentvolumes/pv1", (200, {"metadata": {"name": "pv1"}}))
    k = make_kube(api.url)
    k.patch("PersistentVolume", "pv1", None, [{"op": "remove", "path": "/metadata/finalizers/0"}])
    k.patch("PersistentVolume", "pv1", None, {"metadata": {"annotations": {"a": None}}})
    first, second = api.requests
    assert first["headers"]["content-type"] == "application/json-patch+json"
    assert first["body"] == [{"op": "remove", "path": "/metadata/finalizers/0"}]
    assert second["headers"]["content-type"] == "application/merge-patch+json"
    assert second["body"] == {"metadata": {"annotations": {"a": None}}}


def test_create_posts_the_body(api):
    api.on("POST", "/api/v1/namespaces/cachesync/pods", (201, {"metadata": {"name": "h"}}))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "h", "namespace": "cachesync"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    make_kube(api.url).create("Pod", pod)
    assert api.requests[0]["body"] == pod


def test_delete_with_uid_precondition_and_gone_is_fine(api):
    api.on("DELETE", "/api/v1/namespaces/ci/persistentvolumeclaims/c", (200, {}))
    k = make_kube(api.url)
    k.delete("PersistentVolumeClaim", "c", "ci", uid="u1")
    assert api.requests[0]["body"] == {"preconditions": {"uid": "u1"}}
    k.delete("PersistentVolumeClaim", "gone", "ci")   # 404: no error
    k.delete("PersistentVolumeClaim", "c", "ci", uid="u1", force=True)
    assert api.requests[-1]["body"] == {"preconditions": {"uid": "u1"}, "gracePeriodSeconds": 0}


@pytest.mark.parametrize("code, reason, cls, transient", [
    (401, "Unauthorized", Unauthorized, False),
    (403, "Forbidden", Forbidden, False),
    (409, "AlreadyExists", AlreadyExists, True),
    (409, "Conflict", Conflict, True),
    (422, "Invalid", Invalid, False),
    (429, "TooManyRequests", Unavailable, True),
    (500, "InternalError", Unavailable, True),
    (503, "ServiceUnavailable", Unavailable, True),
    (400, "BadRequest", KubeError, False),
])
def test_errors_map_to_the_tree_without_the_token(api, code, reason, cls, transient):
    api.on("POST", "/api/v1/persistentvolumes", status(code, reason, f"it went {reason} " * 50))
    with pytest.raises(KubeError) as e:
        make_kube(api.url).create("PersistentVolume", {"metadata": {"name": "pv1"}})
    assert type(e.value) is cls and e.value.transient is transient
    assert e.value.status == code
    text = str(e.value)
    assert TOKEN not in text and "Bearer" not in text
    assert f"create PersistentVolume pv1: {code} {reason}: it went" in text
    assert len(text) < 500
    if code == 403:
        assert "rbac.yaml" in text


def test_unreachable_server_is_unavailable():
    k = make_kube("http://127.0.0.1:9")
    with pytest.raises(Unavailable) as e:
        k.get("Node", "x")
    assert "unreachable" in str(e.value) and TOKEN not in str(e.value)


def test_event_is_created_then_counted(api):
    involved = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "c",
                "namespace": "ci", "uid": "u1"}
    api.on("POST", "/api/v1/namespaces/ci/events", (201, {}),
           status(409, "AlreadyExists", "exists"))
    k = make_kube(api.url)
    k.event(involved, "Normal", "Provisioning", "setting up", now=1_800_000_000)
    created = api.requests[0]["body"]
    assert created["involvedObject"] == involved and created["reason"] == "Provisioning"
    assert created["count"] == 1 and created["source"] == {"component": "cachesync-provisioner"}
    name = created["metadata"]["name"]
    api.on("GET", f"/api/v1/namespaces/ci/events/{name}", (200, {"count": 4}))
    api.on("PATCH", f"/api/v1/namespaces/ci/events/{name}", (200, {}))
    k.event(involved, "Normal", "Provisioning", "setting up", now=1_800_000_100)
    assert api.requests[-1]["body"] == {"count": 5, "lastTimestamp": "2027-01-15T08:01:40Z"}
    k2 = {**involved, "namespace": None, "kind": "PersistentVolume"}
    api.on("POST", "/api/v1/namespaces/default/events", (201, {}))
    k.event({k_: v for k_, v in k2.items() if v}, "Warning", "NodeGone", "gone")
    assert api.requests[-1]["path"] == "/api/v1/namespaces/default/events"


def test_watch_yields_raw_objects_and_skips_bookmarks(api):
    api.on("WATCH", "/api/v1/persistentvolumes", (200, [
        {"type": "ADDED", "object": {"metadata": {"name": "a"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
        {"type": "DELETED", "object": {"metadata": {"name": "b"}}},
    ]))
    got = list(make_kube(api.url).watch("PersistentVolume", resource_version="5",
                                        timeout_seconds=5))
    assert got == [("ADDED", {"metadata": {"name": "a"}, "kind": "PersistentVolume"}),
                   ("DELETED", {"metadata": {"name": "b"}, "kind": "PersistentVolume"})]
    q = api.requests[0]["query"]
    assert "watch=True" in q or "watch=true" in q
    assert "resourceVersion=5" in q


def test_watch_expired_raises_for_a_relist(api):
    api.on("WATCH", "/api/v1/persistentvolumes", (200, [
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                     "message": "too old resource version"}}]))
    with pytest.raises(KubeError) as e:
        list(make_kube(api.url).watch("PersistentVolume", timeout_seconds=5))
    assert e.value.status == 410


def test_controller_over_http_provisions_a_claim(api):
    """kube.py and the controller together, over HTTP: one pass over a fresh claim reads what
    it needs and sends the finalizer patch, the setup Pod and the event."""
    from fake_apiserver import route_claim_to_provision
    from k8s_objects import pvc
    from provisioner.config import Settings
    from provisioner.controller import Controller

    claim = pvc()
    uid = claim["metadata"]["uid"]
    route_claim_to_provision(api, claim)
    outcome = Controller(make_kube(api.url), Settings(), clock=lambda: 1_800_000_000).reconcile(
        ("claim", "ci", "gradle-cache"))
    assert outcome.note == "setup started"
    sent = [(r["method"], r["path"]) for r in api.requests if r["method"] != "GET"]
    assert sent == [("PATCH", "/api/v1/namespaces/ci/persistentvolumeclaims/gradle-cache"),
                    ("POST", "/api/v1/namespaces/cachesync/pods"),
                    ("POST", "/api/v1/namespaces/ci/events")]
    reads = {r["path"] for r in api.requests if r["method"] == "GET"}
    assert f"/api/v1/persistentvolumes/pvc-{uid}" in reads                        # 404: none yet
    assert f"/api/v1/namespaces/cachesync/pods/cachesync-setup-pvc-{uid}" in reads
    pod = api.requests[[r["method"] for r in api.requests].index("POST")]["body"]
    assert pod["spec"]["nodeName"] == "worker-a"
    patch = next(r for r in api.requests if r["method"] == "PATCH")
    assert patch["headers"]["content-type"] == "application/json-patch+json"
    assert patch["body"][0]["value"] == "cachesync.io/provisioning"
