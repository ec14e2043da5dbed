"""ChunkQueue, the send order both dispatchers share: handed-back chunks first, then the
source in order, a chunk that came back twice counted once."""

from __future__ import annotations

import numpy as np

from optimizer.simulators.chunks import ChunkQueue


def test_handed_back_chunks_go_first_and_finished_ones_are_skipped() -> None:
    chunks = [np.full((1, 2), float(i)) for i in range(4)]
    seen = []
    q = ChunkQueue(chunks, lambda c: seen.append(c) or c)
    assert [q.next()[0] for _ in range(2)] == [0, 1]
    assert len(seen) == 2  # the source is read only as chunks are sent
    q.put_back([(0, chunks[0]), (1, chunks[1])])
    assert q.finish(1) and not q.finish(1)  # 1 came back after all: a second copy is discarded
    seq, lat = q.next()
    assert seq == 0 and lat is chunks[0]
    assert [q.next()[0] for _ in range(2)] == [2, 3]  # 1 is skipped: it is finished
    assert not q.drained and q.next() is None and q.drained
    assert q.sent == 4
