"""Generations: the immutable, sortable tags a cache gets on each commit, and which one wins.

A generation is ``g<number:08d>-<node-id>``. The number is one more than the newest generation
the committing node knows of (local or remote); the node id keeps two nodes that commit the same
number apart. Order is (number, node id): the newest generation wins, last writer by generation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

LATEST = "latest"
_TAG = re.compile(r"^g(\d{8})-([a-z0-9]{1,32})$")


@dataclass(frozen=True, order=True)
class Generation:
    number: int
    node: str

    @property
    def tag(self) -> str:
        return f"g{self.number:08d}-{self.node}"

    def __str__(self) -> str:
        return self.tag

    @classmethod
    def parse(cls, tag: str) -> "Generation | None":
        """The generation a tag names, or None for any other tag (``latest``, foreign tags)."""
        m = _TAG.fullmatch(tag)
        return cls(int(m.group(1)), m.group(2)) if m else None


def parse_tags(tags: Iterable[str]) -> list[Generation]:
    """The generations among ``tags``, oldest first."""
    return sorted(g for g in (Generation.parse(t) for t in tags) if g is not None)


def newest(generations: Iterable[Generation]) -> Generation | None:
    return max(generations, default=None)


def next_generation(node: str, *known: Generation | None) -> Generation:
    """The generation a commit on ``node`` gets, given every generation it knows of."""
    top = max((g.number for g in known if g is not None), default=0)
    return Generation(top + 1, node)


def should_move_latest(candidate: Generation, current: Generation | None) -> bool:
    """``latest`` only ever moves forward: never to a generation older than the one it names."""
    return current is None or candidate > current


def latest_repair(tags: Iterable[str], latest: Generation | None) -> Generation | None:
    """The generation ``latest`` must be re-pointed to: the newest generation among ``tags`` when
    it is newer than the one ``latest`` names (or ``latest`` names none); else None."""
    top = newest(parse_tags(tags))
    return top if top is not None and should_move_latest(top, latest) else None
