"""The batch order every framework follows when it trains on a data set (docs/spec.md section 4.2).

Each framework's input pipeline (torch `DataLoader`, `tf.data`, a NumPy loop) gathers the examples these
index arrays name, so all of them see the same examples in the same order; `order_sha256` of what a
pipeline actually fed proves it. Epoch e is the permutation of `default_rng([seed, e])`: any epoch can
be rebuilt without drawing the ones before it. The last incomplete batch of each epoch is dropped, so
every step has exactly `batch_size` examples (one shape: nothing recompiles, every step costs the same);
a fresh permutation each epoch drops different examples each time.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Iterator

import numpy as np

from .dataset import DataError


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches in one pass over `n` examples (the remainder is dropped)."""
    if batch_size < 1 or n < batch_size:
        raise DataError(f"batch size {batch_size} does not fit {n:,} training examples; "
                        f"choose a batch size from 1 to {n:,}")
    return n // batch_size


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """(n,) int64: the order of the examples in `epoch` (from 0)."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


def batch_order(n: int, batch_size: int, seed: int, *, epochs: int | None = None,
                steps: int | None = None) -> Iterator[np.ndarray]:
    """The (batch_size,) int64 index arrays of a training run, in order; give `epochs` or `steps`, not both.

    A step budget runs across epochs and may stop within one: `steps` batches in all.
    """
    if seed < 0:
        raise DataError(f"the batch order's seed must be 0 or more, got {seed}")
    if (epochs is None) == (steps is None):
        raise DataError("give the length of the batch order as epochs or as steps, exactly one of them")
    per_epoch = steps_per_epoch(n, batch_size)
    total = epochs * per_epoch if epochs is not None else steps
    if total < 0:
        raise DataError(f"the batch order cannot have {total} steps; give a count of 0 or more")
    return _batches(n, batch_size, seed, per_epoch, total)  # checked above, now, not at the first batch


def _batches(n: int, batch_size: int, seed: int, per_epoch: int, total: int) -> Iterator[np.ndarray]:
    epoch = 0
    while total > 0:
        perm = epoch_permutation(n, seed, epoch)
        for i in range(min(per_epoch, total)):
            yield perm[i * batch_size: (i + 1) * batch_size]
        total -= per_epoch
        epoch += 1


def order_sha256(batches: Iterable[np.ndarray]) -> str:
    """SHA-256 of a sequence of index batches: each batch's length, then its indices as int64 little-endian."""
    h = hashlib.sha256()
    for batch in batches:
        b = np.ascontiguousarray(batch, dtype="<i8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b.tobytes())
    return h.hexdigest()
