"""The controller over an in-memory API: a claim's whole life (provision, bind, pod completion,
teardown, PV gone), failures of API calls and their retries, watch keys, and RBAC that allows
exactly the calls the controller makes."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest
import yaml

from fake_kube import FakeKube
from k8s_objects import build_pod, finished, namespace, node, pvc, storage_class, with_
from provisioner import keys
from provisioner.actions import Create, Delete, Patch
from provisioner.config import Settings
from provisioner.controller import Controller
from provisioner.errors import Conflict, Forbidden, Unavailable

ROOT = Path(__file__).resolve().parent.parent
S = Settings(helper_image="cachesync:test", retry_base=10, retry_max=100)
CLAIM = ("claim", "ci", "gradle-cache")


class Cluster:
    """The fake API plus the bits of Kubernetes the provisioner relies on (binding, release,
    the kubelet finishing pods), driven step by step by the test."""

    def __init__(self):
        self.now = 1_800_000_000.0
        self.kube = FakeKube(clock=lambda: self.now)
        self.ctl = Controller(self.kube, S, clock=lambda: self.now)
        self.kube.put(storage_class())
        self.kube.put(node())
        self.kube.put(namespace())
        self.claim = self.kube.put(pvc(annotations={keys.CACHE_NAME: "gradle"}))
        self.pv_name = f"pvc-{self.claim['metadata']['uid']}"

    def finish_pod(self, name, phase="Succeeded", namespace="cachesync", **kw):
        pod = self.kube.find("Pod", name, namespace)
        self.kube.objects[("Pod", namespace, name)] = finished(pod, phase, **kw)

    def bind(self):
        pv = self.kube.find("PersistentVolume", self.pv_name)
        pv["status"] = {"phase": "Bound"}
        claim = self.kube.find("PersistentVolumeClaim", "gradle-cache", "ci")
        claim["spec"]["volumeName"] = self.pv_name
        claim["status"] = {"phase": "Bound"}

    def release(self):
        """What the PV controller does once the claim is gone."""
        assert self.kube.find("PersistentVolumeClaim", "gradle-cache", "ci") is None
        self.kube.find("PersistentVolume", self.pv_name)["status"] = {"phase": "Released"}


def env_of(pod):
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("phase, result", [("Succeeded", "succeeded"), ("Failed", "failed")])
def test_a_claims_whole_life(phase, result):
    c = Cluster()
    c.ctl.reconcile(CLAIM)
    setup = c.kube.find("Pod", f"cachesync-setup-{c.pv_name}", "cachesync")
    assert setup is not None and env_of(setup)["CACHE_WRITE"] == "true"
    assert keys.CLAIM_FINALIZER in c.kube.find("PersistentVolumeClaim", "gradle-cache", "ci")[
        "metadata"]["finalizers"]
    c.ctl.reconcile(CLAIM)                             # still running: nothing new
    assert len(c.kube.all("Pod")) == 1 and c.kube.all("PersistentVolume") == []

    c.finish_pod(setup["metadata"]["name"])
    c.ctl.reconcile(CLAIM)
    pv = c.kube.find("PersistentVolume", c.pv_name)
    assert pv["spec"]["claimRef"]["uid"] == c.claim["metadata"]["uid"]
    assert c.kube.all("Pod") == []

    c.bind()
    c.ctl.reconcile(CLAIM)
    claim = c.kube.find("PersistentVolumeClaim", "gradle-cache", "ci")
    assert claim["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]

    build = c.kube.put(build_pod(phase="Running"))
    c.ctl.reconcile(("pod", "ci", "build-1"))
    assert c.kube.find("PersistentVolumeClaim", "gradle-cache", "ci") is not None
    c.kube.objects[("Pod", "ci", "build-1")] = with_(build, **{"status.phase": phase})
    c.ctl.reconcile(("pod", "ci", "build-1"))
    assert c.kube.find("PersistentVolumeClaim", "gradle-cache", "ci") is None  # gone at once
    assert c.kube.find("PersistentVolume", c.pv_name)["metadata"]["annotations"][
        keys.JOB_RESULT] == result

    c.release()
    c.ctl.reconcile(("volume", c.pv_name))
    teardown = c.kube.find("Pod", f"cachesync-teardown-{c.pv_name}", "cachesync")
    assert env_of(teardown)["JOB_RESULT"] == result
    c.finish_pod(teardown["metadata"]["name"])
    c.ctl.reconcile(("volume", c.pv_name))
    assert c.kube.all("PersistentVolume") == []
    assert [p["metadata"]["name"] for p in c.kube.all("Pod")] == ["build-1"]   # no helper left
    assert c.kube.reasons() == ["Provisioning", "ProvisioningSucceeded",
                                "ReleasedOnPodCompletion", "TearingDown", "TornDown"]


def test_transient_api_failure_is_retried_soon_and_then_succeeds():
    c = Cluster()
    c.ctl.reconcile(CLAIM)
    c.finish_pod(f"cachesync-setup-{c.pv_name}")
    c.kube.fail[("create", "PersistentVolume")] = [Unavailable("503", status=503)]
    c.ctl.process(CLAIM)
    assert c.kube.all("PersistentVolume") == []
    assert len(c.ctl.queue) == 1
    c.ctl.process(CLAIM)
    assert c.kube.find("PersistentVolume", c.pv_name) is not None


def test_permanent_api_failure_backs_off_longer():
    c = Cluster()
    c.kube.fail[("create", "Pod")] = [Forbidden("403", status=403)]
    due = {}
    c.ctl.queue.add = lambda key, delay=0.0: due.__setitem__(key, delay)
    c.ctl.process(CLAIM)
    assert due[CLAIM] == S.backoff(1)
    c.kube.fail[("create", "Pod")] = [Unavailable("x")]
    c.ctl.process(CLAIM)
    assert due[CLAIM] < S.backoff(1)


def test_apply_stops_at_the_first_failure_and_tolerates_what_is_already_done():
    c = Cluster()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "cachesync"}}
    c.kube.put(pod)
    # already exists, already gone: both fine
    c.ctl.apply([Create("Pod", pod), Delete("Pod", "nope", "cachesync")])
    c.kube.fail[("patch", "PersistentVolumeClaim")] = [Unavailable("down")]
    with pytest.raises(Unavailable):
        c.ctl.apply([Patch("PersistentVolumeClaim", "gradle-cache", "ci", {"metadata": {}}),
                     Delete("Pod", "p", "cachesync")])
    assert c.kube.find("Pod", "p", "cachesync") is not None


def test_events_never_block_work():
    c = Cluster()
    c.kube.fail[("event", "Event")] = [Forbidden("no events")]
    c.ctl.reconcile(CLAIM)
    assert c.kube.find("Pod", f"cachesync-setup-{c.pv_name}", "cachesync") is not None


def test_stale_finalizer_patch_becomes_a_conflict_to_retry():
    c = Cluster()
    claim = c.kube.find("PersistentVolumeClaim", "gradle-cache", "ci")
    claim["metadata"]["finalizers"] = ["kubernetes.io/pvc-protection", "other.io/x"]
    stale = [{"op": "test", "path": "/metadata/finalizers/1", "value": keys.CLAIM_FINALIZER},
             {"op": "remove", "path": "/metadata/finalizers/1"}]
    with pytest.raises(Conflict):
        c.ctl.apply([Patch("PersistentVolumeClaim", "gradle-cache", "ci", stale)])
    assert "other.io/x" in claim["metadata"]["finalizers"]


def test_watch_keys():
    ctl = Controller(FakeKube(), S)
    assert ctl.keys_for("PersistentVolumeClaim", pvc()) == [CLAIM]
    other = with_(pvc(), **{"metadata.annotations": {
        "volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com"}})
    assert ctl.keys_for("PersistentVolumeClaim", other) == []
    beta_only = with_(pvc(), **{"metadata.annotations": {
        "volume.beta.kubernetes.io/storage-provisioner": "cachesync.io/cache"}})
    assert ctl.keys_for("PersistentVolumeClaim", beta_only) == [CLAIM]
    ours_deleting = with_(other, **{"metadata.finalizers": [keys.CLAIM_FINALIZER]})
    assert ctl.keys_for("PersistentVolumeClaim", ours_deleting) == [CLAIM]
    assert ctl.keys_for("PersistentVolume", {"metadata": {"name": "pvc-1"}}) == [("volume", "pvc-1")]
    assert ctl.keys_for("Pod", build_pod()) == [("pod", "ci", "build-1")]
    assert ctl.keys_for("Pod", build_pod(claims=())) == []
    cluster = Cluster()
    cluster.ctl.reconcile(CLAIM)
    (helper,) = cluster.kube.all("Pod")
    assert ctl.keys_for("Pod", helper) == [CLAIM]
    td = with_(helper, **{f"metadata|labels|{keys.ACTION}": "teardown"})
    assert ctl.keys_for("Pod", td) == [("volume", cluster.pv_name)]


def test_watch_loop_lists_then_watches_and_survives_errors():
    kube = FakeKube()
    kube.put(pvc())
    ctl = Controller(kube, S)
    stop = threading.Event()
    calls = []

    def watch(kind, ns, ls, fs, rv, timeout):
        calls.append(rv)
        if len(calls) == 1:
            raise Unavailable("watch broke")
        yield "MODIFIED", pvc(name="other")
        stop.set()

    ctl.settings = Settings(retry_max=0.01)
    ctl.watch_forever("PersistentVolumeClaim", None, None, None, stop, watch)
    assert len(calls) == 2 and all(calls)
    keys_ = set()
    while (k := ctl.queue.get(timeout=0)) is not None:
        keys_.add(k)
    assert keys_ == {CLAIM, ("claim", "ci", "other")}


# -- RBAC: exactly what the controller does ---------------------------------------------------
RESOURCES = {"PersistentVolumeClaim": "persistentvolumeclaims", "PersistentVolume":
             "persistentvolumes", "Pod": "pods", "Node": "nodes", "Namespace": "namespaces",
             "StorageClass": "storageclasses", "Event": "events"}


def exercised_calls() -> set[tuple[str, str, bool]]:
    """(resource, verb, only in the helper namespace) for every call of a full life, a deleted
    claim's cleanup, a gone node, plus the watches and kube.event's create/get/patch."""
    needed = set()
    c = Cluster()
    c.ctl.reconcile(CLAIM)
    c.finish_pod(f"cachesync-setup-{c.pv_name}")
    c.ctl.reconcile(CLAIM)
    c.bind()
    c.ctl.reconcile(CLAIM)
    c.kube.put(build_pod(phase="Succeeded"))
    c.ctl.reconcile(("pod", "ci", "build-1"))
    c.release()
    c.ctl.reconcile(("volume", c.pv_name))
    c.finish_pod(f"cachesync-teardown-{c.pv_name}")
    c.ctl.reconcile(("volume", c.pv_name))
    calls = list(c.kube.calls)
    c = Cluster()
    c.ctl.reconcile(CLAIM)
    c.kube.find("PersistentVolumeClaim", "gradle-cache", "ci")["metadata"]["deletionTimestamp"] = "x"
    c.finish_pod(f"cachesync-setup-{c.pv_name}", "Failed")
    c.ctl.reconcile(CLAIM)
    calls += c.kube.calls
    for verb, kind, ns in calls:
        if verb == "event":
            needed |= {("events", v, False) for v in ("create", "get", "patch")}
            continue
        needed.add((RESOURCES[kind], verb, ns == S.namespace and kind == "Pod"
                    and verb in ("create", "delete")))
    for kind, *_ in Controller.WATCHES:
        needed |= {(RESOURCES[kind], "list", False), (RESOURCES[kind], "watch", False)}
    return needed


def granted() -> set[tuple[str, str, bool]]:
    docs = [d for d in yaml.safe_load_all((ROOT / "provisioner/deploy/rbac.yaml").read_text()) if d]
    out = set()
    for d in docs:
        if d["kind"] in ("ClusterRole", "Role"):
            for rule in d["rules"]:
                for res in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add((res, verb, d["kind"] == "Role"))
    return out


def test_rbac_allows_every_call_the_controller_makes():
    g = granted()
    missing = {n for n in exercised_calls()
               if n not in g and (n[0], n[1], False) not in g}
    assert not missing, f"RBAC lacks {sorted(missing)}"


def test_rbac_grants_nothing_the_controller_does_not_use():
    need = exercised_calls()
    extra = {x for x in granted() if x not in need and not (x[2] is False and (x[0], x[1], True)
                                                           in need)}
    assert not extra, f"RBAC grants unused {sorted(extra)}"


def test_only_kube_py_imports_the_kubernetes_client():
    offenders = []
    for path in (ROOT / "provisioner").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node_ in ast.walk(tree):
            names = [a.name for a in node_.names] if isinstance(node_, ast.Import) else \
                [node_.module or ""] if isinstance(node_, ast.ImportFrom) else []
            if any(n == "kubernetes" or n.startswith("kubernetes.") or n == "urllib3"
                   for n in names) and path.name != "kube.py":
                offenders.append(path.name)
    assert offenders == []


def test_teardown_on_a_node_that_stopped_answering_ends_after_bounded_tries():
    """The node exists but its kubelet is gone: helper pods stay Pending, then stuck
    terminating; each is timed out and force-deleted, and after helper_attempts the PV goes."""
    c = Cluster()
    c.ctl.settings = Settings(helper_attempts=2, helper_timeout=60, retry_base=1, retry_max=1)
    from provisioner.volume import VolumeRecord, persistent_volume
    rec = VolumeRecord(c.pv_name, "worker-a", "worker-a", f"/var/lib/cachesync/pv/{c.pv_name}",
                       "ci", "gradle-cache", "u", "ci", "gradle", True, 1, "1Gi", "cachesync")
    pv_body = persistent_volume(rec)
    pv_body["status"] = {"phase": "Released"}
    c.kube.put(pv_body)
    key = ("volume", c.pv_name)
    for _ in range(40):                        # the controller's passes, a minute apart
        c.ctl.reconcile(key)
        if c.kube.find("PersistentVolume", c.pv_name) is None:
            break
        c.now += 61
    assert c.kube.find("PersistentVolume", c.pv_name) is None
    assert c.kube.all("Pod") == []     # the fake only drops a scheduled pod on a force delete
    reasons = c.kube.reasons()
    assert reasons.count("TeardownFailed") == 2 and reasons[-1] == "TeardownAbandoned"


def test_main_settings_and_own_image():
    from provisioner import main as main_mod
    from provisioner.errors import ProvisionerError

    p = main_mod.build_parser()
    s = main_mod.settings_from(p.parse_args(["--helper-timeout", "30"]),
                               {"CACHESYNC_PROVISIONER_HELPER_ATTEMPTS": "7",
                                "CACHESYNC_PROVISIONER_HELPER_TIMEOUT": "99"})
    assert (s.helper_timeout, s.helper_attempts) == (30.0, 7)      # a flag wins over env
    for bad in (["--helper-attempts", "many"], ["--retry-max", "0"],
                ["--volume-base", "/srv/volumes"]):
        with pytest.raises(ProvisionerError):
            main_mod.settings_from(p.parse_args(bad), {})
    kube = FakeKube()
    kube.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prov-1",
              "namespace": "cachesync-system"},
              "spec": {"containers": [{"name": "p", "image": "reg.example/cs:1.2"}]}})
    env = {"POD_NAME": "prov-1", "POD_NAMESPACE": "cachesync-system"}
    s = main_mod.own_image_and_namespace(kube, Settings(), p.parse_args([]), env)
    assert (s.helper_image, s.namespace) == ("reg.example/cs:1.2", "cachesync-system")
    args = p.parse_args(["--helper-image", "x:1"])
    s = main_mod.own_image_and_namespace(kube, main_mod.settings_from(args, {}), args, env)
    assert (s.helper_image, s.namespace) == ("x:1", "cachesync-system")
    assert main_mod.own_image_and_namespace(kube, Settings(), p.parse_args([]), {}) == Settings()


def test_a_bug_on_one_object_does_not_stop_the_controller(caplog):
    c = Cluster()
    c.kube.find("PersistentVolumeClaim", "gradle-cache", "ci")["spec"]["accessModes"] = 5
    due = {}
    c.ctl.queue.add = lambda key, delay=0.0: due.__setitem__(key, delay)
    c.ctl.process(CLAIM)                     # TypeError inside the reconciler: logged, requeued
    assert due == {CLAIM: S.retry_max}
    assert "unexpected error" in caplog.text and "TypeError" in caplog.text
