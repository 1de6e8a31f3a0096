"""A rough memory estimate per case, so that absurd sizes are refused before anything is allocated.

It is an order of magnitude, not a prediction: parameters (times 4 when training: weights, gradients
and up to two optimizer states) plus every layer's output for the whole batch (times 2 when training:
kept for the backward pass, and their gradients). It only refuses what cannot fit at all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..measure.host import host_memory_bytes
from ..models import Conv, Dense, Embedding, Flatten, ModelSpec, Pool, Recurrent, feature_shapes

_BYTES = {"fp64": 8, "bf16": 2}  # per element; everything else is 4 (fp32, tf32)
GIB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    parameters_bytes: int  # weights, plus gradients and optimizer state when training
    activations_bytes: int  # layer outputs of the whole batch, plus their gradients when training

    @property
    def total_bytes(self) -> int:
        return self.parameters_bytes + self.activations_bytes


def activations_per_sample(spec: ModelSpec) -> int:
    """Elements of every layer output (the input included) for one sample."""
    if spec.kind == "image":
        total = math.prod(spec.input_shape)
        for layer, _, out in feature_shapes(spec):
            if isinstance(layer, (Conv, Pool)):
                total += math.prod(out)
            elif not isinstance(layer, Flatten):
                raise ValueError(f"no estimate for layer {layer!r}")
        for layer in spec.layers:
            if isinstance(layer, Dense):
                total += layer.units
        return total
    (steps,) = spec.input_shape
    total = 2  # token and target
    for layer in spec.layers:
        if isinstance(layer, Embedding):
            total += layer.dim
        elif isinstance(layer, Recurrent):
            total += layer.layers * (layer.gates + 2) * layer.hidden  # gates, cell state, output
        elif isinstance(layer, Dense):
            total += 2 * layer.units  # logits and softmax
        else:
            raise ValueError(f"no estimate for layer {layer!r}")
    return steps * total


def estimate(spec: ModelSpec, batch_size: int, mode: str, precision: str = "fp32") -> MemoryEstimate:
    size = _BYTES.get(precision, 4)
    train = mode == "train"
    return MemoryEstimate(parameters_bytes=spec.parameter_count() * size * (4 if train else 1),
                          activations_bytes=batch_size * activations_per_sample(spec) * size * (2 if train else 1))


def too_big(spec: ModelSpec, batch_size: int, mode: str, precision: str = "fp32",
            limit_bytes: int | None = None) -> str | None:
    """Why this case cannot fit in the host's memory (the batch is always made on the host), or None."""
    limit = limit_bytes if limit_bytes is not None else host_memory_bytes()
    est = estimate(spec, batch_size, mode, precision)
    if limit is None or est.total_bytes <= limit:
        return None
    return (f"{spec.name} {mode} at batch size {batch_size:,} needs ~{est.total_bytes / GIB:,.1f} GiB "
            f"(parameters ~{est.parameters_bytes / GIB:,.1f} GiB, activations ~{est.activations_bytes / GIB:,.1f}"
            f" GiB), more than this host's {limit / GIB:,.1f} GiB; lower the batch size or the model's sizes")
