"""Canonical weights and synthetic data (docs/spec.md sections 2 and 4), seeded, framework-neutral."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .models import ModelSpec


def init_weights(spec: ModelSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded canonical weight set, PyTorch layout, uniform(+-1/sqrt(fan_in)) as torch's default."""
    rng = np.random.default_rng(seed)
    shapes = spec.weight_shapes()
    weights: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        layer, _, kind = name.partition(".")
        if kind == "weight" and len(shape) == 2 and layer == "embed":
            w = rng.standard_normal(shape)
        else:
            if f"{layer}.weight_hh" in shapes:  # recurrent: torch uses 1/sqrt(hidden) for all
                fan_in = shapes[f"{layer}.weight_hh"][1]
            else:
                fan_in = math.prod(shapes[f"{layer}.weight"][1:])
            bound = 1.0 / math.sqrt(fan_in)
            w = rng.uniform(-bound, bound, size=shape)
        weights[name] = w.astype(np.float32)
    return weights


def check_weights(weights: Mapping[str, np.ndarray], names: Iterable[str],
                  shapes: Mapping[str, tuple[int, ...]] | None = None) -> None:
    """Raise ValueError unless `weights` holds exactly the canonical `names` (with `shapes`, where given)."""
    names = set(names)
    if names != set(weights):
        raise ValueError(f"weight names differ: missing {sorted(names - set(weights))}, "
                         f"unexpected {sorted(set(weights) - names)}")
    if shapes is not None:
        for name, shape in shapes.items():
            if tuple(np.shape(weights[name])) != tuple(shape):
                raise ValueError(f"{name}: canonical shape {tuple(shape)}, got {np.shape(weights[name])}")


def make_inputs(spec: ModelSpec, batch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Canonical inputs: images N(0,1) float32 NCHW with int labels; or token ids and targets (B, T)."""
    rng = np.random.default_rng(seed)
    if spec.kind == "image":
        x = rng.standard_normal((batch_size, *spec.input_shape), dtype=np.float32)
        y = rng.integers(0, spec.classes, size=(batch_size,), dtype=np.int32)
    else:
        x = rng.integers(0, spec.classes, size=(batch_size, *spec.input_shape), dtype=np.int32)
        y = rng.integers(0, spec.classes, size=(batch_size, *spec.input_shape), dtype=np.int32)
    return x, y


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
