"""Accessors, quantities and patches over API objects (provisioner/objects.py), the volume
record (provisioner/volume.py) and the work queue (provisioner/workqueue.py)."""

from __future__ import annotations

import pytest

from fake_kube import json_patch
from k8s_objects import PV_NAME, PVC_UID, pvc
from provisioner import objects
from provisioner.errors import ClaimError
from provisioner.volume import VolumeRecord
from provisioner.workqueue import WorkQueue


@pytest.mark.parametrize("text, expected", [
    ("10Gi", 10 * 2**30), ("500M", 500 * 10**6), ("1e3", 1000), ("1.5Gi", 3 * 2**29),
    ("100m", 1), ("1", 1), ("2Ki", 2048), ("0", 0),
])
def test_quantities(text, expected):
    assert objects.parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "10 Gi", "10GB", "-1Gi", "1..5"])
def test_bad_quantities(text):
    with pytest.raises(ValueError):
        objects.parse_quantity(text)


def test_time_round_trip():
    assert objects.format_time(objects.parse_time("2027-01-15T08:00:00Z")) == "2027-01-15T08:00:00Z"
    assert objects.parse_time("yesterday") is None and objects.parse_time(None) is None


@pytest.mark.parametrize("before", [[], ["kubernetes.io/pvc-protection"], ["a", "b"]])
def test_finalizer_patches_apply(before):
    obj = {"metadata": {"finalizers": list(before)}} if before else {"metadata": {}}
    json_patch(obj, objects.add_finalizer_patch(obj, "x.io/f"))
    assert obj["metadata"]["finalizers"] == [*before, "x.io/f"]
    assert objects.add_finalizer_patch(obj, "x.io/f") == []
    json_patch(obj, objects.remove_finalizer_patch(obj, "x.io/f"))
    assert obj["metadata"]["finalizers"] == before
    assert objects.remove_finalizer_patch(obj, "x.io/f") == []


def test_ref_of_a_claim():
    assert objects.ref(pvc()) == {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                  "name": "gradle-cache", "namespace": "ci", "uid": PVC_UID,
                                  "resourceVersion": "40211"}


RECORD = VolumeRecord(PV_NAME, "worker-a", "ip-10-0-0-7", f"/var/lib/cachesync/pv/{PV_NAME}",
                      "ci-pr", "pr-cache", PVC_UID, "ci", "gradle", False, 2**30, "1Gi",
                      "cachesync-ci")


def test_volume_record_round_trip():
    ann = RECORD.to_annotations()
    assert all(k.startswith("cachesync.io/volume-") and len(k.split("/")[1]) <= 63 for k in ann)
    assert VolumeRecord.from_annotations(ann, "pv") == RECORD
    assert RECORD.cache == "ci/gradle"


@pytest.mark.parametrize("key, value, fragment", [
    ("cachesync.io/volume-write", "yes", "not true/false"),
    ("cachesync.io/volume-size-bytes", "1Gi", "not a number"),
    ("cachesync.io/volume-node", None, "missing"),
])
def test_volume_record_errors(key, value, fragment):
    ann = RECORD.to_annotations()
    if value is None:
        del ann[key]
    else:
        ann[key] = value
    with pytest.raises(ClaimError) as e:
        VolumeRecord.from_annotations(ann, "PersistentVolume x")
    assert fragment in str(e.value) and key in str(e.value)


def test_work_queue_dedupes_and_keeps_the_earliest_due():
    now = [100.0]
    q = WorkQueue(clock=lambda: now[0])
    q.add("a", 10)
    q.add("a", 5)
    q.add("a", 30)
    q.add("b", 0)
    assert len(q) == 2
    assert q.get(timeout=0) == "b"
    assert q.get(timeout=0) is None          # "a" not due yet
    now[0] += 5
    assert q.get(timeout=0) == "a"
    assert q.get(timeout=0) is None and len(q) == 0
