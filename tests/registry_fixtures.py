"""A real registry for the tests: Debian's ``docker-registry`` (CNCF distribution 2.8) on
127.0.0.1, a random free port, its own storage directory; one plain, one with htpasswd basic auth.

``LocalRegistry`` can be stopped and started again on the same port and storage (to play a
registry that goes down), and exposes its storage root (to corrupt blobs on purpose).
The htpasswd file is made with Python's ``crypt`` module (bcrypt ``$2b$``, glibc/libxcrypt),
so neither apache2-utils nor the bcrypt package is needed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from cachesync.settings import RegistrySettings

REGISTRY_BIN = "/usr/bin/docker-registry"
AUTH_USER = "builder"
AUTH_PASSWORD = "s3cret-Pa55word"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bcrypt_hash(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # bcrypt through glibc's libxcrypt; deprecated in 3.13, fine on 3.11
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))


@dataclass
class LocalRegistry:
    workdir: Path
    port: int = field(default_factory=free_port)
    htpasswd: dict[str, str] | None = None
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    def settings(self, prefix: str = "cachesync", **overrides) -> RegistrySettings:
        base = RegistrySettings(host=self.host, prefix=prefix, insecure=True, timeout=5.0,
                                setup_timeout=20.0, retry_attempts=3, retry_max_wait=0.5)
        if self.htpasswd:
            base = replace(base, username=AUTH_USER, password=AUTH_PASSWORD)
        return replace(base, **overrides)

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.htpasswd:
            (self.workdir / "htpasswd").write_text(
                "".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in self.htpasswd.items()))
            auth = (f"auth:\n  htpasswd:\n    realm: cachesync-test\n"
                    f"    path: {self.workdir / 'htpasswd'}\n")
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n{auth}")
        return config

    def start(self) -> "LocalRegistry":
        config = self.write_config()
        log = open(self.workdir / "registry.log", "ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: "
                                   f"{(self.workdir / 'registry.log').read_text()[-1000:]}")
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # 401 with auth: it is up
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not come up within 15 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def blob_path(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data")


def _registry_bin_or_skip() -> None:
    if not shutil.which(REGISTRY_BIN):
        pytest.skip("docker-registry is not installed (make test installs it)")


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> LocalRegistry:
    """A plain-http registry without auth, shared by the session (tests use unique repos)."""
    _registry_bin_or_skip()
    reg = LocalRegistry(tmp_path_factory.mktemp("registry")).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory) -> LocalRegistry:
    """A registry that asks for htpasswd basic auth (user ``builder``)."""
    _registry_bin_or_skip()
    reg = LocalRegistry(tmp_path_factory.mktemp("auth-registry"),
                        htpasswd={AUTH_USER: AUTH_PASSWORD}).start()
    yield reg
    reg.stop()


@pytest.fixture
def own_registry(tmp_path) -> LocalRegistry:
    """A registry of the test's own, which the test may stop and start."""
    _registry_bin_or_skip()
    reg = LocalRegistry(tmp_path / "own-registry").start()
    yield reg
    reg.stop()


@pytest.fixture
def unique_prefix(request) -> str:
    """A registry prefix of the test's own, so tests sharing a registry never meet."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")
    return f"t-{name[:40].strip('-')}-{int(time.time() * 1000) % 100000}"


# --- caches without the volume code: commit generations straight through buildah -------------

def commit_generation(node, ref, files: dict[str, bytes], number: int | None = None,
                      journal: bool = True):
    """Commit ``files`` on top of the node's newest local generation of ``ref`` as the next
    generation (or ``number``), journal it like a volume teardown would; returns the entry."""
    import uuid

    from cachesync.generations import Generation, newest
    from cachesync.journal import JournalEntry
    from cachesync.store import local_generations

    base = newest(g for g, _ in local_generations(node, ref))
    gen = Generation(number if number is not None else (base.number + 1 if base else 1),
                     node.node_id)
    name = f"t-{uuid.uuid4().hex[:12]}"
    node.buildah.from_image(ref.local_image(base.tag) if base else None, name)
    try:
        root = node.buildah.mount(name)
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        node.buildah.umount(name)
        image_id = node.buildah.commit(name, ref.local_image(gen.tag))
    finally:
        node.buildah.rm(name)
    entry = JournalEntry(ref.namespace, ref.name, gen.tag, image_id, time.time(),
                         node.buildah.layer_count(ref.local_image(gen.tag)))
    if journal:
        node.journal.add(entry)
    return entry


def read_cache_file(node, image: str, rel: str) -> bytes:
    """The content of ``rel`` in a local image of the node (mounted, read, cleaned up)."""
    import uuid

    name = f"r-{uuid.uuid4().hex[:12]}"
    node.buildah.from_image(image, name)
    try:
        return (node.buildah.mount(name) / rel).read_bytes()
    finally:
        node.buildah.umount(name)
        node.buildah.rm(name)


# --- a tiny HTTP server on 127.0.0.1 that serves fixed answers (bad registries on purpose) -----

@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class StaticRegistry:
    """Serves ``routes[(method, path)]`` (an Answer, or a list of Answers used in turn, the last
    one repeating); anything else is a 404 with an OCI error body. Records every request."""

    def __init__(self):
        import http.server
        import threading

        self.routes: dict[tuple[str, str], Answer | list[Answer]] = {}
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((self.command, self.path))
                key = (self.command, self.path.split("?")[0])
                found = outer.routes.get(key)
                if isinstance(found, list):
                    ans = found.pop(0) if len(found) > 1 else found[0]
                else:
                    ans = found or Answer(404, b'{"errors":[{"code":"NAME_UNKNOWN",'
                                               b'"message":"no such thing"}]}')
                if ans.delay:
                    time.sleep(ans.delay)
                self.send_response(ans.status)
                for k, v in ans.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(ans.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(ans.body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.routes[("GET", "/v2/")] = Answer(200, b"{}")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def settings(self, prefix: str = "cachesync", **overrides) -> RegistrySettings:
        return replace(RegistrySettings(host=self.host, prefix=prefix, insecure=True,
                                        timeout=5.0, setup_timeout=10.0, retry_attempts=3,
                                        retry_max_wait=0.5), **overrides)

    def serve_image(self, repo: str, tag: str, manifest: bytes, blobs: dict[str, bytes],
                    manifest_type: str = "application/vnd.oci.image.manifest.v1+json") -> None:
        self.routes[("GET", f"/v2/{repo}/tags/list")] = Answer(
            200, ('{"name":"%s","tags":["%s"]}' % (repo, tag)).encode())
        self.routes[("GET", f"/v2/{repo}/manifests/{tag}")] = Answer(
            200, manifest, {"Content-Type": manifest_type})
        for digest, data in blobs.items():
            self.routes[("GET", f"/v2/{repo}/blobs/{digest}")] = Answer(200, data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def static_registry():
    s = StaticRegistry()
    yield s
    s.close()
