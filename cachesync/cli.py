"""The ``cachesync`` command: argument parsing and wiring only; the work lives in the modules."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Callable, Mapping, Sequence

from . import __version__, logs, settings as settings_mod
from .errors import CachesyncError, UsageError
from .node import Node

log = logging.getLogger("cachesync")

HELPER_VARS = {
    # flag dest: (environment variable, help)
    "vol_dir": ("VOL_DIR", "directory where the volume appears (the PV's hostPath)"),
    "vol_name": ("VOL_NAME", "volume (PV) name; unique per volume on the node"),
    "vol_mode": ("VOL_MODE", "Filesystem (Block is refused)"),
    "vol_size_bytes": ("VOL_SIZE_BYTES", "requested size in bytes (informational)"),
    "pvc_namespace": ("PVC_NAMESPACE", "namespace of the claim: the cache's namespace"),
    "pvc_name": ("PVC_NAME", "name of the claim"),
    "cache_name": ("CACHE_NAME", "cache to use (default: the claim's name)"),
    "cache_write": ("CACHE_WRITE", "true: changes may be committed back (default false)"),
    "job_result": ("JOB_RESULT", "teardown: succeeded, failed or unknown (default unknown)"),
}

EPILOG = """\
Environment: CACHESYNC_ROOT, CACHESYNC_CONFIG, CACHESYNC_REGISTRY, CACHESYNC_INSECURE,
CACHESYNC_REGISTRY_USERNAME, CACHESYNC_REGISTRY_PASSWORD, CACHESYNC_COMMIT_ON,
CACHESYNC_MAX_LAYERS, CACHESYNC_NODE_ID, CACHESYNC_LOG_FORMAT. Flags win over environment,
environment over the config file."""


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("node and registry (also as CACHESYNC_* variables)")
    sup = argparse.SUPPRESS
    g.add_argument("--root", default=sup, help="node state root (default /var/lib/cachesync)")
    g.add_argument("--config", default=sup, help="YAML settings file")
    g.add_argument("--node-id", default=sup, help="this node's id (default: made once, kept)")
    g.add_argument("--registry", default=sup, help="host[:port]/prefix of the OCI registry")
    g.add_argument("--insecure", action="store_const", const=True, default=sup,
                   help="talk plain http to the registry (default: verified TLS)")
    g.add_argument("--commit-on", choices=("success", "always"), default=sup,
                   help="commit writable volumes of jobs that did not fail (success, default) "
                        "or of every job (always)")
    g.add_argument("--max-layers", type=int, default=sup,
                   help="flatten a cache whose layer chain would exceed this (default 16)")
    g.add_argument("--log-format", choices=("text", "json"), default=sup)
    g.add_argument("-v", "--verbose", action="count", default=sup)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cachesync",
        description="Copy-on-write build-cache volumes, synced between nodes through an OCI "
                    "registry.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"cachesync {__version__}")
    _common(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=description,
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
        _common(sp)
        return sp

    helper = add("helper", "set up or tear down a cache volume (what a helper Pod runs)",
                 "Volume lifecycle, driven by the local-path-provisioner style environment "
                 "(VOL_DIR, VOL_NAME, ...); each variable can also be given as a flag.")
    hsub = helper.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("setup", "make VOL_DIR a copy-on-write view of the cache"),
                         ("teardown", "commit (if writable and the job did not fail), unmount "
                                      "and remove the volume")):
        hp = hsub.add_parser(action, help=text, description=text)
        _common(hp)
        for dest, (var, help_text) in HELPER_VARS.items():
            hp.add_argument("--" + dest.replace("_", "-"), dest=dest, default=argparse.SUPPRESS,
                            help=f"{help_text} [${var}]")

    st = add("status", "show the caches and volumes of this node",
             "Caches on this node: generation, layers, size, volumes in use, last commit, and "
             "with a registry the remote generation and what waits to be published.")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--offline", action="store_true", help="do not ask the registry")

    gc = add("gc", "remove leftovers of crashed volumes and generations no longer needed",
             "Removes containers and mounts of volumes whose record is gone or broken, and "
             "old generations, keeping the newest of every cache and staying within a budget.")
    gc.add_argument("--budget", dest="gc_budget", default=argparse.SUPPRESS,
                    help="disk budget for cache images, e.g. 20Gi")
    gc.add_argument("--dry-run", action="store_true", help="only say what would be removed")

    sy = add("sync", "publish this node's commits to the registry (daemon, or --once)",
             "Pushes every journaled commit: missing blobs only, manifest, then tags. As a "
             "daemon it also keeps warm the configured caches and those used on this node, and "
             "serves Prometheus metrics.")
    sy.add_argument("--once", action="store_true", help="publish what is pending, then exit")
    sy.add_argument("--interval", type=float, default=argparse.SUPPRESS,
                    help="seconds between journal scans (default 5)")
    sy.add_argument("--metrics-address", default=argparse.SUPPRESS,
                    help="host:port for Prometheus metrics (default 127.0.0.1:9464, '' = off)")
    sy.add_argument("--warm", action="append", default=argparse.SUPPRESS,
                    help="a cache <namespace>/<name> to keep warm (repeatable)")

    wm = add("warm", "pull caches onto this node ahead of time",
             "Fetches the newest generation of each cache from the registry, only the layers "
             "this node lacks.")
    wm.add_argument("caches", nargs="+", metavar="NAMESPACE/NAME")
    return p


def helper_inputs(args: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """The helper protocol values: a flag wins over its environment variable."""
    out = {}
    for dest, (var, _) in HELPER_VARS.items():
        value = args.get(dest, env.get(var))
        if value is not None:
            out[dest] = str(value)
    return out


class NodeOpener:
    """Opens the node (creating its root) only when a command has validated its input."""

    def __init__(self, settings: settings_mod.Settings):
        self.settings = settings
        self._node: Node | None = None

    def __call__(self, needs_registry: str | None = None) -> Node:
        if needs_registry and self.settings.registry is None:
            raise UsageError(f"{needs_registry} needs a registry: set --registry or "
                             "CACHESYNC_REGISTRY")
        if self._node is None:
            self._node = Node.open(self.settings)
        return self._node


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> settings_mod.Settings:
    flags = {k: v for k, v in vars(args).items()}
    if isinstance(flags.get("warm"), list):
        flags["warm"] = tuple(flags["warm"])
    return settings_mod.build(flags, env)


def cmd_helper(open_node: NodeOpener, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from . import volume

    values = helper_inputs(vars(args), env)
    if args.action == "setup":
        spec = volume.VolumeSpec.from_inputs(values)  # validates everything, touches nothing
        node = open_node()
        if node.settings.registry is not None:
            from . import pull
            pull.refresh_for_setup(node, spec.cache)
        result = volume.setup(node, spec)
    else:
        target = volume.teardown_target(values)  # VOL_NAME (+ VOL_DIR) is enough
        result = volume.teardown(open_node(), target, values.get("job_result", "unknown"))
    print(result.summary())
    return 0


def cmd_status(open_node: NodeOpener, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import functools

    from . import status

    node = open_node()
    remote_lookup = None
    if node.settings.registry is not None and not args.offline:
        from . import pull
        remote_lookup = functools.partial(pull.remote_newest, node)
    report = status.collect(node, remote_lookup)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.to_text())
    return 0


def cmd_gc(open_node: NodeOpener, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from . import gc

    result = gc.run(open_node(), dry_run=args.dry_run)
    print(result.summary())
    return 0


def cmd_sync(open_node: NodeOpener, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from . import sync

    node = open_node(needs_registry="sync")
    if args.once:
        result = sync.run_once(node)
        print(result.summary())
        return 0 if result.ok else 1
    sync.run_daemon(node)
    return 0


def cmd_warm(open_node: NodeOpener, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from . import pull
    from .names import CacheRef

    refs = [CacheRef.parse(c) for c in args.caches]  # all validated before anything is touched
    node = open_node(needs_registry="warm")
    failed = 0
    for ref in refs:
        result = pull.warm(node, ref)
        print(result.summary())
        failed += not result.ok
    return 1 if failed else 0


COMMANDS: dict[str, Callable[[NodeOpener, argparse.Namespace, Mapping[str, str]], int]] = {
    "helper": cmd_helper, "status": cmd_status, "gc": cmd_gc, "sync": cmd_sync, "warm": cmd_warm,
}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args, env)
        logs.configure(settings.log_format, getattr(args, "verbose", 0) or 0)
        if os.geteuid() != 0:
            raise UsageError("cachesync must run as root (it mounts filesystems and runs buildah)")
        return COMMANDS[args.command](NodeOpener(settings), args, env)
    except CachesyncError as e:
        print(f"cachesync: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cachesync: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
