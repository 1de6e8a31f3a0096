"""Stage: `bench validate`, the equivalence matrix (docs/spec.md section 6).

`matrix` runs one worker per adapter (`worker`) and compares their numbers with `xfbench.harness.equivalence`;
`cache` remembers outcomes in the per-user validation cache for `bench run`; `tables` shows them.
"""
from ..equivalence import CURVE_TOL, FORWARD_TOL, FP64_TOL, TF32_FORWARD_TOL, max_abs_rel, metric, norm_rel, pair_error
from ..models import TINY_SIZES
from .matrix import Check, Validation, ValidateError, describe_failure, validate

__all__ = ["CURVE_TOL", "FORWARD_TOL", "FP64_TOL", "TF32_FORWARD_TOL", "TINY_SIZES", "Check", "ValidateError",
           "Validation", "describe_failure", "max_abs_rel", "metric", "norm_rel", "pair_error", "validate"]
