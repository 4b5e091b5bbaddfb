"""A delaying work queue of keys: each key is queued at most once, at its earliest due time, and
a key being worked on is never handed out twice at once."""

from __future__ import annotations

import heapq
import threading
import time
from typing import Callable, Hashable


class WorkQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._seq = 0

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        with self._cond:
            due = self._clock() + max(0.0, delay)
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, key))
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next due key, waiting up to ``timeout`` seconds (None: until one is due)."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                    heapq.heappop(self._heap)       # superseded by an earlier add
                now = self._clock()
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                wait = self._heap[0][0] - now if self._heap else None
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)
