"""Pure statistics over per-step times: floats in, numbers out, no I/O."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


def median_ci(values: list[float], confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (seeded, so reproducible)."""
    if len(values) < 2:
        v = values[0] if values else math.nan
        return v, v
    data = np.asarray(values, dtype=np.float64)
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])
    res = sps.bootstrap((data,), np.median, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                        method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def ci_half_width_share(values: list[float]) -> float:
    """Half the CI width of the median relative to the median (the stopping rule's quantity)."""
    lo, hi = median_ci(values)
    med = float(np.median(values))
    return (hi - lo) / 2 / med if med > 0 else math.inf


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    mean: float
    std: float
    min: float
    max: float
    iqr: float
    ci_low: float
    ci_high: float
    cv: float  # std / mean

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def summarize(values: list[float]) -> Summary:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no samples to summarize")
    q1, q3 = np.percentile(data, [25, 75])
    mean = float(data.mean())
    std = float(data.std(ddof=1)) if data.size > 1 else 0.0
    lo, hi = median_ci(values)
    return Summary(n=int(data.size), median=float(np.median(data)), mean=mean, std=std,
                   min=float(data.min()), max=float(data.max()), iqr=float(q3 - q1),
                   ci_low=lo, ci_high=hi, cv=std / mean if mean > 0 else math.nan)
