"""Pure statistics over per-step times: floats in, numbers out, no I/O."""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Iterable, Sequence

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


def hierarchical_medians(groups: Sequence[Sequence[float]], rng: np.random.Generator,
                         resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Bootstrap medians that resample worker processes first, then the samples within each chosen one.

    With one process this is the ordinary bootstrap of its samples. With several, a resample draws as many
    processes as there are, with replacement, and from each drawn process as many of its samples as it has,
    so process-to-process spread widens the distribution instead of averaging away (a hierarchical, or
    two-stage, bootstrap).
    """
    arrays = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if not arrays:
        raise ValueError("no samples to resample")
    sizes = np.array([a.size for a in arrays])
    width = int(sizes.max())
    padded = np.full((len(arrays), width), np.nan)
    for i, a in enumerate(arrays):
        padded[i, :a.size] = a
    if len(arrays) == 1:
        chosen = np.zeros((resamples, 1), dtype=np.int64)
    else:
        chosen = rng.integers(0, len(arrays), size=(resamples, len(arrays)))
    parts = []
    for slot in range(chosen.shape[1]):
        g = chosen[:, slot]  # (resamples,) the process drawn for this slot
        n = sizes[g][:, None]
        idx = np.minimum((rng.random((resamples, width)) * n).astype(np.int64), n - 1)
        values = padded[g[:, None], idx]
        values[np.arange(width)[None, :] >= n] = np.nan  # a process contributes its own sample count
        parts.append(values)
    return np.nanmedian(np.concatenate(parts, axis=1), axis=1)


def grouped_median_ci(groups: Sequence[Sequence[float]], confidence: float = CONFIDENCE,
                      seed: int = 0) -> tuple[float, float]:
    """CI of the median of pooled samples from several processes: the hierarchical bootstrap above."""
    groups = [g for g in groups if len(g)]
    if len(groups) <= 1:
        return median_ci(list(groups[0]) if groups else [], confidence, seed)
    draws = hierarchical_medians(groups, np.random.default_rng(seed))
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)


def process_spread(configs: Iterable[Sequence[Sequence[float]]]) -> float | None:
    """The pooled process-to-process spread: SD of log(process median) around its configuration's mean.

    `configs`: per configuration, its samples split by worker process. Pooled as in a one-way ANOVA
    (sum of squares over the degrees of freedom, configurations with >= 2 processes only); None when
    no configuration has two. With 2 processes a configuration's own spread rests on one degree of
    freedom, so two processes that agree by chance would give a CI far too narrow; pooled over every
    configuration of a run (24 in the quick suite) it is a stable estimate, the floor of `floor_ci`.
    """
    ss, df = 0.0, 0
    for groups in configs:
        logs = [math.log(float(np.median(g))) for g in groups if len(g)]
        if len(logs) >= 2:
            mean = sum(logs) / len(logs)
            ss += sum((x - mean) ** 2 for x in logs)
            df += len(logs) - 1
    return math.sqrt(ss / df) if df else None


def median_floor(spread: float | None, processes: int) -> float | None:
    """The least SD of log(median) of a configuration measured in `processes` processes, given the spread."""
    return spread / math.sqrt(max(processes, 1)) if spread is not None else None


def floor_ci(median: float, ci: tuple[float, float], floor: float | None,
             confidence: float = CONFIDENCE) -> tuple[float, float]:
    """`ci` widened, where narrower, to the normal interval median * exp(+-z * floor) (log scale)."""
    if floor is None or not median > 0:
        return ci
    f = math.exp(NormalDist().inv_cdf(0.5 + confidence / 2) * floor)
    return min(ci[0], median / f), max(ci[1], median * f)


def widen_draws(draws: np.ndarray, floor: float | None, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap draws of a median with their log-variance raised to `floor`**2 where it is lower."""
    if floor is None or draws.size < 2 or np.any(draws <= 0):
        return draws
    missing = floor ** 2 - float(np.log(draws).var())
    return draws * np.exp(rng.normal(0.0, math.sqrt(missing), draws.size)) if missing > 0 else draws


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


def summarize(values: list[float], groups: Sequence[Sequence[float]] | None = None,
              floor: float | None = None) -> Summary:
    """Statistics of the pooled `values`; with `groups` (the same samples, one list per worker process) the
    CI of the median is the hierarchical bootstrap's, so it covers process-to-process spread; with `floor`
    (`median_floor` of the run's pooled spread) it is never narrower than that spread allows."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no samples to summarize")
    q1, q3 = np.percentile(data, [25, 75])
    mean = float(data.mean())
    std = float(data.std(ddof=1)) if data.size > 1 else 0.0
    lo, hi = grouped_median_ci(groups) if groups is not None and len(groups) > 1 else median_ci(values)
    lo, hi = floor_ci(float(np.median(data)), (lo, hi), floor)
    return Summary(n=int(data.size), median=float(np.median(data)), mean=mean, std=std,
                   min=float(data.min()), max=float(data.max()), iqr=float(q3 - q1),
                   ci_low=lo, ci_high=hi, cv=std / mean if mean > 0 else math.nan)
