"""The one adapter to the Kubernetes API. Nothing else in the provisioner imports ``kubernetes``.

Objects go in and come out as plain JSON dicts, exactly as the API serves them (responses are
read raw, never through the client's models), so the reconcilers see real object shapes.
Every failure becomes a ``KubeError`` (see errors.py) carrying the status, the API's reason and
its message cut short; the client's exception text (which holds HTTP headers) is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import urllib3
from kubernetes import client, config as kube_config, watch as kube_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from . import objects
from .errors import (AlreadyExists, Conflict, Forbidden, Invalid, KubeError, NotFound,
                     ProvisionerError, Unauthorized, Unavailable, shorten)

log = logging.getLogger(__name__)

COMPONENT = "cachesync-provisioner"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class _Kind:
    api: str                 # "core" or "storage"
    singular: str            # method stem: persistent_volume_claim, storage_class, ...
    namespaced: bool


KINDS = {
    "PersistentVolumeClaim": _Kind("core", "persistent_volume_claim", True),
    "PersistentVolume": _Kind("core", "persistent_volume", False),
    "Pod": _Kind("core", "pod", True),
    "Node": _Kind("core", "node", False),
    "Namespace": _Kind("core", "namespace", False),
    "Event": _Kind("core", "event", True),
    "StorageClass": _Kind("storage", "storage_class", False),
}


def translate(e: Exception, what: str) -> KubeError:
    """The most specific KubeError for a client failure; ``what`` names the call."""
    if isinstance(e, ApiException):
        status = e.status or 0
        reason, message = None, ""
        try:
            body = json.loads(e.body) if e.body else {}
            if isinstance(body, dict):
                reason, message = body.get("reason"), body.get("message", "")
        except (ValueError, TypeError):
            message = ""
        text = f"{what}: {status or 'no answer'} {reason or e.reason or ''}".rstrip()
        if message:
            text += f": {shorten(message)}"
        cls: type[KubeError]
        if status == 401:
            cls = Unauthorized
            text += " (the service account token is missing, expired or not accepted)"
        elif status == 403:
            cls = Forbidden
            text += " (RBAC: see provisioner/deploy/rbac.yaml)"
        elif status == 404:
            cls = NotFound
        elif status == 409:
            cls = AlreadyExists if reason == "AlreadyExists" else Conflict
        elif status == 422:
            cls = Invalid
        elif status == 429 or status >= 500 or status == 0:
            cls = Unavailable
        else:
            cls = KubeError
        return cls(text, status=status or None, reason=reason)
    if isinstance(e, (urllib3.exceptions.HTTPError, OSError)):
        return Unavailable(f"{what}: API server unreachable: {shorten(type(e).__name__)}")
    return KubeError(f"{what}: {shorten(str(e))}")


class Kube:
    """Get, list, watch, create, patch and delete the kinds in KINDS, and record events."""

    def __init__(self, api_client: Any, request_timeout: float = 30.0):
        self._core = client.CoreV1Api(api_client)
        self._storage = client.StorageV1Api(api_client)
        self._timeout = request_timeout

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None,
                request_timeout: float = 30.0) -> "Kube":
        """In-cluster service account when running in a Pod, else a kubeconfig."""
        try:
            if kubeconfig is None:
                try:
                    kube_config.load_incluster_config()
                except ConfigException:
                    kube_config.load_kube_config(context=context)
            else:
                kube_config.load_kube_config(config_file=kubeconfig, context=context)
        except (ConfigException, OSError) as e:
            raise ProvisionerError(f"no Kubernetes credentials: not in a cluster and no usable "
                                   f"kubeconfig ({shorten(str(e), 120)})") from e
        return cls(client.ApiClient(), request_timeout)

    # -- plumbing ------------------------------------------------------------------------------
    def _method(self, kind: str, verb: str, all_namespaces: bool = False) -> tuple[Callable, _Kind]:
        k = KINDS[kind]
        api = self._core if k.api == "core" else self._storage
        if verb == "list" and k.namespaced and all_namespaces:
            return getattr(api, f"list_{k.singular}_for_all_namespaces"), k
        stem = f"namespaced_{k.singular}" if k.namespaced else k.singular
        return getattr(api, f"{verb}_{stem}"), k

    def _call(self, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
            data = resp.data
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            raise translate(e, what) from e
        return json.loads(data) if data else {}

    @staticmethod
    def _ns(k: _Kind, namespace: str | None) -> dict[str, str]:
        if k.namespaced:
            if not namespace:
                raise ValueError("namespace required")
            return {"namespace": namespace}
        return {}

    # -- verbs ---------------------------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        fn, k = self._method(kind, "read")
        try:
            obj = self._call(f"get {kind} {namespace + '/' if namespace else ''}{name}", fn,
                             name=name, **self._ns(k, namespace))
        except NotFound:
            return None
        obj.setdefault("kind", kind)
        return obj

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """(items, resourceVersion); all namespaces when ``namespace`` is None."""
        fn, k = self._method(kind, "list", all_namespaces=namespace is None)
        kwargs: dict[str, Any] = {}
        if k.namespaced and namespace is not None:
            kwargs["namespace"] = namespace
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        out = self._call(f"list {kind}", fn, **kwargs)
        items = out.get("items") or []
        for item in items:
            item.setdefault("kind", kind)
        return items, (out.get("metadata") or {}).get("resourceVersion", "")

    def create(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        fn, k = self._method(kind, "create")
        ns = objects.namespace(body) or None
        return self._call(f"create {kind} {objects.name(body)}", fn, body=dict(body),
                          **self._ns(k, ns))

    def patch(self, kind: str, name: str, namespace: str | None, patch: Any) -> dict[str, Any]:
        """A list is sent as a JSON patch, a dict as a merge patch."""
        fn, k = self._method(kind, "patch")
        content = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        return self._call(f"patch {kind} {namespace + '/' if namespace else ''}{name}", fn,
                          name=name, body=patch, _content_type=content, **self._ns(k, namespace))

    def delete(self, kind: str, name: str, namespace: str | None = None,
               uid: str | None = None, force: bool = False) -> None:
        """Delete (only the object with ``uid`` when given; at once with ``force``); gone
        already is fine."""
        fn, k = self._method(kind, "delete")
        body: dict[str, Any] = {"preconditions": {"uid": uid}} if uid else {}
        if force:
            body["gracePeriodSeconds"] = 0
        try:
            self._call(f"delete {kind} {namespace + '/' if namespace else ''}{name}", fn,
                       name=name, body=body, **self._ns(k, namespace))
        except NotFound:
            pass

    def event(self, involved: Mapping[str, str], type_: str, reason: str, message: str,
              now: float | None = None) -> None:
        """Record an Event on ``involved``; repeats of the same reason and message are counted
        on one Event, as kubectl describe shows them ("x3 over 5m")."""
        now = time.time() if now is None else now
        stamp = objects.format_time(now)
        digest = hashlib.sha256(f"{involved.get('uid')}|{reason}|{message}".encode()).hexdigest()
        ns = involved.get("namespace") or "default"
        name = f"{involved.get('name', 'object')[:200]}.{digest[:16]}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": dict(involved), "reason": reason, "message": message[:1024],
            "type": type_, "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT, "reportingInstance": COMPONENT,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        try:
            self.create("Event", body)
        except AlreadyExists:
            current = self.get("Event", name, ns) or {}
            self.patch("Event", name, ns, {"count": int(current.get("count") or 1) + 1,
                                           "lastTimestamp": stamp})

    def watch(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None, resource_version: str | None = None,
              timeout_seconds: int = 300) -> Iterator[tuple[str, dict[str, Any]]]:
        """(ADDED|MODIFIED|DELETED, object) until the server ends the watch; KubeError (410
        Gone included) when the caller must list again."""
        fn, k = self._method(kind, "list", all_namespaces=namespace is None)
        # deserialize stays on: the client's ERROR handling (410 Gone) needs it; we read
        # raw_object, the event's object exactly as the API sent it.
        kwargs: dict[str, Any] = {"timeout_seconds": timeout_seconds,
                                  "allow_watch_bookmarks": True}
        if k.namespaced and namespace is not None:
            kwargs["namespace"] = namespace
        for key, value in (("label_selector", label_selector), ("field_selector", field_selector),
                           ("resource_version", resource_version)):
            if value:
                kwargs[key] = value
        w = kube_watch.Watch()
        try:
            for event in w.stream(fn, **kwargs):
                obj = event.get("raw_object") or {}
                if event.get("type") == "BOOKMARK":
                    continue
                obj.setdefault("kind", kind)
                yield event["type"], obj
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            raise translate(e, f"watch {kind}") from e
        finally:
            w.stop()
