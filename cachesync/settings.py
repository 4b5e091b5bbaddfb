"""Settings: one typed tree with a documented default per field, built once at the entry point.

Sources, strongest first: command-line flags, environment (``CACHESYNC_*``), a YAML file
(``--config`` / ``CACHESYNC_CONFIG``), defaults. No other module reads the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from .errors import ConfigError

DEFAULT_ROOT = Path("/var/lib/cachesync")
CommitOn = Literal["success", "always"]
Compression = Literal["zstd", "gzip"]

_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")
_PREFIX = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


@dataclass(frozen=True)
class RegistrySettings:
    """Where caches are published: repository ``<host>/<prefix>/<namespace>/<name>``."""

    host: str                               # registry host[:port]
    prefix: str = "cachesync"               # path prefix inside the registry
    insecure: bool = False                  # plain http instead of verified TLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never printed
    docker_config: Path | None = None       # a docker config.json with credentials
    timeout: float = 10.0                   # seconds per request before giving up on it
    setup_timeout: float = 60.0             # seconds a lazy pull on setup may take in all
    retry_attempts: int = 5                 # tries of a transient failure (push side)
    retry_max_wait: float = 8.0             # longest backoff between tries, seconds
    parallel: int = 4                       # blobs moved at once
    compression: Compression = "zstd"       # layer compression: zstd, or gzip for docker clients
    keep_generations: int = 10              # generations kept per cache in the registry

    @property
    def url(self) -> str:
        return f"{self.host}/{self.prefix}" if self.prefix else self.host


@dataclass(frozen=True)
class SyncSettings:
    interval: float = 5.0                   # seconds between journal scans of the daemon
    refresh_interval: float = 60.0          # seconds between refreshes of caches used here
    warm: tuple[str, ...] = ()              # caches (<namespace>/<name>) the daemon keeps warm
    metrics_address: str = "127.0.0.1:9464" # where the daemon serves Prometheus metrics ("" = off)


@dataclass(frozen=True)
class Settings:
    root: Path = DEFAULT_ROOT               # everything this node keeps
    node_id: str | None = None              # default: generated once and kept under root
    commit_on: CommitOn = "success"         # commit writable volumes of jobs that did not fail
    max_layers: int = 16                    # flatten a cache whose chain would grow past this
    gc_budget_bytes: int | None = None      # disk budget for gc (None: keep newest two only)
    lock_timeout: float = 300.0             # seconds to wait for a per-cache lock
    log_format: Literal["text", "json"] = "text"
    registry: RegistrySettings | None = None
    sync: SyncSettings = SyncSettings()


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{what} must be true or false, not {value!r}")


def _number(value: Any, what: str, kind: type = float, minimum: float = 0) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{what} must be at least {minimum}, not {value!r}")
    return number


def parse_size(value: Any, what: str = "size") -> int:
    """``1048576``, ``512Mi``, ``10G`` -> bytes."""
    m = re.match(r"^\s*(\d+)\s*([KMGT]i?)?B?\s*$", str(value), re.I)
    if not m:
        raise ConfigError(f"{what} must be a byte count like 500Mi or 20G, not {value!r}")
    unit = (m.group(2) or "").upper()
    base = 1024 if unit.endswith("I") else 1000
    power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit[:1]]
    return int(m.group(1)) * base**power


def parse_registry(url: str) -> tuple[str, str]:
    """``host[:port]/prefix`` -> (host, prefix), with a clear error for anything else."""
    text = url.strip()
    if "://" in text:
        raise ConfigError(f"registry {url!r}: give host[:port]/prefix without a scheme "
                          "(use --insecure for plain http)")
    host, _, prefix = text.partition("/")
    prefix = prefix.strip("/")
    if not host or not _HOST.match(host):
        raise ConfigError(f"registry {url!r}: {host!r} is not a host[:port]")
    if prefix and not _PREFIX.match(prefix):
        raise ConfigError(f"registry {url!r}: prefix {prefix!r} is not a valid repository path "
                          "(lowercase letters, digits, separators '.', '_', '-', '/')")
    return host, prefix


def load_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    return data


def build(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags (argparse names, None = not given), environment and config file."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = env or {}
    config_path = flags.get("config") or env.get("CACHESYNC_CONFIG")
    f = load_file(Path(config_path) if config_path else None)
    freg = f.get("registry") or {}
    fsync = f.get("sync") or {}
    if not isinstance(freg, dict) or not isinstance(fsync, dict):
        raise ConfigError("config file: 'registry' and 'sync' must be mappings")

    def pick(flag: str, var: str, file_value: Any = None, default: Any = None) -> Any:
        if flag in flags:
            return flags[flag]
        if var in env and env[var] != "":
            return env[var]
        return file_value if file_value is not None else default

    s = Settings()
    commit_on = pick("commit_on", "CACHESYNC_COMMIT_ON", f.get("commit_on"), s.commit_on)
    if commit_on not in ("success", "always"):
        raise ConfigError(f"commit-on must be 'success' or 'always', not {commit_on!r}")
    fmt = pick("log_format", "CACHESYNC_LOG_FORMAT", f.get("log_format"), s.log_format)
    if fmt not in ("text", "json"):
        raise ConfigError(f"log format must be 'text' or 'json', not {fmt!r}")
    budget = pick("gc_budget", "CACHESYNC_GC_BUDGET", f.get("gc_budget"))
    node_id = pick("node_id", "CACHESYNC_NODE_ID", f.get("node_id"))
    if node_id is not None and not re.fullmatch(r"[a-z0-9]{1,32}", str(node_id)):
        raise ConfigError(f"node id {node_id!r} must be 1-32 lowercase letters or digits")
    s = replace(
        s,
        root=Path(pick("root", "CACHESYNC_ROOT", f.get("root"), s.root)),
        node_id=node_id,
        commit_on=commit_on,
        max_layers=_number(pick("max_layers", "CACHESYNC_MAX_LAYERS", f.get("max_layers"),
                                s.max_layers), "max layers", int, 2),
        gc_budget_bytes=parse_size(budget, "gc budget") if budget is not None else None,
        lock_timeout=_number(pick("lock_timeout", "CACHESYNC_LOCK_TIMEOUT",
                                  f.get("lock_timeout"), s.lock_timeout), "lock timeout"),
        log_format=fmt,
    )

    registry = pick("registry", "CACHESYNC_REGISTRY", freg.get("url"))
    if registry:
        host, prefix = parse_registry(str(registry))
        r = RegistrySettings(host=host, prefix=prefix)
        compression = pick("compression", "CACHESYNC_COMPRESSION", freg.get("compression"),
                           r.compression)
        if compression not in ("zstd", "gzip"):
            raise ConfigError(f"compression must be 'zstd' or 'gzip', not {compression!r}")
        docker_config = pick("docker_config", "DOCKER_CONFIG_FILE", freg.get("docker_config"))
        if docker_config is None and env.get("DOCKER_CONFIG"):
            docker_config = Path(env["DOCKER_CONFIG"]) / "config.json"
        r = replace(
            r,
            insecure=_bool(pick("insecure", "CACHESYNC_INSECURE", freg.get("insecure"), False),
                           "insecure"),
            username=pick("username", "CACHESYNC_REGISTRY_USERNAME", freg.get("username")),
            password=pick("password", "CACHESYNC_REGISTRY_PASSWORD", freg.get("password")),
            docker_config=Path(docker_config) if docker_config else None,
            timeout=_number(pick("timeout", "CACHESYNC_REGISTRY_TIMEOUT", freg.get("timeout"),
                                 r.timeout), "registry timeout"),
            setup_timeout=_number(pick("setup_timeout", "CACHESYNC_SETUP_TIMEOUT",
                                       freg.get("setup_timeout"), r.setup_timeout),
                                  "setup timeout"),
            parallel=_number(pick("parallel", "CACHESYNC_PARALLEL", freg.get("parallel"),
                                  r.parallel), "parallel transfers", int, 1),
            compression=compression,
            keep_generations=_number(pick("keep", "CACHESYNC_KEEP_GENERATIONS",
                                          freg.get("keep_generations"), r.keep_generations),
                                     "generations to keep", int, 1),
        )
        if (r.username is None) != (r.password is None):
            raise ConfigError("registry credentials need both CACHESYNC_REGISTRY_USERNAME "
                              "and CACHESYNC_REGISTRY_PASSWORD")
        s = replace(s, registry=r)

    warm = pick("warm", "CACHESYNC_WARM", fsync.get("warm"), ())
    if isinstance(warm, str):
        warm = tuple(w for w in re.split(r"[\s,]+", warm) if w)
    s = replace(s, sync=SyncSettings(
        interval=_number(pick("interval", "CACHESYNC_SYNC_INTERVAL", fsync.get("interval"),
                              s.sync.interval), "sync interval"),
        refresh_interval=_number(pick("refresh_interval", "CACHESYNC_REFRESH_INTERVAL",
                                      fsync.get("refresh_interval"), s.sync.refresh_interval),
                                 "refresh interval"),
        warm=tuple(warm),
        metrics_address=str(pick("metrics_address", "CACHESYNC_METRICS_ADDRESS",
                                 fsync.get("metrics_address"), s.sync.metrics_address)),
    ))
    return s
