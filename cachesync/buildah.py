"""Adapter for the buildah CLI, bound to one node's storage. Nothing else runs buildah.

Every call names the node's own graph root and run root, so two nodes on one machine never see
each other's images or containers. Failures raise BuildahError with the exit code and a short
stderr.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildahError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Image:
    id: str
    names: tuple[str, ...]
    created: float


@dataclass(frozen=True)
class Layer:
    """A layer in the storage: its parent (None at the bottom) and its uncompressed size."""

    id: str
    parent: str | None
    size: int


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image_id: str
    image_name: str


class Buildah:
    def __init__(self, graphroot: Path, runroot: Path, driver: str = "overlay",
                 binary: str = "buildah"):
        self.graphroot = Path(graphroot)
        self.runroot = Path(runroot)
        self.driver = driver
        self.binary = binary

    @property
    def storage_transport(self) -> str:
        """The containers-storage transport prefix for this storage (for skopeo)."""
        return f"containers-storage:[{self.driver}@{self.graphroot}+{self.runroot}]"

    def _run(self, *args: str, check: bool = True) -> str:
        argv = [self.binary, "--root", str(self.graphroot), "--runroot", str(self.runroot),
                "--storage-driver", self.driver, *args]
        log.debug("run %s", " ".join(args))
        try:
            p = subprocess.run(argv, capture_output=True, text=True, check=False)
        except FileNotFoundError as e:
            raise BuildahError([self.binary, *args], 127,
                               f"{self.binary} is not installed (apt-get install buildah)") from e
        if check and p.returncode != 0:
            raise BuildahError([self.binary, *args], p.returncode, p.stderr)
        return p.stdout.strip()

    # containers
    def from_image(self, image: str | None, name: str) -> str:
        """A new working container named ``name`` from a local image (None: scratch)."""
        return self._run("from", "--pull=never", "--quiet", "--name", name, image or "scratch")

    def mount(self, container: str) -> Path:
        return Path(self._run("mount", container))

    def umount(self, container: str) -> None:
        self._run("umount", container)

    def rm(self, container: str) -> None:
        self._run("rm", container)

    def containers(self) -> list[Container]:
        out = self._run("containers", "--json")
        return [Container(c["id"], c["containername"], c.get("imageid", ""),
                          c.get("imagename", "")) for c in json.loads(out or "[]") or []]

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers() if c.name == name or c.id == name), None)

    def inspect_container(self, name: str) -> dict:
        return json.loads(self._run("inspect", "--type", "container", name))

    def commit(self, container: str, image: str, squash: bool = False) -> str:
        """Commit the container's changes as a new image (one layer, or all squashed into one)."""
        args = ["commit", "--quiet", "--format", "oci"]
        if squash:
            args.append("--squash")
        return self._run(*args, container, image)

    # images
    def images(self) -> list[Image]:
        out = self._run("images", "--json", "--no-trunc")
        return [Image(i["id"].removeprefix("sha256:"), tuple(i.get("names") or ()),
                      float(i.get("created", 0))) for i in json.loads(out or "[]") or []]

    def inspect_image(self, image: str) -> dict:
        return json.loads(self._run("inspect", "--type", "image", image))

    def layer_count(self, image: str) -> int:
        return len(self.inspect_image(image)["OCIv1"]["rootfs"].get("diff_ids") or [])

    def tag(self, image: str, *names: str) -> None:
        self._run("tag", image, *names)

    def rmi(self, *images: str, force: bool = False) -> None:
        self._run("rmi", *(["--force"] if force else []), *images)

    def pull(self, image: str, tls_verify: bool = True) -> str:
        """``buildah pull`` from a registry (tests and benchmarks: the standard client)."""
        return self._run("pull", "--quiet", f"--tls-verify={str(tls_verify).lower()}", image)

    # the storage's own records (read-only; containers/storage writes them atomically)
    def _storage_json(self, relative: str) -> list[dict]:
        path = self.graphroot / relative
        try:
            return json.loads(path.read_text() or "[]") or []
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise BuildahError(["storage", relative], 1, f"cannot read {path}: {e}") from e

    def layers(self) -> dict[str, Layer]:
        """Every layer of this storage by id (from ``<graphroot>/<driver>-layers/layers.json``)."""
        return {r["id"]: Layer(r["id"], r.get("parent") or None, int(r.get("diff-size") or 0))
                for r in self._storage_json(f"{self.driver}-layers/layers.json")}

    def image_top_layers(self) -> dict[str, str]:
        """Image id -> id of its top layer (from ``<graphroot>/<driver>-images/images.json``)."""
        return {r["id"]: r.get("layer", "")
                for r in self._storage_json(f"{self.driver}-images/images.json")}
