"""``cachesync-provisioner``: flags and environment, logging, then the controller.

Every setting is a flag, and also an environment variable ``CACHESYNC_PROVISIONER_<FLAG>``
(upper case, '-' -> '_'); a flag wins. Defaults are those of config.Settings.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import fields, replace
from typing import Mapping, Sequence

from cachesync import logs

from .config import Settings
from .errors import ProvisionerError

log = logging.getLogger(__name__)
ENV_PREFIX = "CACHESYNC_PROVISIONER_"
_HELP = {
    "namespace": "namespace of the helper Pods (the provisioner's own)",
    "helper_image": "image with the cachesync CLI, run by helper Pods",
    "image_pull_policy": "imagePullPolicy of helper Pods",
    "helper_service_account": "service account of helper Pods (needs no API access)",
    "registry_config_map": "ConfigMap with CACHESYNC_* registry settings for helper Pods",
    "registry_secret": "Secret with CACHESYNC_REGISTRY_USERNAME/PASSWORD for helper Pods",
    "node_root": "node state root on every node (hostPath)",
    "volume_base": "directory on the node where volumes appear (inside the node root)",
    "helper_timeout": "seconds a helper Pod may take before it counts as failed",
    "helper_attempts": "failed helper Pods before giving up on a step",
    "retry_base": "first backoff after a failure, seconds",
    "retry_max": "longest backoff, seconds",
    "resync_interval": "seconds between full re-lists",
    "poll_interval": "seconds between checks of a running helper Pod",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cachesync-provisioner",
        description="Kubernetes provisioner for cachesync cache volumes (provisioner "
                    "cachesync.io/cache).",
        epilog=f"Each flag can also be set as {ENV_PREFIX}<FLAG> (e.g. "
               f"{ENV_PREFIX}HELPER_IMAGE).")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster, "
                   "then ~/.kube/config)")
    p.add_argument("--context", default=None, help="kubeconfig context")
    p.add_argument("--log-format", choices=("text", "json"), default=None)
    p.add_argument("-v", "--verbose", action="count", default=0)
    defaults = Settings()
    for f in fields(Settings):
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                       help=f"{_HELP.get(f.name, '')} (default {getattr(defaults, f.name)})")
    return p


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    values = {}
    defaults = Settings()
    for f in fields(Settings):
        raw = getattr(args, f.name, None)
        if raw is None:
            raw = env.get(ENV_PREFIX + f.name.upper()) or None
        if raw is None:
            continue
        kind = type(getattr(defaults, f.name))
        try:
            value = kind(raw)
        except ValueError:
            raise ProvisionerError(f"--{f.name.replace('_', '-')} must be a {kind.__name__}, "
                                   f"not {raw!r}") from None
        if kind in (int, float) and value <= 0:
            raise ProvisionerError(f"--{f.name.replace('_', '-')} must be positive, not {raw!r}")
        values[f.name] = value
    s = replace(defaults, **values)
    if not (s.volume_base.rstrip("/") + "/").startswith(s.node_root.rstrip("/") + "/"):
        raise ProvisionerError(f"--volume-base {s.volume_base} must be inside --node-root "
                               f"{s.node_root} (helper Pods mount only the node root)")
    return s


def own_image_and_namespace(kube, settings: Settings, args: argparse.Namespace,
                            env: Mapping[str, str]) -> Settings:
    """In a Pod (POD_NAME/POD_NAMESPACE from the downward API) and without an explicit
    --helper-image/--namespace: helper Pods use the provisioner's own image and namespace, so a
    kustomize ``images:`` override changes both at once."""
    pod_name, pod_ns = env.get("POD_NAME"), env.get("POD_NAMESPACE")
    if not pod_name or not pod_ns:
        return settings
    if args.namespace is None and not env.get(ENV_PREFIX + "NAMESPACE"):
        settings = replace(settings, namespace=pod_ns)
    if args.helper_image is None and not env.get(ENV_PREFIX + "HELPER_IMAGE"):
        pod = kube.get("Pod", pod_name, pod_ns)
        containers = (pod or {}).get("spec", {}).get("containers") or []
        if containers and containers[0].get("image"):
            settings = replace(settings, helper_image=containers[0]["image"])
    return settings


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    args = build_parser().parse_args(argv)
    logs.configure(args.log_format or env.get(ENV_PREFIX + "LOG_FORMAT") or "text",
                   args.verbose)
    try:
        settings = settings_from(args, env)
        from .controller import Controller
        from .kube import Kube

        kube = Kube.connect(args.kubeconfig, args.context)
        settings = own_image_and_namespace(kube, settings, args, env)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        Controller(kube, settings).run(stop, kube.watch)
        return 0
    except ProvisionerError as e:
        print(f"cachesync-provisioner: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
