"""What a reconciler wants done: plain values, executed in order by the controller.

Reconcilers are pure functions from objects (and the time) to an ``Outcome``; the controller
turns each action into one API call through ``kube.py`` and stops at the first failure (the
next pass starts again from what the API then says, so every step is idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

Kind = Literal["PersistentVolumeClaim", "PersistentVolume", "Pod"]


@dataclass(frozen=True)
class Create:
    kind: Kind
    body: dict[str, Any]


@dataclass(frozen=True)
class Patch:
    kind: Kind
    name: str
    namespace: str | None
    patch: Any                 # a list = JSON patch; a dict = merge patch


@dataclass(frozen=True)
class Delete:
    kind: Kind
    name: str
    namespace: str | None
    uid: str | None = None     # precondition: only this very object, not a namesake
    force: bool = False        # gracePeriodSeconds 0: a pod whose node stopped answering


@dataclass(frozen=True)
class Event:
    involved: dict[str, str]   # ObjectReference (objects.ref)
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = Union[Create, Patch, Delete, Event]


@dataclass
class Outcome:
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None   # look again after this many seconds
    note: str = ""                        # one phrase for the debug log: what was decided

    def add(self, *actions: Action) -> "Outcome":
        self.actions.extend(a for a in actions if a is not None)
        return self

    def events(self) -> list[Event]:
        return [a for a in self.actions if isinstance(a, Event)]

    def of(self, cls: type) -> list[Any]:
        return [a for a in self.actions if isinstance(a, cls)]
