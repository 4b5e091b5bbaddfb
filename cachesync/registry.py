"""Adapter for the OCI distribution API, over oras-py's session. Nothing else talks HTTP.

oras-py gives us the session, the auth backends and the URL conventions; its weak spots are
bypassed here:

- uploads are streamed in chunks (POST, PATCH..., PUT ?digest=): memory stays at one chunk;
- downloads stream to a temporary file while hashing and are renamed only if the digest matches
  (DigestMismatch otherwise);
- its retry decorator (which sleeps minutes on any exception) is never reached: requests go
  straight to ``Registry.session`` with a timeout, and transient failures (refused, timed out,
  5xx, 429) are retried with tenacity, bounded by settings, with an injectable sleep;
- Basic credentials are sent up front (``auth_backend="basic"``); Bearer challenges use oras'
  token backend;
- manifests are PUT as the exact bytes given, so their digest is kept;
- cross-repository mounts (POST ?mount=&from=) are offered.

Every HTTP failure is mapped in ``_raise_for`` to the errors.py tree, with the OCI error code and
a short body. Messages name the registry, repository and digest, never a credential.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import oras.provider
import requests
import tenacity

from .errors import (DigestMismatch, NotFound, RegistryError, RegistryUnavailable, Unauthorized,
                     shorten)
from .settings import RegistrySettings

log = logging.getLogger(__name__)

CHUNK = 8 * 1024 * 1024
READ_CHUNK = 1024 * 1024
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
MAX_MANIFEST = 4 * 1024 * 1024

Progress = Callable[[int], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def load_credentials(settings: RegistrySettings) -> Credentials | None:
    """Explicit username/password, else the docker config.json entry for the host, else None."""
    if settings.username is not None and settings.password is not None:
        return Credentials(settings.username, settings.password)
    if settings.docker_config is None:
        return None
    try:
        config = json.loads(Path(settings.docker_config).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise RegistryError(f"cannot read docker config {settings.docker_config}: "
                            f"{type(e).__name__}") from e
    auths = config.get("auths") or {} if isinstance(config, dict) else {}
    for key in (settings.host, f"https://{settings.host}", f"http://{settings.host}",
                f"https://{settings.host}/v1/", f"https://{settings.host}/v2/"):
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise RegistryError(f"docker config {settings.docker_config}: the auth entry "
                                    f"for {settings.host} is not base64 user:password") from e
            return Credentials(user, password)
    return None


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _oci_error(response: requests.Response) -> tuple[str | None, str]:
    """The first OCI error code and message of a response body, cut short."""
    try:
        body = response.raw.read(8192, decode_content=True) if response.raw else b""
    except Exception:  # noqa: BLE001 (an unreadable error body only loses detail)
        body = b""
    body = body or (response._content if isinstance(response._content, bytes) else b"")
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        return first.get("code"), shorten(first.get("message") or "", 160)
    except (ValueError, AttributeError):
        return None, shorten(body, 160)


class Registry:
    """One registry, as configured: ``host[:port]``, http(s), credentials, timeouts, retries."""

    def __init__(self, settings: RegistrySettings, *, sleep: Callable[[float], None] = time.sleep,
                 chunk_size: int = CHUNK):
        self.settings = settings
        self.host = settings.host
        self.chunk_size = chunk_size
        self._sleep = sleep
        self._creds = load_credentials(settings)
        self._oras = oras.provider.Registry(
            hostname=settings.host, insecure=settings.insecure, tls_verify=True,
            auth_backend="basic" if self._creds else "token")
        if self._creds:
            self._oras.auth.set_basic_auth(self._creds.username, self._creds.password)
        self.base = f"{self._oras.prefix}://{settings.host}"

    # plumbing
    def repository(self, namespace: str, name: str) -> str:
        prefix = self.settings.prefix.strip("/")
        return f"{prefix}/{namespace}/{name}" if prefix else f"{namespace}/{name}"

    def _retrying(self, attempts: int | None = None) -> tenacity.Retrying:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts or self.settings.retry_attempts),
            wait=tenacity.wait_exponential(multiplier=0.25, max=self.settings.retry_max_wait),
            retry=tenacity.retry_if_exception_type(RegistryUnavailable),
            sleep=self._sleep, reraise=True,
            before_sleep=lambda rs: log.info(
                "registry unavailable, retrying (try %d): %s", rs.attempt_number,
                rs.outcome.exception() if rs.outcome else "", extra={"event": "retry"}))

    def retried(self, fn: Callable[[], T], attempts: int | None = None) -> T:
        """Run ``fn`` again on RegistryUnavailable only, with bounded backoff."""
        return self._retrying(attempts)(fn)

    def _send(self, method: str, url: str, *, what: str, headers: dict | None = None,
              data: bytes | Iterable[bytes] | None = None, stream: bool = False,
              ok: tuple[int, ...] = (200,), allow: tuple[int, ...] = ()) -> requests.Response:
        """One HTTP request, with auth; a status outside ``ok + allow`` raises the mapped error."""
        if not url.startswith(("http://", "https://")):
            url = self.base + url
        headers = dict(headers or {})
        if self._creds:
            headers.update(self._oras.auth.get_auth_header())
        elif getattr(self._oras.auth, "token", None):
            headers.update(self._oras.auth.get_auth_header())
        response = self._request(method, url, what, headers, data, stream)
        challenge = response.headers.get("Www-Authenticate", "")
        if (response.status_code == 401 and not self._creds
                and challenge.lower().startswith("bearer")
                and (data is None or isinstance(data, bytes))):
            try:  # an anonymous token from the registry's token service (oras' token backend)
                headers, changed = self._oras.auth.authenticate_request(response, headers)
            except (requests.exceptions.RequestException, ValueError) as e:
                raise Unauthorized(f"{what}: no anonymous token from {self.host}'s token "
                                   "service", status=401) from e
            if changed:
                response.close()
                response = self._request(method, url, what, headers, data, stream)
        if response.status_code not in ok + allow:
            self._raise_for(response, what)
        return response

    def _request(self, method: str, url: str, what: str, headers: dict,
                 data: bytes | Iterable[bytes] | None, stream: bool) -> requests.Response:
        try:
            return self._oras.session.request(
                method, url, headers=headers, data=data, stream=stream,
                timeout=self.settings.timeout, verify=True,
                allow_redirects=True)
        except requests.exceptions.SSLError as e:
            raise RegistryError(f"{what}: TLS verification with {self.host} failed (use "
                                "--insecure only for a plain-http registry)") from e
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            kind = "timed out" if isinstance(e, requests.exceptions.Timeout) else "unreachable"
            raise RegistryUnavailable(f"{what}: registry {self.host} {kind}") from e
        except requests.exceptions.RequestException as e:
            raise RegistryError(f"{what}: request to {self.host} failed: "
                                f"{type(e).__name__}") from e

    def _raise_for(self, response: requests.Response, what: str) -> None:
        status = response.status_code
        code, message = _oci_error(response)
        detail = f" ({code}{': ' + message if message else ''})" if code else ""
        response.close()
        where = f"{what}: registry {self.host} answered HTTP {status}{detail}"
        if status in (401, 403):
            raise Unauthorized(f"{what}: registry {self.host} refused the credentials "
                               f"(HTTP {status}{', ' + code if code else ''}); check the "
                               "registry username and password", status=status, code=code)
        if status == 404:
            raise NotFound(where, status=status, code=code)
        if status == 429 or status >= 500:
            raise RegistryUnavailable(where, status=status, code=code)
        raise RegistryError(where, status=status, code=code)

    # API
    def ping(self) -> None:
        """GET /v2/: reachable and the credentials are accepted."""
        self._send("GET", "/v2/", what="ping").close()

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self._send("HEAD", f"/v2/{repo}/blobs/{digest}", what=f"check blob {digest[:19]}",
                       allow=(404,))
        r.close()
        return r.status_code == 200

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; False when the registry declines (then push it)."""
        query = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        r = self._send("POST", f"/v2/{repo}/blobs/uploads/?{query}",
                       what=f"mount blob {digest[:19]} from {from_repo}", ok=(201,), allow=(202,))
        r.close()
        if r.status_code == 202:  # an upload session was opened instead: cancel it
            location = r.headers.get("Location")
            if location:
                try:
                    self._send("DELETE", self._absolute(location), what="cancel upload",
                               ok=(204,), allow=(200, 202, 404)).close()
                except RegistryError:
                    pass
            return False
        return True

    def _absolute(self, location: str) -> str:
        return urllib.parse.urljoin(self.base + "/", location)

    def push_blob(self, repo: str, path: Path, digest: str,
                  progress: Progress | None = None) -> int:
        """Upload a file as blob ``digest`` in chunks (POST, PATCH..., PUT). Returns bytes sent."""
        what = f"push blob {digest[:19]} to {repo}"
        size = os.path.getsize(path)
        r = self._send("POST", f"/v2/{repo}/blobs/uploads/", what=what, ok=(202,))
        r.close()
        location = self._absolute(r.headers.get("Location", ""))
        sent = 0
        with open(path, "rb") as f:
            while sent < size:
                chunk = f.read(self.chunk_size)
                if not chunk:
                    break
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Range": f"{sent}-{sent + len(chunk) - 1}",
                           "Content-Length": str(len(chunk))}
                r = self._send("PATCH", location, what=what, headers=headers, data=chunk,
                               ok=(202,))
                r.close()
                location = self._absolute(r.headers.get("Location", location))
                sent += len(chunk)
                if progress:
                    progress(len(chunk))
        sep = "&" if "?" in location else "?"
        r = self._send("PUT", f"{location}{sep}{urllib.parse.urlencode({'digest': digest})}",
                       what=what, headers={"Content-Length": "0"}, data=b"", ok=(201,))
        r.close()
        return sent

    def pull_blob(self, repo: str, digest: str, dest: Path, progress: Progress | None = None,
                  max_bytes: int | None = None) -> int:
        """Stream blob ``digest`` to ``dest``, verified: a mismatch leaves nothing at ``dest``."""
        algo, _, expected = digest.partition(":")
        if algo != "sha256" or len(expected) != 64:
            raise DigestMismatch(f"refusing blob digest {shorten(digest, 80)!r}: not sha256")
        what = f"pull blob {digest[:19]} from {repo}"
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        h = hashlib.sha256()
        got = 0
        r = self._send("GET", f"/v2/{repo}/blobs/{digest}", what=what, stream=True)
        try:
            with open(tmp, "wb") as f:
                for chunk in r.iter_content(READ_CHUNK):
                    h.update(chunk)
                    f.write(chunk)
                    got += len(chunk)
                    if max_bytes is not None and got > max_bytes:
                        raise DigestMismatch(f"{what}: more than the {max_bytes} bytes announced")
                    if progress:
                        progress(len(chunk))
            if "sha256:" + h.hexdigest() != digest:
                raise DigestMismatch(f"{what}: content hashes to sha256:{h.hexdigest()[:12]}..., "
                                     "not the digest asked for; refused")
            os.replace(tmp, dest)
        except requests.exceptions.RequestException as e:
            raise RegistryUnavailable(f"{what}: transfer from {self.host} broke off") from e
        finally:
            r.close()
            tmp.unlink(missing_ok=True)
        return got

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(raw bytes, digest of those bytes, media type) of a manifest by tag or digest."""
        what = f"get manifest {repo}:{reference}"
        r = self._send("GET", f"/v2/{repo}/manifests/{reference}", what=what,
                       headers={"Accept": ", ".join(MANIFEST_TYPES)}, stream=True)
        try:
            raw = r.raw.read(MAX_MANIFEST + 1, decode_content=True)
        except (requests.exceptions.RequestException, OSError) as e:
            raise RegistryUnavailable(f"{what}: transfer broke off") from e
        finally:
            r.close()
        if len(raw) > MAX_MANIFEST:
            raise RegistryError(f"{what}: manifest larger than {MAX_MANIFEST} bytes; refused")
        digest = sha256_digest(raw)
        if reference.startswith("sha256:") and reference != digest:
            raise DigestMismatch(f"{what}: content hashes to {digest[:19]}..., refused")
        announced = r.headers.get("Docker-Content-Digest")
        if announced and announced.startswith("sha256:") and announced != digest:
            raise DigestMismatch(f"{what}: content hashes to {digest[:19]}..., the registry "
                                 f"says {announced[:19]}...; refused")
        media_type = r.headers.get("Content-Type", "").split(";")[0].strip()
        return raw, digest, media_type

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest a tag points at (HEAD), or None when there is no such tag."""
        r = self._send("HEAD", f"/v2/{repo}/manifests/{reference}", what=f"check {repo}:"
                       f"{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)},
                       allow=(404,))
        r.close()
        if r.status_code == 404:
            return None
        return r.headers.get("Docker-Content-Digest") or None

    def put_manifest(self, repo: str, raw: bytes, media_type: str, reference: str) -> str:
        """PUT the exact bytes under ``reference`` (tag or digest); returns their digest."""
        digest = sha256_digest(raw)
        r = self._send("PUT", f"/v2/{repo}/manifests/{reference}", what=f"put manifest "
                       f"{repo}:{reference}", headers={"Content-Type": media_type}, data=raw,
                       ok=(201, 200))
        r.close()
        answered = r.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise DigestMismatch(f"put manifest {repo}:{reference}: registry stored "
                                 f"{answered[:19]}..., not {digest[:19]}...")
        return digest

    def list_tags(self, repo: str) -> list[str]:
        """Every tag of ``repo`` (following pagination); [] when the repository does not exist."""
        tags: list[str] = []
        url = f"/v2/{repo}/tags/list?n=1000"
        for _ in range(1000):
            r = self._send("GET", url, what=f"list tags of {repo}", allow=(404,))
            if r.status_code == 404:
                r.close()
                return []
            try:
                tags.extend(r.json().get("tags") or [])
            except ValueError as e:
                raise RegistryError(f"list tags of {repo}: answer is not JSON") from e
            finally:
                r.close()
            nxt = r.links.get("next", {}).get("url")
            if not nxt:
                break
            url = self._absolute(nxt)
        return tags

    def delete_manifest(self, repo: str, digest: str) -> None:
        self._send("DELETE", f"/v2/{repo}/manifests/{digest}", what=f"delete manifest {repo}@"
                   f"{digest[:19]}", ok=(202, 200)).close()
