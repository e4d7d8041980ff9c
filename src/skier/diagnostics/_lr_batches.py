"""The LR range test's mini-batches: seeded, of one size, gathered a chunk of steps at a time.

The order is one ``torch.randperm`` of the examples per epoch, from the test's own generator,
cut into batches of exactly ``size`` (a remainder smaller than a batch is skipped, so every
step's loss averages the same number of examples and the curve's noise does not jump at an
epoch's end). Indexing each batch out of the data costs two gathers a step, which at small
shapes is a noticeable share of a step; here the rows of up to ``chunk_bytes`` worth of
upcoming batches are gathered at once (never more batches than the test still needs) and each
step takes a view of that chunk. The examples, and their order, are the same as indexing each
batch on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

# How much of the data one gather copies at most; one batch is always gathered whole.
CHUNK_BYTES = 16 * 2**20


def seeded_batches(
    tensors: Sequence[torch.Tensor],
    size: int,
    generator: torch.Generator,
    steps: int,
    chunk_bytes: int | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """The first ``steps`` batches of ``size`` examples of ``tensors`` (examples along their
    first dimension, all on one device), as tuples of row blocks: each epoch one
    ``torch.randperm`` from ``generator``, cut into batches, its remainder skipped. At most
    ``chunk_bytes`` (default :data:`CHUNK_BYTES`) of rows are gathered at once.

    >>> x, y = torch.arange(10.0).reshape(5, 2), torch.arange(5)
    >>> [b[1].tolist() for b in seeded_batches((x, y), 2, torch.Generator().manual_seed(0), 3)]
    [[4, 0], [1, 3], [3, 4]]
    """
    n = len(tensors[0])
    device = tensors[0].device
    row_bytes = sum(t[:1].numel() * t.element_size() for t in tensors)
    per_chunk = max(1, (chunk_bytes or CHUNK_BYTES) // max(1, row_bytes * size))
    per_epoch = n // size
    left = steps
    while left > 0:
        order = torch.randperm(n, generator=generator)
        done = 0  # batches of this epoch taken
        while done < per_epoch and left > 0:
            count = min(per_chunk, per_epoch - done, left)
            index = order[done * size : (done + count) * size].to(device)
            rows = tuple(t.index_select(0, index) for t in tensors)
            for k in range(count):
                yield tuple(r[k * size : (k + 1) * size] for r in rows)
            done += count
            left -= count
