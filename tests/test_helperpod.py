"""The shared helper-Pod state machine (provisioner/helperpod.py), one row per phase, for a
run that works for a PVC (cleanup-like) and for a PV (teardown-like)."""

from __future__ import annotations

import pytest

from k8s_objects import PV_NAME, PVC_UID, T0, T0_TEXT, finished, pvc, running, with_
from provisioner.actions import Create, Delete, Event, Outcome, Patch
from provisioner.config import Settings
from provisioner.helper import helper_pod
from provisioner.helperpod import HelperRun, drive
from provisioner.objects import format_time
from provisioner.volume import VolumeRecord, persistent_volume

S = Settings(helper_attempts=2, retry_base=10, retry_max=100, helper_timeout=120, poll_interval=5)
RECORD = VolumeRecord(pv_name=PV_NAME, node="worker-a", hostname="worker-a",
                      vol_dir=f"/var/lib/cachesync/pv/{PV_NAME}", pvc_namespace="ci",
                      pvc_name="gradle-cache", pvc_uid=PVC_UID, cache_namespace="ci",
                      cache_name="gradle", write=True,
                      size_bytes=2**30, capacity="1Gi", storage_class="cachesync")
FOLLOW_UP = Patch("PersistentVolume", PV_NAME, None, {"follow": "up"})
POD_UID = "cccccccc-dddd-4eee-8fff-000000000000"


def owner(kind: str, **annotations: str) -> dict:
    obj = pvc() if kind == "pvc" else persistent_volume(RECORD)
    obj["metadata"].setdefault("annotations", {}).update(annotations)
    return obj


def pod(action: str) -> dict:
    return with_(helper_pod(RECORD, action, S),  # type: ignore[arg-type]  # a helper.Action
                 **{"metadata.uid": POD_UID, "metadata.creationTimestamp": T0_TEXT})


def run(action: str, obj: dict, helper: dict | None, *, done: bool = True) -> Outcome:
    return drive(HelperRun(
        action, obj, RECORD, helper,  # type: ignore[arg-type]  # a helper.Action
        start_reason="Starting", start_message="starting",
        give_up_reason="GivenUp", give_up_message=lambda n: f"gave up after {n}",
        give_up=[FOLLOW_UP],
        done=[FOLLOW_UP] if done else None, done_note="done",
        done_reason="Done", done_message="all done",
    ), S, T0, Outcome([Event({}, "Normal", "Before", "decided before")]))


def stuck(p: dict) -> dict:
    return with_(running(p), **{"metadata.deletionTimestamp": format_time(T0 - 200)})


def deleting(p: dict) -> dict:
    return with_(running(p), **{"metadata.deletionTimestamp": format_time(T0 - 5)})


# (annotations on the owner, helper pod given the action, expected action shapes, note, requeue)
CASES = [
    ({}, None, [(Create, "Pod"), (Event, "Starting")], "{a} started", 5),
    ({"cachesync.io/{a}-failures": "1", "cachesync.io/{a}-retry-after": format_time(T0 + 9)},
     None, [], "backing off after a failed {a}", 9),
    ({"cachesync.io/{a}-failures": "2"}, None, [(Event, "GivenUp"), (Patch, "PersistentVolume")],
     "{a} attempts exhausted", None),
    ({}, running, [], "{a} running", 5),
    ({}, deleting, [], "{a} deleting", 5),
    ({}, stuck, [(Delete, "Pod")], "{a} stuck deleting", 5),
    ({}, lambda p: finished(p, "Succeeded", message="ok"),
     [(Event, "Done"), (Delete, "Pod"), (Patch, "PersistentVolume")], "done", None),
    ({}, lambda p: finished(p, "Failed", 1, "boom"),
     [(Event, "{A}Failed"), (Patch, "{K}"), (Delete, "Pod")], "{a} failed", 10),
    ({}, lambda p: running(p, created=format_time(T0 - 500)),
     [(Event, "{A}Failed"), (Patch, "{K}"), (Delete, "Pod")], "{a} failed", 10),
]


def shape(out: Outcome) -> list[tuple[type, str]]:
    return [(type(a), a.reason if isinstance(a, Event) else a.kind) for a in out.actions[1:]]


@pytest.mark.parametrize("action, kind", [("cleanup", "pvc"), ("teardown", "pv")])
@pytest.mark.parametrize("annotations, helper, expected, note, requeue", CASES)
def test_each_phase(action, kind, annotations, helper, expected, note, requeue):
    fill = {"a": action, "A": action.capitalize(),
            "K": "PersistentVolumeClaim" if kind == "pvc" else "PersistentVolume"}
    ann = {k.format(**fill): v for k, v in annotations.items()}
    out = run(action, owner(kind, **ann), helper(pod(action)) if helper else None)
    assert out.actions[0].reason == "Before"
    assert shape(out) == [(t, s.format(**fill)) for t, s in expected]
    assert out.note == note.format(**fill)
    assert out.requeue_after == (pytest.approx(requeue) if requeue is not None else None)


def test_events_go_to_the_owner_with_the_texts_given():
    obj = owner("pv", **{"cachesync.io/teardown-failures": "2"})
    (_, ev, _) = run("teardown", obj, None).actions
    assert ev.involved["kind"] == "PersistentVolume" and ev.message == "gave up after 2"
    out = run("teardown", owner("pv"), finished(pod("teardown"), "Succeeded", message="ok"))
    assert out.actions[1].message == "all done: exit 0: ok"
    created = run("teardown", owner("pv"), None).of(Create)[0].body
    assert created["metadata"]["name"] == f"cachesync-teardown-{PV_NAME}"


def test_success_without_a_done_counts_as_a_failure_as_setup_did():
    out = run("setup", owner("pvc"), finished(pod("setup"), "Succeeded"), done=False)
    assert out.note == "setup failed" and out.of(Delete)[0].uid == POD_UID
