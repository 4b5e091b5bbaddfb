"""An in-memory Kubernetes API with the same face as provisioner.kube.Kube (the controller's
KubeApi protocol): objects as dicts, uid/resourceVersion/creationTimestamp on create,
finalizers honoured on delete, JSON and merge patches, uid preconditions. It records every call
as (verb, kind, namespace) so tests can check RBAC against what the controller really does."""

from __future__ import annotations

import copy
import itertools
import uuid
from typing import Any, Mapping

from provisioner.errors import AlreadyExists, Conflict, Invalid, KubeError, NotFound
from provisioner.objects import format_time


def merge(target: dict, patch: Mapping[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(target.get(k), dict):
            merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


def json_patch(obj: dict, ops: list[dict]) -> None:
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = obj
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if op["op"] == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op["value"]:
                raise Invalid("test failed", status=422)
        elif op["op"] == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            else:
                parent[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise Invalid(f"op {op['op']} not supported by the fake", status=422)


class FakeKube:
    def __init__(self, clock=lambda: 1_800_000_000.0):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.events: list[tuple[str, str, str, str]] = []   # (kind/name, type, reason, message)
        self.calls: list[tuple[str, str, str | None]] = []
        self.fail: dict[tuple[str, str], list[KubeError]] = {}   # (verb, kind) -> errors to raise
        self.clock = clock
        self._rv = itertools.count(1000)

    # -- helpers for tests ---------------------------------------------------------------------
    def put(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        m = obj.setdefault("metadata", {})
        m.setdefault("uid", str(uuid.uuid4()))
        m["resourceVersion"] = str(next(self._rv))
        m.setdefault("creationTimestamp", format_time(self.clock()))
        self.objects[(obj["kind"], m.get("namespace", ""), m["name"])] = obj
        return obj

    def find(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        return self.objects.get((kind, namespace or "", name))

    def all(self, kind: str) -> list[dict]:
        return [o for (k, _, _), o in self.objects.items() if k == kind]

    def _record(self, verb: str, kind: str, namespace: str | None) -> None:
        self.calls.append((verb, kind, namespace))
        errors = self.fail.get((verb, kind))
        if errors:
            raise errors.pop(0)

    # -- the KubeApi face ------------------------------------------------------------------------
    def get(self, kind, name, namespace=None):
        self._record("get", kind, namespace)
        obj = self.find(kind, name, namespace)
        return copy.deepcopy(obj) if obj else None

    def list(self, kind, namespace=None, label_selector=None, field_selector=None):
        self._record("list", kind, namespace)
        out = []
        for (k, ns, _), o in self.objects.items():
            if k != kind or (namespace is not None and ns != namespace):
                continue
            if label_selector:
                key, _, value = label_selector.partition("=")
                if (o["metadata"].get("labels") or {}).get(key) != value:
                    continue
            if field_selector:
                excluded = [f.split("!=")[1] for f in field_selector.split(",")]
                if (o.get("status") or {}).get("phase", "Pending") in excluded:
                    continue
            out.append(copy.deepcopy(o))
        return out, str(next(self._rv))

    def create(self, kind, body):
        ns = body["metadata"].get("namespace")
        self._record("create", kind, ns)
        if self.find(kind, body["metadata"]["name"], ns):
            raise AlreadyExists(f"{kind} {body['metadata']['name']} exists", status=409,
                                reason="AlreadyExists")
        return self.put({**copy.deepcopy(body), "kind": kind})

    def patch(self, kind, name, namespace, patch):
        self._record("patch", kind, namespace)
        obj = self.find(kind, name, namespace)
        if obj is None:
            raise NotFound(f"{kind} {name} not found", status=404)
        trial = copy.deepcopy(obj)
        if isinstance(patch, list):
            json_patch(trial, patch)
        else:
            merge(trial, patch)
        trial["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[(kind, namespace or "", name)] = trial
        self._finalize(kind, namespace, name)
        return copy.deepcopy(trial)

    def delete(self, kind, name, namespace=None, uid=None, force=False):
        self._record("delete", kind, namespace)
        obj = self.find(kind, name, namespace)
        if obj is None:
            return
        if uid and obj["metadata"]["uid"] != uid:
            raise Conflict("precondition failed: uid", status=409)
        obj["metadata"].setdefault("deletionTimestamp", format_time(self.clock()))
        if kind == "Pod" and not force and (obj.get("spec") or {}).get("nodeName") and \
                (obj.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            return     # as the API server: a running pod goes when its kubelet has stopped it
        self._finalize(kind, namespace, name)

    def event(self, involved, type_, reason, message):
        self._record("event", "Event", involved.get("namespace") or "default")
        self.events.append((f"{involved['kind']}/{involved['name']}", type_, reason, message))

    def _finalize(self, kind, namespace, name):
        obj = self.find(kind, name, namespace)
        if obj and obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            del self.objects[(kind, namespace or "", name)]

    def reasons(self) -> list[str]:
        return [r for _, _, r, _ in self.events]
