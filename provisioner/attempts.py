"""Bookkeeping of failed helper Pods, kept as annotations on the PVC or PV they work for:
how many failed, which failure was already counted, and when the next try may start."""

from __future__ import annotations

from dataclasses import dataclass

from . import keys, objects
from .actions import Action, Delete, Event, Kind, Patch
from .config import Settings
from .helper import HelperState
from .objects import Obj


@dataclass(frozen=True)
class Attempts:
    failures: int
    retry_at: float | None

    @classmethod
    def of(cls, obj: Obj, action: str) -> "Attempts":
        ann = objects.annotations_of(obj)
        raw = ann.get(keys.failures_key(action), "0")
        return cls(int(raw) if raw.isdigit() else 0,
                   objects.parse_time(ann.get(keys.retry_after_key(action))))

    def wait(self, now: float) -> float | None:
        """Seconds left before the next try, or None when it may start now."""
        if self.retry_at is not None and self.retry_at > now:
            return self.retry_at - now
        return None

    def exhausted(self, settings: Settings) -> bool:
        return self.failures >= settings.helper_attempts


def kind_of(obj: Obj) -> Kind:
    if obj.get("kind") in ("PersistentVolume", "PersistentVolumeClaim"):
        return obj["kind"]
    return "PersistentVolumeClaim" if objects.namespace(obj) else "PersistentVolume"


def record_failure(obj: Obj, state: HelperState, action: str, node: str, pod_name: str,
                   settings: Settings, now: float) -> tuple[list[Action], Attempts]:
    """Actions for a failed or timed-out helper Pod: a Warning event, the counters, and deleting
    the Pod (so the next try can start under the same name after the backoff)."""
    ann = objects.annotations_of(obj)
    before = Attempts.of(obj, action)
    counted = bool(state.pod_uid) and ann.get(keys.LAST_FAILED_POD) == state.pod_uid
    failures = before.failures if counted else before.failures + 1
    retry_at = now + settings.backoff(failures)
    actions: list[Action] = []
    if not counted:
        word = "timed out" if state.phase.name == "TIMED_OUT" else "failed"
        actions.append(Event(objects.ref(obj), "Warning", f"{action.capitalize()}Failed",
                             f"{action} helper on node {node} {word} (attempt {failures} of "
                             f"{settings.helper_attempts}): {state.message}"))
        actions.append(Patch(kind_of(obj), objects.name(obj), objects.namespace(obj) or None,
                             objects.annotations_patch({
                                 keys.failures_key(action): str(failures),
                                 keys.LAST_FAILED_POD: state.pod_uid,
                                 keys.retry_after_key(action): objects.format_time(retry_at)})))
    actions.append(Delete("Pod", pod_name, settings.namespace, state.pod_uid or None))
    return actions, Attempts(failures, retry_at)


def reset(action: str) -> dict[str, None]:
    """Annotation values that clear the counters of ``action`` (merge-patch deletions)."""
    return {keys.failures_key(action): None, keys.retry_after_key(action): None}
