"""One helper Pod (setup, cleanup or teardown) driven from absent to done, with retries.

    absent    ─► attempts exhausted: give up (Warning) ─► the action's own follow-up
              ─► backing off: look again when it ends
              ─► else: create the Pod (Normal event), look again
    running, deleting ─► look again (stuck deleting: force-delete it first)
    succeeded ─► the action's own event, the Pod deleted, the action's follow-up
    failed, timed out ─► the failure counted, the Pod deleted, look again after the backoff

The three reconcilers differ only in what they say and what follows; a ``HelperRun`` holds that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from . import attempts, objects
from .actions import Action, Create, Delete, Event, Outcome
from .config import Settings
from .helper import JobResult, Phase, evaluate, force_delete, helper_pod, pod_name
from .helper import Action as HelperAction
from .objects import Obj
from .volume import VolumeRecord


@dataclass(frozen=True)
class HelperRun:
    """What one kind of helper run says and does around the shared state machine."""

    action: HelperAction             # setup | cleanup | teardown: the Pod, its counters, notes
    owner: Obj                       # the PVC or PV it works for: events and counters go there
    record: VolumeRecord             # the volume the Pod is made from
    pod: Obj | None                  # the helper Pod as read (None: there is none)
    start_reason: str                # Normal event when the Pod is created
    start_message: str
    give_up_reason: str              # Warning event when the attempts are exhausted,
    give_up_message: Callable[[int], str]   # its text from the number of failures
    give_up: Sequence[Action]        # what follows giving up
    done: Sequence[Action] | None = None    # what follows a success, after the Pod is deleted
    #                                         (None: success is taken before, as setup's PV is)
    done_note: str = ""
    done_reason: str = ""            # Normal event on success, the helper's message appended
    done_message: str = ""
    job_result: JobResult = "unknown"
    start_also: Sequence[Action] = ()       # said after the start event (a denied write)


def drive(run: HelperRun, settings: Settings, now: float, out: Outcome | None = None) -> Outcome:
    """The next step of ``run``, added to ``out`` (actions decided before it come first)."""
    out = out if out is not None else Outcome()
    owner, action, node = run.owner, run.action, run.record.node
    state = evaluate(run.pod, now, settings.helper_timeout)
    name = pod_name(action, run.record.pv_name)
    if state.phase is Phase.ABSENT:
        tries = attempts.Attempts.of(owner, action)
        if tries.exhausted(settings):
            out.note = f"{action} attempts exhausted"
            return out.add(Event(objects.ref(owner), "Warning", run.give_up_reason,
                                 run.give_up_message(tries.failures)), *run.give_up)
        wait = tries.wait(now)
        if wait is not None:
            out.requeue_after, out.note = wait, f"backing off after a failed {action}"
            return out
        out.add(Create("Pod", helper_pod(run.record, action, settings, run.job_result)),
                Event(objects.ref(owner), "Normal", run.start_reason, run.start_message),
                *run.start_also)
        out.requeue_after, out.note = settings.poll_interval, f"{action} started"
    elif state.phase in (Phase.RUNNING, Phase.DELETING, Phase.STUCK):
        if state.phase is Phase.STUCK:
            out.add(force_delete(run.pod, settings))
        out.requeue_after, out.note = settings.poll_interval, f"{action} {state.phase.value}"
    elif state.phase is Phase.SUCCEEDED and run.done is not None:
        if run.done_reason:
            detail = f": {state.message}" if state.message else ""
            out.add(Event(objects.ref(owner), "Normal", run.done_reason,
                          f"{run.done_message}{detail}"))
        out.add(Delete("Pod", name, settings.namespace, state.pod_uid or None), *run.done)
        out.note = run.done_note
    else:
        actions, tries = attempts.record_failure(owner, state, action, node, name, settings, now)
        out.add(*actions)
        out.requeue_after, out.note = settings.backoff(tries.failures), f"{action} failed"
    return out
