"""A rough memory estimate per case, so that absurd sizes are refused before anything is allocated.

It is an order of magnitude, not a prediction: parameters (times 4 when training: weights, gradients
and up to two optimizer states) plus every layer's output for the whole batch (times 2 when training:
kept for the backward pass, and their gradients). It only refuses what cannot fit at all in the memory
available when the suite is planned; what a worker really uses is bounded by `xfbench.harness.measure.runner`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..measure.host import available_memory_bytes, host_memory_bytes
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
    train = mode in ("train", "converge")  # a run to accuracy trains
    return MemoryEstimate(parameters_bytes=spec.parameter_count() * size * (4 if train else 1),
                          activations_bytes=batch_size * activations_per_sample(spec) * size * (2 if train else 1))


PLAN_SHARE = 0.9  # of the memory available now: the estimate is rough, and the parent and the OS need some


def too_big(spec: ModelSpec, batch_size: int, mode: str, precision: str = "fp32") -> str | None:
    """Why this case cannot fit in the host's memory available now (the batch is always made on the host), or None."""
    what = f"{spec.name} {mode} at batch size {batch_size:,}"
    return refusal(what, estimate(spec, batch_size, mode, precision), available_memory_bytes(), host_memory_bytes())


def refusal(what: str, est: MemoryEstimate, available: int | None, total: int | None) -> str | None:
    """Why `est` cannot fit in PLAN_SHARE of `available` memory (of `total` where that is unknown), or None."""
    room = available if available is not None else total
    if room is None or est.total_bytes <= PLAN_SHARE * room:
        return None
    room_text = f"{room / GIB:,.1f} GiB available now, of {total / GIB:,.1f} GiB in all" if available is not None \
        and total else f"{room / GIB:,.1f} GiB"
    return (f"{what} needs ~{est.total_bytes / GIB:,.1f} GiB (parameters ~{est.parameters_bytes / GIB:,.1f} GiB, "
            f"activations ~{est.activations_bytes / GIB:,.1f} GiB), more than this host's "
            f"{PLAN_SHARE * room / GIB:,.1f} GiB to spare ({PLAN_SHARE:.0%} of the {room_text}); lower the batch "
            "size or the model's sizes, or free some memory")
