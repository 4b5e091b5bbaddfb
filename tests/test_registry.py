"""The registry adapter against a real registry (docker-registry on 127.0.0.1), and against a
tiny HTTP server for the answers a healthy registry never gives (5xx, 429, long bodies)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import replace

import pytest

from cachesync.errors import (DigestMismatch, NotFound, RegistryError, RegistryUnavailable,
                              Unauthorized)
from cachesync.registry import Registry, load_credentials
from registry_fixtures import AUTH_PASSWORD, AUTH_USER, Answer, free_port


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def reg(registry, unique_prefix) -> Registry:
    return Registry(registry.settings(prefix=unique_prefix), sleep=Sleeps(),
                    chunk_size=1024 * 1024)


def test_chunked_push_then_verified_pull(reg, registry, tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 12345)
    src = tmp_path / "blob"
    src.write_bytes(data)
    repo, d = reg.repository("ns", "one"), digest(data)
    assert not reg.blob_exists(repo, d)
    seen = []
    assert reg.push_blob(repo, src, d, progress=seen.append) == len(data)
    assert seen == [1024 * 1024, 1024 * 1024, 12345]  # three PATCH chunks, never the whole file
    assert reg.blob_exists(repo, d)
    assert registry.blob_path(d).read_bytes() == data
    assert reg.pull_blob(repo, d, tmp_path / "out" / "blob") == len(data)
    assert (tmp_path / "out" / "blob").read_bytes() == data


def test_corrupted_blob_is_refused_and_leaves_nothing(reg, registry, tmp_path):
    data = os.urandom(300_000)
    (tmp_path / "b").write_bytes(data)
    repo, d = reg.repository("ns", "corrupt"), digest(data)
    reg.push_blob(repo, tmp_path / "b", d)
    stored = registry.blob_path(d)
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(DigestMismatch, match="refused"):
        reg.pull_blob(repo, d, tmp_path / "dl" / "blob")
    assert list((tmp_path / "dl").iterdir()) == []  # no partial or temporary file


def test_cross_repository_mount(reg, tmp_path):
    data = os.urandom(10_000)
    (tmp_path / "b").write_bytes(data)
    a, b, c = (reg.repository("ns", n) for n in ("src", "dst", "other"))
    reg.push_blob(a, tmp_path / "b", digest(data))
    assert reg.mount_blob(b, digest(data), a) is True
    assert reg.blob_exists(b, digest(data))
    assert reg.mount_blob(c, digest(b"never pushed"), a) is False
    assert not reg.blob_exists(c, digest(b"never pushed"))


def test_manifest_bytes_are_kept_and_tags_listed_and_deleted(reg, tmp_path):
    config = b'{"rootfs":{"type":"layers","diff_ids":[]}}'
    (tmp_path / "c").write_bytes(config)
    repo = reg.repository("ns", "manifests")
    reg.push_blob(repo, tmp_path / "c", digest(config))
    # odd spacing and key order: a re-serialising client would change the digest
    raw = ('{ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",'
           ' "layers": [],  "config": {"size": %d, "digest": "%s", "mediaType": '
           '"application/vnd.oci.image.config.v1+json"} }' % (len(config), digest(config))).encode()
    assert reg.put_manifest(repo, raw, "application/vnd.oci.image.manifest.v1+json",
                            "g00000001-a") == digest(raw)
    got, got_digest, media_type = reg.get_manifest(repo, "g00000001-a")
    assert (got, got_digest) == (raw, digest(raw))
    assert media_type == "application/vnd.oci.image.manifest.v1+json"
    assert reg.manifest_digest(repo, "g00000001-a") == digest(raw)
    assert reg.list_tags(repo) == ["g00000001-a"]
    reg.delete_manifest(repo, digest(raw))
    assert reg.list_tags(repo) == []
    assert reg.manifest_digest(repo, "g00000001-a") is None
    assert reg.list_tags(reg.repository("ns", "never-made")) == []


def test_not_found_carries_the_oci_code(reg):
    with pytest.raises(NotFound) as e:
        reg.get_manifest(reg.repository("ns", "nothing"), "latest")
    assert e.value.status == 404 and e.value.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def test_unreachable_fails_after_bounded_retries():
    from cachesync.settings import RegistrySettings

    sleeps = Sleeps()
    settings = RegistrySettings(host=f"127.0.0.1:{free_port()}", insecure=True,
                                retry_attempts=4, retry_max_wait=2.0)
    r = Registry(settings, sleep=sleeps)
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        r.retried(r.ping)
    assert len(sleeps) == 3 and all(0 <= s <= 2.0 for s in sleeps)


def test_tls_is_verified_by_default(registry):
    r = Registry(replace(registry.settings(), insecure=False), sleep=Sleeps())
    assert r.base.startswith("https://")
    with pytest.raises(RegistryError, match="TLS"):  # a plain-http registry fails the handshake
        r.ping()


def test_5xx_and_429_are_retried_other_errors_are_not(static_registry):
    sleeps = Sleeps()
    r = Registry(static_registry.settings(), sleep=sleeps)
    static_registry.routes[("GET", "/v2/")] = [Answer(503), Answer(429), Answer(200, b"{}")]
    r.retried(r.ping)
    assert len(sleeps) == 2
    static_registry.routes[("GET", "/v2/")] = Answer(
        400, b'{"errors":[{"code":"UNSUPPORTED","message":"no"}]}')
    with pytest.raises(RegistryError) as e:
        r.retried(r.ping)
    assert type(e.value) is RegistryError and e.value.code == "UNSUPPORTED" and len(sleeps) == 2


def test_long_error_bodies_are_cut_short(static_registry):
    static_registry.routes[("GET", "/v2/")] = Answer(
        500, json.dumps({"errors": [{"code": "UNKNOWN", "message": "x" * 20000}]}).encode())
    r = Registry(static_registry.settings(retry_attempts=1), sleep=Sleeps())
    with pytest.raises(RegistryUnavailable) as e:
        r.retried(r.ping)
    assert "UNKNOWN" in str(e.value) and len(str(e.value)) < 400


def test_basic_auth_right_and_wrong_password(auth_registry):
    good = Registry(auth_registry.settings(), sleep=Sleeps())
    good.ping()
    assert good.list_tags(good.repository("ns", "none")) == []
    bad = Registry(replace(auth_registry.settings(), password="wrong-" + AUTH_PASSWORD),
                   sleep=Sleeps())
    with pytest.raises(Unauthorized) as e:
        bad.ping()
    assert AUTH_PASSWORD not in str(e.value) and "wrong-" not in str(e.value)
    assert "\n" not in str(e.value) and e.value.status == 401
    assert AUTH_PASSWORD not in repr(auth_registry.settings())


def test_credentials_from_a_docker_config(auth_registry, tmp_path):
    config = tmp_path / "config.json"
    token = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    settings = replace(auth_registry.settings(), username=None, password=None,
                       docker_config=config)
    assert load_credentials(settings).username == AUTH_USER
    Registry(settings, sleep=Sleeps()).ping()
    anonymous = replace(settings, docker_config=tmp_path / "missing.json")
    with pytest.raises(Unauthorized):
        Registry(anonymous, sleep=Sleeps()).ping()
