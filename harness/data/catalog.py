"""`load_dataset(name, **options)`: from a data set's name to its arrays (docs/spec.md section 4.1)."""
from __future__ import annotations

from typing import Any

from .copy_memory import load_copy_memory
from .dataset import Dataset, DataError
from .digits import load_digits
from .mnist import load_mnist

NAMES = ("digits", "mnist:DIR", "copy-memory")


def load_dataset(name: str, **options: Any) -> Dataset:
    """`digits`, `mnist:DIR` (DIR: a folder of MNIST IDX files) or `copy-memory` (options: its DEFAULTS)."""
    if name == "copy-memory":
        return load_copy_memory(**options)
    if options:
        raise DataError(f"data set {name} takes no options, got {', '.join(sorted(options))}")
    if name == "digits":
        return load_digits()
    if name.startswith("mnist:") and name != "mnist:":
        return load_mnist(name.partition(":")[2])
    if name in ("mnist", "mnist:"):
        raise DataError("mnist needs the folder of its IDX files: write mnist:DIR")
    raise DataError(f"unknown data set {name!r}; choose one of {', '.join(NAMES)}")
