"""The data-set record every loader returns, its content hash, and the accuracy metric (docs/spec.md section 4.1)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..errors import XfbenchError

if TYPE_CHECKING:
    from ..models import ModelSpec


class DataError(XfbenchError, ValueError):
    """A data set that cannot be loaded or used as asked: a name, an option, a missing or malformed file."""


def content_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the arrays by name (sorted): name, little-endian dtype, shape, then the bytes.

    The same examples give the same hash on any machine; a different crop, split or generator stream
    gives another, so a record that names the hash names exactly what was trained on.
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(f"{name} {a.dtype.str} {a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair of canonical arrays, read-only, named by its content hash.

    image: x (N, 1, 32, 32) float32 in [0, 1], NCHW; y (N,) int32 labels in [0, classes).
    sequence: x (N, T) int32 tokens; y (N, T) int32 targets at every position (the spec's token
    models predict at every step); `answer_mask` (T,) bool marks the positions that are scored.
    Positions outside the mask carry a real target too (the blank token), so the spec's loss, the mean
    over all B x T positions, applies unchanged; only the metric looks at the mask.
    """

    name: str
    kind: str  # "image" | "sequence"
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    classes: int  # image classes; sequence: tokens used, ids 0..classes-1 (a model's vocab must be at least this)
    chance: float  # accuracy of a uniform guess among the answers: 1/classes, or 1/symbols for copy-memory
    answer_mask: np.ndarray | None = field(default=None, repr=False)
    params: dict[str, Any] = field(default_factory=dict)  # how it was made, for records; not hashed
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        arrays = self.arrays()
        for a in arrays.values():
            a.flags.writeable = False  # the hash must stay true of the arrays
        object.__setattr__(self, "sha256", content_sha256(arrays))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"x_train": self.x_train, "y_train": self.y_train, "x_test": self.x_test, "y_test": self.y_test}
        if self.answer_mask is not None:
            out["answer_mask"] = self.answer_mask
        return out

    @property
    def short_id(self) -> str:
        """`name@sha256[:12]`, for logs and tables."""
        return f"{self.name}@{self.sha256[:12]}"


def accuracy(predicted: np.ndarray, targets: np.ndarray, answer_mask: np.ndarray | None = None) -> float:
    """Share of correct predictions; for sequences (N, T), only at the positions `answer_mask` (T,) marks."""
    predicted, targets = np.asarray(predicted), np.asarray(targets)
    if predicted.shape != targets.shape:
        raise DataError(f"predictions of shape {predicted.shape} do not match targets of shape {targets.shape}")
    if answer_mask is not None:
        predicted, targets = predicted[:, answer_mask], targets[:, answer_mask]
    return float(np.mean(predicted == targets))


def check_fits(dataset: Dataset, spec: ModelSpec) -> None:
    """Raise DataError unless model `spec` can train on `dataset` (input shape, classes or vocabulary)."""
    sample = tuple(dataset.x_train.shape[1:])
    if spec.kind != dataset.kind:
        raise DataError(f"model {spec.name} is a {spec.kind} model; data set {dataset.name} holds "
                        f"{dataset.kind}s; pick a {spec.kind} data set")
    if tuple(spec.input_shape) != sample:
        what = "seq_len" if spec.kind == "sequence" else "input"
        raise DataError(f"model {spec.name} takes input {spec.input_shape}, data set {dataset.name} gives {sample}; "
                        f"set the model's {what} to match")
    if spec.classes < dataset.classes:
        what = "vocab" if spec.kind == "sequence" else "classes"
        raise DataError(f"model {spec.name} has {what}={spec.classes}, data set {dataset.name} needs at least "
                        f"{dataset.classes}; raise {what}")
