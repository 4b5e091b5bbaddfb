"""Every manifest in provisioner/deploy (rendered as `kubectl apply -k` would), the examples,
and every object the provisioner generates, validated against the Kubernetes schemas of the
newest release kubernetes-validate ships (strict: unknown fields are errors)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml

from k8s_objects import PV_NAME, PVC_UID, T0, namespace, node, pvc, storage_class
from provisioner import classes, keys
from provisioner.actions import Create
from provisioner.config import Settings
from provisioner.helper import helper_pod
from provisioner.provision import ClaimView, reconcile_claim
from provisioner.volume import VolumeRecord, persistent_volume

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "provisioner" / "deploy"
K8S_VERSION = ".".join(kv_utils.latest_version().split(".")[:2])
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass",
                  "PersistentVolume", "Node", "CustomResourceDefinition"}


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def render(directory: Path) -> list[dict]:
    """A small kustomize: resources, namespace, labels (metadata only) and images."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}
    assert set(k) <= known, f"kustomization uses {set(k) - known}: teach render() about it"
    docs = []
    for res in k["resources"]:
        docs += load_docs(directory / res)
    images = {i["name"]: i for i in k.get("images", [])}
    for d in docs:
        if k.get("namespace") and d["kind"] not in CLUSTER_SCOPED:
            d["metadata"]["namespace"] = k["namespace"]
        for group in k.get("labels", []):
            d["metadata"].setdefault("labels", {}).update(group["pairs"])
        pod_spec = d.get("spec", {}).get("template", {}).get("spec")
        for c in (pod_spec or {}).get("containers", []) + (pod_spec or {}).get("initContainers", []):
            name, _, tag = c["image"].partition(":")
            if name in images:
                img = images[name]
                c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}"
    return docs


RENDERED = render(DEPLOY)
EXAMPLES = [d for p in sorted((DEPLOY / "examples").glob("*.yaml")) for d in load_docs(p)]


def by_kind(kind: str, docs=RENDERED) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(kind: str, name: str) -> dict:
    (found,) = [d for d in RENDERED if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def validate(obj: dict) -> None:
    kubernetes_validate.validate(copy.deepcopy(obj), K8S_VERSION, strict=True)


def test_schema_version_is_current():
    major, minor = (int(x) for x in K8S_VERSION.split("."))
    assert (major, minor) >= (1, 31)


@pytest.mark.parametrize("doc", RENDERED + EXAMPLES,
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid(doc):
    validate(doc)


def test_validation_catches_a_typo():
    bad = copy.deepcopy(one("Deployment", "cachesync-provisioner"))
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    bad["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)


def test_kustomization_contents():
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in RENDERED)
    assert ("Namespace", "cachesync") in kinds
    assert ("Deployment", "cachesync-provisioner") in kinds
    assert ("DaemonSet", "cachesync-sync") in kinds
    assert {n for k, n in kinds if k == "StorageClass"} == {"cachesync", "cachesync-ci"}
    namespaced = [d for d in RENDERED if d["kind"] not in CLUSTER_SCOPED]
    assert all(d["metadata"]["namespace"] == Settings().namespace for d in namespaced)


def test_storage_classes_are_accepted_by_the_provisioner():
    for sc in by_kind("StorageClass"):
        assert sc["provisioner"] == keys.PROVISIONER
        classes.parse(sc)   # raises on an unknown parameter or a wrong binding mode


def test_workloads_match_the_provisioner_defaults():
    s = Settings()
    images = {c["image"] for d in RENDERED if d["kind"] in ("Deployment", "DaemonSet")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {s.helper_image}
    sync = one("DaemonSet", "cachesync-sync")["spec"]["template"]["spec"]
    assert sync["volumes"][0]["hostPath"]["path"] == s.node_root
    c = sync["containers"][0]
    assert c["command"] == ["cachesync", "sync"] and c["securityContext"]["privileged"]
    refs = {next(iter(r.values()))["name"] for r in c["envFrom"]}
    assert refs == {s.registry_config_map, s.registry_secret}
    assert one("ConfigMap", s.registry_config_map)["data"]["CACHESYNC_REGISTRY"]
    assert set(one("Secret", s.registry_secret)["stringData"]) == {
        "CACHESYNC_REGISTRY_USERNAME", "CACHESYNC_REGISTRY_PASSWORD"}
    assert one("ServiceAccount", s.helper_service_account)["automountServiceAccountToken"] is False
    prov = one("Deployment", "cachesync-provisioner")["spec"]["template"]["spec"]
    assert prov["containers"][0]["command"] == ["cachesync-provisioner"]
    assert prov["securityContext"]["runAsNonRoot"] is True
    assert one("Namespace", s.namespace)["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "privileged"


def test_examples_use_the_shipped_classes_and_annotations():
    shipped = {d["metadata"]["name"] for d in by_kind("StorageClass")}
    claims = [d for d in EXAMPLES if d["kind"] == "PersistentVolumeClaim"]
    templates = [v["ephemeral"]["volumeClaimTemplate"] for d in EXAMPLES if d["kind"] == "Job"
                 for v in d["spec"]["template"]["spec"]["volumes"] if "ephemeral" in v]
    assert claims and templates
    for c in claims + templates:
        assert c["spec"]["storageClassName"] in shipped
        assert keys.CACHE_NAME in c["metadata"]["annotations"]
    for job in by_kind("Job", EXAMPLES):
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_render_agrees_with_kubectl_kustomize():
    p = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    theirs = [d for d in yaml.safe_load_all(p.stdout) if d]

    def key(d):
        return (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
    assert sorted(map(key, theirs)) == sorted(map(key, RENDERED))
    ours = {key(d): d for d in RENDERED}
    for d in theirs:
        assert d == ours[key(d)], key(d)


# -- objects the provisioner makes ----------------------------------------------------------
RECORD = VolumeRecord(pv_name=PV_NAME, node="worker-a", hostname="worker-a",
                      vol_dir=f"/var/lib/cachesync/pv/{PV_NAME}", pvc_namespace="ci",
                      pvc_name="gradle-cache", pvc_uid=PVC_UID, cache_namespace="ci",
                      cache_name="gradle", write=True, size_bytes=2**30, capacity="1Gi",
                      storage_class="cachesync")


@pytest.mark.parametrize("action", ["setup", "teardown", "cleanup"])
def test_helper_pods_are_valid(action):
    validate(helper_pod(RECORD, action, Settings(), "succeeded"))


def test_pv_is_valid():
    validate(persistent_volume(RECORD))


def test_objects_from_the_reconciler_are_valid():
    out = reconcile_claim(ClaimView(pvc(), storage_class(), node(), namespace()), Settings(), T0)
    (create,) = out.of(Create)
    validate(create.body)
    assert create.body["metadata"]["labels"][keys.CLAIM_NAME] == "gradle-cache"


def test_long_claim_names_still_make_valid_pods():
    long_name = "a" * 62 + "-" + "b" * 60
    out = reconcile_claim(ClaimView(pvc(name=long_name), storage_class(), node(), namespace()),
                          Settings(), T0)
    validate(out.of(Create)[0].body)
