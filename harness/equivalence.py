"""What "the same numbers" means (docs/spec.md section 6): tolerances and the error metrics.

Public: `bench validate`, the conformance kit and adapter authors' own tests all measure agreement with
these functions. Between two frameworks neither is the truth, so a pair's error is the larger of both
directions. Logits, loss, gradients and loss curves are compared max-abs-relative; the updates of the
3-step optimizer check norm-relative per tensor (docs/spec.md says why, with the measurements).
"""
from __future__ import annotations

import numpy as np

FORWARD_TOL = 1e-5  # float32 logits and loss
FP64_TOL = 1e-9  # float64 gradients and 3-step updates
CURVE_TOL = 1e-9  # float64 loss curves
# The float32 forward under TF32 (`bench validate --device cuda`), against the reference's float32: TF32 rounds
# matmul and convolution inputs to a 10-bit mantissa (unit roundoff 2^-11 ~ 4.9e-4 per operand, accumulated in
# float32), so the logits move by a few 1e-4 of the largest one (docs/spec.md section 6.2 has the numbers).
TF32_FORWARD_TOL = 1e-2


def max_abs_rel(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|; 0 where both are exactly equal (also where both are zero)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return 0.0 if diff == 0 else diff / max(float(np.max(np.abs(b))), 1e-300)


def pair_error(a: np.ndarray, b: np.ndarray) -> float:
    return max(max_abs_rel(a, b), max_abs_rel(b, a))


def norm_rel(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b||_2 / ||b||_2; 0 where both are exactly equal (also where both are zero)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    diff = float(np.linalg.norm(a - b))
    return 0.0 if diff == 0 else diff / max(float(np.linalg.norm(b)), 1e-300)


def pair_norm_error(a: np.ndarray, b: np.ndarray) -> float:
    return max(norm_rel(a, b), norm_rel(b, a))


def metric(check: str) -> str:
    """How a check's error is measured: "step.<optimizer>" updates norm-relative, the rest max-abs-relative."""
    return "norm-relative" if check.startswith("step.") else "max-abs-relative"
