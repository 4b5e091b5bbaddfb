"""A node: its settings, state root, buildah storage and journal, opened once and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from .buildah import Buildah
from .journal import Journal
from .settings import Settings
from .state import NodeState


@dataclass
class Node:
    settings: Settings
    state: NodeState
    buildah: Buildah
    journal: Journal
    node_id: str

    @classmethod
    def open(cls, settings: Settings) -> "Node":
        state = NodeState(settings.root).ensure()
        return cls(
            settings=settings,
            state=state,
            buildah=Buildah(state.storage, state.run),
            journal=Journal(state.journal),
            node_id=state.node_id(settings.node_id),
        )
