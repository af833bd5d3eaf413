"""The bounded set of batch shapes a CUDA-graph session serves, and how a batch is padded into it.

A captured CUDA graph replays one fixed input shape, so every shape served needs its own graph and
device buffers. Padding rows to a power of two (capped at the largest batch) and the sequence to
its length bucket's upper edge (capped at the model's maximum) bounds that set, and makes it
computable up front from the settings: (log2(max batch) + 1) x ceil(max length / bucket width)
shapes at most, all captured before the model says ready.

Pure numbers and numpy, no ONNX Runtime: the batcher pads through `ShapeGrid.padded` without
knowing why, and a grid of `None` (CPU) leaves every batch at its own shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def next_power_of_two(n: int) -> int:
    """The power of two at or above `n` (1, 2, 4, 8 ...)."""
    return 1 << max(0, n - 1).bit_length()


@dataclass(frozen=True)
class ShapeGrid:
    """Rows to powers of two up to `max_rows`, lengths to multiples of `bucket_width` up to
    `max_length`. A batch larger than the grid keeps its own size (it cannot be padded down)."""

    max_rows: int
    bucket_width: int
    max_length: int

    def rows(self, n: int) -> int:
        return min(next_power_of_two(n), max(self.max_rows, n))

    def length(self, n: int) -> int:
        edge = max(1, math.ceil(n / self.bucket_width)) * self.bucket_width
        return min(edge, max(self.max_length, n))

    def padded(self, rows: int, length: int) -> tuple[int, int]:
        """The shape a batch of `rows` rows, longest `length` tokens, runs at."""
        return self.rows(rows), self.length(length)

    def row_sizes(self) -> list[int]:
        return sorted({self.rows(n) for n in range(1, self.max_rows + 1)})

    def lengths(self) -> list[int]:
        return sorted({self.length(n) for n in range(1, self.max_length + 1)})

    def shapes(self) -> list[tuple[int, int]]:
        """Every shape `padded` can return for a batch within the grid, smallest first."""
        return [(r, n) for n in self.lengths() for r in self.row_sizes()]


def blank_batch(rows: int, length: int, pad_id: int, real_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """int64 ids and mask of `rows` x `length`, all [PAD] and masked, except that each row from
    `real_rows` on attends to its first position: a padding row then has a finite answer (an
    all-zero mask would divide by zero in the pooling) and, masked from every other row, changes
    no real row's. The caller writes its real rows into the first `real_rows`."""
    ids = np.full((rows, length), pad_id, dtype=np.int64)
    mask = np.zeros((rows, length), dtype=np.int64)
    mask[real_rows:, 0] = 1
    return ids, mask
