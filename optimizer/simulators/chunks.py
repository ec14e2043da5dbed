"""The chunks of one render stream still to send, shared by RemoteSimulator and FarmSimulator.

Chunks handed back by a server that was dropped go out first (they hold up the batch the
caller waits for), then new ones from the caller's source, each numbered in source order so
that the dispatcher yields batches in order whichever server rendered them. A chunk that
came back twice (re-sent, then the late original) counts once.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

import numpy as np


class ChunkQueue:
    def __init__(self, source: Iterable[np.ndarray],
                 validate: Callable[[np.ndarray], np.ndarray]) -> None:
        self._source = iter(source)
        self._validate = validate
        self.retry: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self.sent = 0  # sequence numbers handed out: chunks taken from the source
        self.exhausted = False
        self.finished: set[int] = set()

    def next(self) -> tuple[int, np.ndarray] | None:
        """(seq, latents) to send next, or None when nothing is left to send for now."""
        while self.retry:
            seq, lat = self.retry.popleft()
            if seq not in self.finished:
                return seq, lat
        if self.exhausted:
            return None
        try:
            lat = self._validate(next(self._source))
        except StopIteration:
            self.exhausted = True
            return None
        seq, self.sent = self.sent, self.sent + 1
        return seq, lat

    def put_back(self, chunks: Iterable[tuple[int, np.ndarray]]) -> None:
        """Chunks a server will not return (dropped, recycled): sent again first."""
        self.retry.extend(chunks)

    def finish(self, seq: int) -> bool:
        """Record seq's reply; False if it had come back already (then discard this one)."""
        if seq in self.finished:
            return False
        self.finished.add(seq)
        return True

    @property
    def drained(self) -> bool:
        """The source is spent and nothing waits to be sent again."""
        return self.exhausted and not self.retry
