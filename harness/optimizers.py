"""Canonical optimizers (docs/spec.md section 3): the math of torch.optim, named hyper-parameters."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .models import SpecError


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


# Constant learning rate, no weight decay, dampening 0 everywhere.
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.01},
    "momentum": {"lr": 0.01, "momentum": 0.9, "nesterov": False},
    "adagrad": {"lr": 0.01, "initial_accumulator": 0.1, "eps": 0.0},
    "adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
    "rmsprop": {"lr": 0.001, "rho": 0.9, "eps": 1e-8},  # eps outside the square root
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},  # bias-corrected v-hat
}


def build_optimizer(name: str, **overrides: Any) -> OptimizerSpec:
    if name not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    params = dict(OPTIMIZERS[name])
    for key, value in overrides.items():
        if key not in params:
            raise SpecError(f"optimizer {name!r} has no setting {key!r}; it takes {', '.join(params)}")
        default = params[key]
        if isinstance(default, bool):
            if type(value) is not bool:
                raise SpecError(f"optimizer {name!r}: {key} must be true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"optimizer {name!r}: {key} must be a number, got {value!r}")
        elif not 0 <= value < float("inf") or (key == "lr" and value == 0):
            raise SpecError(f"optimizer {name!r}: {key}={value!r} is out of range")
        else:
            value = float(value)
        params[key] = value
    return OptimizerSpec(name, params)
