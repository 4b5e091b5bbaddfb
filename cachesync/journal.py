"""The journal: commits made on this node that wait to be published to the registry.

One JSON file per commit, ``<root>/journal/<namespace>__<name>__<tag>.json``, written atomically
right after the commit. The sync service publishes entries oldest first and drops an entry only
once its tags are in the registry, so a crash at any moment loses nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .generations import Generation
from .names import CacheRef
from .state import write_atomic


@dataclass(frozen=True)
class JournalEntry:
    namespace: str
    name: str
    tag: str            # the generation tag, e.g. g00000003-ab12cd34
    image_id: str       # buildah image id of the commit
    created: float      # unix time of the commit
    layers: int         # layers in the committed image

    @property
    def ref(self) -> CacheRef:
        return CacheRef(self.namespace, self.name)

    @property
    def generation(self) -> Generation:
        g = Generation.parse(self.tag)
        assert g is not None, self.tag
        return g

    @property
    def filename(self) -> str:
        return f"{self.ref.key}__{self.tag}.json"


class Journal:
    def __init__(self, directory: Path):
        self.directory = directory

    def add(self, entry: JournalEntry) -> None:
        write_atomic(self.directory / entry.filename,
                     json.dumps(asdict(entry), sort_keys=True).encode())

    def pending(self) -> list[JournalEntry]:
        """Entries waiting, oldest commit first. Unreadable files are skipped, not deleted."""
        entries = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                entries.append(JournalEntry(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(entries, key=lambda e: (e.created, e.generation))

    def drop(self, entry: JournalEntry) -> None:
        (self.directory / entry.filename).unlink(missing_ok=True)
