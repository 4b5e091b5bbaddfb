"""The helper protocol's inputs, validated: what names a volume and its cache.

Building a VolumeSpec touches nothing; every bad value is a one-line UsageError naming the
variable, so a helper fails before it changes anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .errors import UsageError
from .names import CacheRef, validate_cache_name, validate_namespace

if TYPE_CHECKING:
    from .records import VolumeRecord

JOB_RESULTS = ("succeeded", "failed", "unknown")
_VOL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")   # DNS subdomain (PV names)

# helper input key -> the variable a user sets (for messages)
_VAR = {"vol_dir": "VOL_DIR", "vol_name": "VOL_NAME", "vol_mode": "VOL_MODE",
        "vol_size_bytes": "VOL_SIZE_BYTES", "pvc_namespace": "PVC_NAMESPACE",
        "pvc_name": "PVC_NAME", "cache_name": "CACHE_NAME", "cache_write": "CACHE_WRITE",
        "job_result": "JOB_RESULT"}


def _missing(key: str) -> UsageError:
    return UsageError(f"missing {_VAR[key]} (or --{key.replace('_', '-')})")


def validate_vol_name(value: str) -> str:
    if not _VOL_NAME.fullmatch(value) or ".." in value:
        raise UsageError(f"invalid VOL_NAME {value!r}: must be a DNS subdomain (lowercase "
                         "letters, digits, '-' and '.', at most 253 characters)")
    return value


def validate_vol_dir(value: str) -> Path:
    if not value.startswith("/"):
        raise UsageError(f"invalid VOL_DIR {value!r}: must be an absolute path")
    parts = value.split("/")
    if ".." in parts or "." in parts or "\0" in value:
        raise UsageError(f"invalid VOL_DIR {value!r}: must not contain '.' or '..' components")
    path = Path(os.path.normpath(value))
    if len(path.parts) < 3:
        raise UsageError(f"invalid VOL_DIR {value!r}: must be at least two levels below /")
    return path


def parse_job_result(value: str | None) -> str:
    result = (value or "unknown").strip().lower()
    if result not in JOB_RESULTS:
        raise UsageError(f"invalid JOB_RESULT {value!r}: must be succeeded, failed or unknown")
    return result


def _parse_bool(key: str, value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise UsageError(f"invalid {_VAR[key]} {value!r}: must be true or false")
    return text == "true"


@dataclass(frozen=True)
class VolumeKey:
    """What a teardown names: the volume, and whatever else it was told (None: not said, take it
    from the volume record). A teardown told ``writable=False`` never commits."""

    vol_name: str
    vol_dir: Path | None = None
    cache: CacheRef | None = None
    writable: bool | None = None


@dataclass(frozen=True)
class VolumeSpec:
    """Everything about one volume, validated. Building one touches nothing."""

    vol_name: str
    vol_dir: Path
    cache: CacheRef
    writable: bool = False
    size_bytes: int | None = None
    pvc_namespace: str | None = None
    pvc_name: str | None = None

    @property
    def key(self) -> VolumeKey:
        return VolumeKey(self.vol_name, self.vol_dir, self.cache, self.writable)

    @classmethod
    def from_inputs(cls, values: Mapping[str, str]) -> "VolumeSpec":
        """From the helper protocol values (keys: cli.HELPER_VARS); UsageError if anything is
        missing or wrong."""
        v = {k: val for k, val in values.items() if val is not None}
        for key in ("vol_name", "vol_dir", "pvc_namespace"):
            if not v.get(key):
                raise _missing(key)
        vol_name = validate_vol_name(v["vol_name"])
        vol_dir = validate_vol_dir(v["vol_dir"])
        mode = v.get("vol_mode") or "Filesystem"
        if mode != "Filesystem":
            raise UsageError(f"invalid VOL_MODE {mode!r}: cache volumes are Filesystem only")
        size = v.get("vol_size_bytes") or None
        if size is not None:
            if not re.fullmatch(r"\d{1,20}", size.strip()):
                raise UsageError(f"invalid VOL_SIZE_BYTES {size!r}: must be a whole number of "
                                 "bytes")
            size = int(size)
        namespace = validate_namespace(v["pvc_namespace"])
        pvc_name = v.get("pvc_name") or None
        if pvc_name is not None and not _VOL_NAME.fullmatch(pvc_name):
            raise UsageError(f"invalid PVC_NAME {pvc_name!r}: must be a DNS subdomain")
        cache_name = v.get("cache_name") or pvc_name
        if not cache_name:
            raise UsageError("missing CACHE_NAME (or PVC_NAME, its default)")
        validate_cache_name(cache_name)
        writable = _parse_bool("cache_write", v.get("cache_write"), False)
        if "job_result" in v:
            parse_job_result(v["job_result"])
        return cls(vol_name, vol_dir, CacheRef(namespace, cache_name), writable, size,
                   namespace, pvc_name)

    @classmethod
    def from_record(cls, rec: "VolumeRecord") -> "VolumeSpec":
        return cls(rec.vol_name, Path(rec.vol_dir), rec.cache, rec.writable, rec.size_bytes,
                   rec.pvc_namespace, rec.pvc_name)


def teardown_target(values: Mapping[str, str]) -> VolumeKey:
    """What a teardown names. VOL_NAME is enough (the rest comes from the volume record); what
    else is given is validated, and must agree with the record (CACHE_WRITE=false may narrow it:
    then nothing is committed)."""
    v = {k: val for k, val in values.items() if val}
    if not v.get("vol_name"):
        raise _missing("vol_name")
    parse_job_result(v.get("job_result"))
    cache = None
    if v.get("pvc_namespace") and (v.get("cache_name") or v.get("pvc_name")):
        # the same checks as setup (VOL_DIR is optional here: a placeholder stands in for it)
        cache = VolumeSpec.from_inputs({"vol_dir": "/placeholder/dir", **v}).cache
    else:
        if v.get("pvc_namespace"):
            validate_namespace(v["pvc_namespace"])
        if v.get("cache_name"):
            validate_cache_name(v["cache_name"])
    writable = (_parse_bool("cache_write", v["cache_write"], False) if "cache_write" in v
                else None)
    return VolumeKey(validate_vol_name(v["vol_name"]),
                     validate_vol_dir(v["vol_dir"]) if v.get("vol_dir") else None,
                     cache, writable)
