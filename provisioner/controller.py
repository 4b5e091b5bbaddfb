"""The controller: watches wired to the pure reconcilers, and their actions applied via kube.py.

Why a plain kubernetes-client controller and not kopf: the provisioner watches built-in kinds
(PVCs, PVs, Pods), keeps its little state in annotations and finalizers on those objects, and
its decisions are pure functions (provision.py, release.py, completion.py) that need no
framework. kopf would add its own state annotations, a handler registry, an asyncio runtime and
a dependency tree, for nothing we use. The loop here is level-triggered: a watch event or a
periodic re-list only queues a key; the worker reads the current objects, asks the reconciler
what to do, and applies that in order, so a missed event or a crash half way is repaired on the
next pass. One replica (Deployment strategy Recreate); there is no leader election.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Hashable, Iterator, Mapping, Protocol

from . import completion, keys, objects, provision, release
from .actions import Action, Create, Delete, Event, Outcome, Patch
from .config import Settings
from .errors import AlreadyExists, Conflict, Invalid, KubeError, NotFound
from .helper import pod_name
from .volume import pv_name_for
from .workqueue import WorkQueue

log = logging.getLogger(__name__)

FINISHED_PODS = "status.phase!=Pending,status.phase!=Running,status.phase!=Unknown"


class KubeApi(Protocol):
    """What the controller needs of kube.Kube (a fake in the tests implements the same)."""

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict | None: ...
    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[dict], str]: ...
    def create(self, kind: str, body: Mapping[str, Any]) -> dict: ...
    def patch(self, kind: str, name: str, namespace: str | None, patch: Any) -> dict: ...
    def delete(self, kind: str, name: str, namespace: str | None = None,
               uid: str | None = None, force: bool = False) -> None: ...
    def event(self, involved: Mapping[str, str], type_: str, reason: str, message: str) -> None: ...


class Controller:
    def __init__(self, kube: KubeApi, settings: Settings, clock: Callable[[], float] = time.time):
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self.queue = WorkQueue()
        self._errors: dict[Hashable, int] = {}

    # -- reading what a reconciler needs -------------------------------------------------------
    def claim_view(self, namespace: str, name: str) -> provision.ClaimView | None:
        pvc = self.kube.get("PersistentVolumeClaim", name, namespace)
        if pvc is None:
            return None
        sc_name = objects.spec(pvc).get("storageClassName")
        sc = self.kube.get("StorageClass", sc_name) if sc_name else None
        if (sc is None or sc.get("provisioner") != keys.PROVISIONER) and \
                keys.CLAIM_FINALIZER not in objects.finalizers(pvc):
            return provision.ClaimView(pvc, sc)
        node_name = objects.annotations_of(pvc).get(keys.SELECTED_NODE)
        pv_name = pv_name_for(objects.uid(pvc))
        ns = self.settings.namespace
        return provision.ClaimView(
            pvc=pvc, storage_class=sc,
            node=self.kube.get("Node", node_name) if node_name else None,
            namespace=self.kube.get("Namespace", namespace),
            pv=self.kube.get("PersistentVolume", pv_name),
            setup_pod=self.kube.get("Pod", pod_name("setup", pv_name), ns),
            cleanup_pod=self.kube.get("Pod", pod_name("cleanup", pv_name), ns))

    def volume_view(self, name: str) -> release.VolumeView | None:
        pv = self.kube.get("PersistentVolume", name)
        if pv is None or not release.is_ours(pv):
            return None
        node_name = objects.annotations_of(pv).get(keys.VOLUME_PREFIX + "node")
        return release.VolumeView(
            pv=pv, node=self.kube.get("Node", node_name) if node_name else None,
            teardown_pod=self.kube.get("Pod", pod_name("teardown", name), self.settings.namespace))

    def claim_uses(self, pod: dict) -> dict[str, completion.ClaimUse]:
        mounts = completion.claim_mounts(pod)
        if not mounts:
            return {}
        ns = objects.namespace(pod)
        pods, _ = self.kube.list("Pod", ns)
        uses = {}
        for m in mounts:
            pvc = self.kube.get("PersistentVolumeClaim", m.claim, ns)
            if pvc is None:
                uses[m.claim] = completion.ClaimUse(None)
                continue
            sc_name = objects.spec(pvc).get("storageClassName")
            volume = objects.spec(pvc).get("volumeName")
            users = [p for p in pods
                     if any(x.claim == m.claim for x in completion.claim_mounts(p))]
            uses[m.claim] = completion.ClaimUse(
                pvc=pvc, storage_class=self.kube.get("StorageClass", sc_name) if sc_name else None,
                pv=self.kube.get("PersistentVolume", volume) if volume else None, users=users)
        return uses

    # -- one pass over one key -----------------------------------------------------------------
    def reconcile(self, key: tuple) -> Outcome:
        now = self.clock()
        if key[0] == "claim":
            view = self.claim_view(key[1], key[2])
            outcome = provision.reconcile_claim(view, self.settings, now) if view else Outcome(
                note="claim gone")
        elif key[0] == "volume":
            vview = self.volume_view(key[1])
            outcome = release.reconcile_volume(vview, self.settings, now) if vview else Outcome(
                note="not a cachesync volume")
        elif key[0] == "pod":
            pod = self.kube.get("Pod", key[2], key[1])
            outcome = completion.reconcile_pod(pod, self.claim_uses(pod)) if pod else Outcome(
                note="pod gone")
        else:
            raise ValueError(f"unknown key {key!r}")
        self.apply(outcome.actions)
        return outcome

    def apply(self, actions: list[Action]) -> None:
        """Apply in order; stop at the first failure that matters (raise it)."""
        for action in actions:
            if isinstance(action, Event):
                try:
                    self.kube.event(action.involved, action.type, action.reason, action.message)
                except KubeError as e:
                    log.warning("cannot record event %s: %s", action.reason, e)
                continue
            log.info("%s", describe(action))
            try:
                if isinstance(action, Create):
                    self.kube.create(action.kind, action.body)
                elif isinstance(action, Patch):
                    self.kube.patch(action.kind, action.name, action.namespace, action.patch)
                elif isinstance(action, Delete):
                    self.kube.delete(action.kind, action.name, action.namespace, action.uid,
                                     action.force)
            except AlreadyExists:
                log.debug("already exists: %s", describe(action))
            except NotFound:
                log.debug("gone meanwhile: %s; reading again next pass", describe(action))
                return
            except Conflict:
                if isinstance(action, Delete):
                    log.debug("precondition failed (a namesake): %s", describe(action))
                    continue
                raise
            except Invalid as e:
                if isinstance(action, Patch) and isinstance(action.patch, list):
                    # a JSON patch "test" failed: the list changed under us; read again
                    raise Conflict(str(e), status=e.status, reason=e.reason) from e
                raise

    def process(self, key: tuple) -> None:
        """Reconcile ``key`` and queue it again when the outcome or an error asks for it."""
        try:
            outcome = self.reconcile(key)
        except KubeError as e:
            n = self._errors.get(key, 0) + 1
            self._errors[key] = n
            delay = self.settings.backoff(n) if not e.transient else min(
                self.settings.retry_max, 0.5 * 2 ** min(n, 10))
            (log.warning if e.transient else log.error)("%s: %s (again in %.0fs)",
                                                         "/".join(key[1:]), e, delay)
            self.queue.add(key, delay)
            return
        except Exception:  # noqa: BLE001  # a bug met on one object must not stop all the others
            log.exception("%s: unexpected error (a bug; please report it); again in %.0fs",
                          "/".join(key[1:]), self.settings.retry_max)
            self.queue.add(key, self.settings.retry_max)
            return
        self._errors.pop(key, None)
        if outcome.actions or outcome.requeue_after:
            log.debug("%s: %s", "/".join(key[1:]), outcome.note)
        if outcome.requeue_after is not None:
            self.queue.add(key, outcome.requeue_after)

    # -- watches -------------------------------------------------------------------------------
    def keys_for(self, kind: str, obj: Mapping[str, Any]) -> list[tuple]:
        ns, name = objects.namespace(obj), objects.name(obj)
        if kind == "PersistentVolumeClaim":
            # as external provisioners do: only claims the PV controller handed to us (it sets
            # the storage-provisioner annotation once a node is selected, or at once for an
            # Immediate class), or that still carry our finalizer
            ann = objects.annotations_of(obj)
            if keys.PROVISIONER in (ann.get(keys.STORAGE_PROVISIONER),
                                    ann.get(keys.BETA_STORAGE_PROVISIONER)) or \
                    keys.CLAIM_FINALIZER in objects.finalizers(obj):
                return [("claim", ns, name)]
            return []
        if kind == "PersistentVolume":
            return [("volume", name)]
        if kind == "Pod" and ns == self.settings.namespace and \
                objects.labels(obj).get(keys.MANAGED_BY) == keys.MANAGER:
            action = objects.labels(obj).get(keys.ACTION)
            if action == "teardown":
                return [("volume", objects.labels(obj).get(keys.FOR_VOLUME, ""))]
            ann = objects.annotations_of(obj)
            return [("claim", ann.get(keys.VOLUME_PREFIX + "pvc-namespace", ""),
                     ann.get(keys.VOLUME_PREFIX + "pvc-name", ""))]
        if kind == "Pod":   # a finished pod: only those that mount claims can release any
            return [("pod", ns, name)] if completion.claim_mounts(obj) else []
        return []

    WATCHES = (
        ("PersistentVolumeClaim", None, None, None),
        ("PersistentVolume", None, None, None),
        ("Pod", None, None, FINISHED_PODS),
    )

    def watch_forever(self, kind: str, namespace: str | None, label_selector: str | None,
                      field_selector: str | None, stop: threading.Event,
                      watch: Callable[..., Iterator[tuple[str, dict]]]) -> None:
        """List (queueing everything: the periodic resync), then watch until the server ends
        the watch after ``resync_interval``; on errors wait and start again."""
        failures = 0
        while not stop.is_set():
            try:
                items, rv = self.kube.list(kind, namespace, label_selector, field_selector)
                for obj in items:
                    obj.setdefault("kind", kind)
                    for key in self.keys_for(kind, obj):
                        self.queue.add(key)
                for _type, obj in watch(kind, namespace, label_selector, field_selector, rv,
                                        max(1, int(self.settings.resync_interval))):
                    for key in self.keys_for(kind, obj):
                        self.queue.add(key)
                    if stop.is_set():
                        return
                failures = 0
            except Exception as e:  # noqa: BLE001  # a watch thread must never die (KubeError or
                failures += 1       # a malformed event alike): wait, then list and watch again
                delay = min(self.settings.retry_max, 2 ** min(failures, 8))
                log.warning("watch %s: %s (again in %ss)", kind, e, delay,
                            exc_info=not isinstance(e, KubeError))
                stop.wait(delay)

    def run(self, stop: threading.Event, watch: Callable[..., Iterator[tuple[str, dict]]]) -> None:
        watches = [*self.WATCHES, ("Pod", self.settings.namespace,
                                   f"{keys.MANAGED_BY}={keys.MANAGER}", None)]
        for spec in watches:
            threading.Thread(target=self.watch_forever, args=(*spec, stop, watch), daemon=True,
                             name=f"watch-{spec[0]}").start()
        log.info("cachesync provisioner running: provisioner %s, helper image %s, helper "
                 "namespace %s", keys.PROVISIONER, self.settings.helper_image,
                 self.settings.namespace)
        while not stop.is_set():
            key = self.queue.get(timeout=1.0)
            if key is not None:
                self.process(key)  # type: ignore[arg-type]  # keys are tuples


def describe(action: Action) -> str:
    def where(namespace: str | None, name: str) -> str:
        return f"{namespace}/{name}" if namespace else name

    if isinstance(action, Create):
        body = action.body
        return f"create {action.kind} {where(objects.namespace(body), objects.name(body))}"
    if isinstance(action, Patch):
        return f"patch {action.kind} {where(action.namespace, action.name)}"
    if isinstance(action, Delete):
        return f"delete {action.kind} {where(action.namespace, action.name)}"
    return f"event {action.reason}"
