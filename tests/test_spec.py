"""The helper inputs: validation before anything is touched (table-driven)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cachesync import spec as spec_mod
from cachesync.errors import UsageError
from cachesync.names import CacheRef
from cachesync.spec import VolumeKey, VolumeSpec

BASE = {"vol_name": "pvc-1", "vol_dir": "/var/tmp/x/pvc-1", "vol_mode": "Filesystem",
        "vol_size_bytes": "1073741824", "pvc_namespace": "ns", "pvc_name": "claim",
        "cache_name": "maven", "cache_write": "true"}


def test_spec_from_full_inputs():
    spec = VolumeSpec.from_inputs(BASE)
    assert spec.cache == CacheRef("ns", "maven")
    assert spec.vol_dir == Path("/var/tmp/x/pvc-1") and spec.writable
    assert spec.size_bytes == 1073741824


def test_spec_defaults():
    spec = VolumeSpec.from_inputs({k: v for k, v in BASE.items()
                                   if k not in ("cache_name", "cache_write", "vol_mode",
                                                "vol_size_bytes")})
    assert spec.cache == CacheRef("ns", "claim")  # CACHE_NAME defaults to PVC_NAME
    assert spec.writable is False and spec.size_bytes is None


@pytest.mark.parametrize("change,message", [
    ({"vol_name": None}, "missing VOL_NAME"),
    ({"vol_dir": None}, "missing VOL_DIR"),
    ({"pvc_namespace": None}, "missing PVC_NAMESPACE"),
    ({"cache_name": None, "pvc_name": None}, "missing CACHE_NAME"),
    ({"vol_dir": "relative/dir"}, "absolute"),
    ({"vol_dir": "/var/../etc"}, "'..'"),
    ({"vol_dir": "/"}, "two levels"),
    ({"vol_dir": "/tmp"}, "two levels"),
    ({"vol_mode": "Block"}, "Filesystem only"),
    ({"cache_write": "yes"}, "CACHE_WRITE"),
    ({"vol_size_bytes": "10Gi"}, "VOL_SIZE_BYTES"),
    ({"vol_size_bytes": "-1"}, "VOL_SIZE_BYTES"),
    ({"pvc_namespace": "Bad_NS"}, "invalid namespace"),
    ({"pvc_namespace": "a" * 64}, "invalid namespace"),
    ({"cache_name": "UPPER"}, "invalid cache name"),
    ({"cache_name": "a/b"}, "invalid cache name"),
    ({"cache_name": "a..b"}, "invalid cache name"),
    ({"cache_name": "-lead"}, "invalid cache name"),
    ({"vol_name": "pvc/../../etc"}, "invalid VOL_NAME"),
    ({"vol_name": "PVC-1"}, "invalid VOL_NAME"),
    ({"pvc_name": "Claim"}, "invalid PVC_NAME"),
    ({"job_result": "maybe"}, "JOB_RESULT"),
])
def test_spec_rejects_bad_input_with_one_line(change, message):
    values = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(UsageError) as e:
        VolumeSpec.from_inputs(values)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("values,expected", [
    ({"vol_name": "pvc-1"}, VolumeKey("pvc-1")),
    ({"vol_name": "pvc-1", "vol_dir": "/var/x/pvc-1"}, VolumeKey("pvc-1", Path("/var/x/pvc-1"))),
    ({"vol_name": "pvc-1", "cache_write": "false"}, VolumeKey("pvc-1", writable=False)),
    (BASE, VolumeKey("pvc-1", Path("/var/tmp/x/pvc-1"), CacheRef("ns", "maven"), True)),
    ({**BASE, "vol_dir": ""}, VolumeKey("pvc-1", None, CacheRef("ns", "maven"), True)),
])
def test_teardown_target(values, expected):
    assert spec_mod.teardown_target(values) == expected


@pytest.mark.parametrize("values,message", [
    ({}, "missing VOL_NAME"),
    ({"vol_name": "x", "cache_write": "perhaps"}, "CACHE_WRITE"),
    ({"vol_name": "x", "pvc_namespace": "Bad"}, "invalid namespace"),
    ({"vol_name": "x", "cache_name": "a/b"}, "invalid cache name"),
    ({**BASE, "cache_name": "Bad"}, "invalid cache name"),
    ({"vol_name": "x", "job_result": "crashed"}, "JOB_RESULT"),
    ({"vol_name": "x", "vol_dir": "rel"}, "absolute"),
])
def test_teardown_target_rejects(values, message):
    with pytest.raises(UsageError, match=message):
        spec_mod.teardown_target(values)
