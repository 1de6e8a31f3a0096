"""Is one configuration faster than another? Pure functions: per-step times in, verdicts out, no I/O.

The rule, used by every report and by `bench compare`: two configurations differ only when BOTH
  1. a two-sided Mann-Whitney U test on their per-step times (each list pooled over the worker
     processes) rejects "same distribution" at the 5% level, and
  2. the 95% bootstrap confidence intervals of their median step times do not overlap (hierarchical over
     processes, and never narrower than the run's pooled process-to-process spread allows:
     `stats.process_spread`, `stats.floor_ci`).
Otherwise they are "tied" / "not significant". Requiring both is deliberately conservative: the U test
alone finds tiny, irrelevant shifts significant when there are thousands of samples, and the CI rule alone
ignores how many samples back each interval. A difference is always written with its size,
"1.33x faster", never as a bare ratio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from .stats import hierarchical_medians, median_ci, widen_draws

ALPHA = 0.05
RESAMPLES = 1000  # bootstrap resamples for the relative geometric means
SEED = 0


@dataclass(frozen=True)
class Comparison:
    """`b` against `a`: `speedup` = median time of a / median time of b (> 1: b is faster)."""

    speedup: float
    p_value: float
    significant: bool

    def label(self) -> str:
        if not self.significant:
            return "not significant"
        if self.speedup >= 1:
            return f"{self.speedup:.2f}x faster"
        return f"{1 / self.speedup:.2f}x slower"


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def compare_times(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA,
                  ci_a: tuple[float, float] | None = None,
                  ci_b: tuple[float, float] | None = None) -> Comparison:
    """Compare per-step times (seconds) of configuration `b` with those of `a` (see the module rule)."""
    if not a or not b:
        raise ValueError("both configurations need at least one sample")
    speedup = float(np.median(a)) / float(np.median(b))
    if len(a) < 2 or len(b) < 2:
        return Comparison(speedup, 1.0, False)
    p = float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    if math.isnan(p):  # every value identical: no evidence of a difference
        p = 1.0
    ci_a = ci_a or median_ci(list(a))
    ci_b = ci_b or median_ci(list(b))
    return Comparison(speedup, p, p < alpha and not _overlap(ci_a, ci_b))


@dataclass(frozen=True)
class Score:
    """A framework's geometric-mean ratio best/own over `cases` (1.0 = always the best), with its CI."""

    geomean: float
    ci_low: float
    ci_high: float
    cases: int


Observations = Sequence[float] | Sequence[Sequence[float]]  # flat, or one list per worker process


def _groups(values: Observations) -> list[Sequence[float]]:
    return [values] if not values or not isinstance(values[0], (list, tuple, np.ndarray)) else list(values)


def _pooled(values: Observations) -> np.ndarray:
    return np.concatenate([np.asarray(g, dtype=np.float64) for g in _groups(values)])


def _boot_medians(values: Observations, rng: np.random.Generator, resamples: int,
                  floor: float | None = None) -> np.ndarray:
    """Bootstrap medians; observations given per process are resampled by process first (hierarchical);
    with `floor` (stats.median_floor), their log-SD is raised to it where lower (stats.widen_draws)."""
    groups = _groups(values)
    if len(groups) > 1:
        return widen_draws(hierarchical_medians(groups, rng, resamples), floor, rng)
    data = np.asarray(groups[0], dtype=np.float64)
    if data.size == 1:
        return widen_draws(np.full(resamples, data[0]), floor, rng)
    idx = rng.integers(0, data.size, size=(resamples, data.size))
    return widen_draws(np.median(data[idx], axis=1), floor, rng)


Floors = Sequence[Mapping[str, "float | None"]]  # per case, framework -> stats.median_floor (or absent)


def relative_to_best(cases: Sequence[Mapping[str, Observations]], resamples: int = RESAMPLES,
                     seed: int = SEED, confidence: float = 0.95, floors: Floors | None = None) -> dict[str, Score]:
    """Geometric mean over cases of (best median / own median), lower-is-better observations.

    Each case maps framework -> observations of a lower-is-better quantity (per-step seconds, first-step
    seconds, peak bytes) for one comparable job. The CI is a percentile bootstrap that resamples both the
    observations within each configuration (by worker process first, where they are given per process)
    and the set of cases a framework ran, so it reflects measurement noise, process-to-process spread and
    how much the answer depends on the job. Seeded: the same input gives the same output. A framework is
    scored over the cases it ran. `floors[i][fw]`: the least log-SD of that configuration's median.
    """
    rng = np.random.default_rng(seed)
    point: dict[str, list[float]] = {}
    boot: dict[str, list[np.ndarray]] = {}
    for i, case in enumerate(cases):
        if len(case) < 2:
            continue
        fws = sorted(case)
        med = {fw: float(np.median(_pooled(case[fw]))) for fw in fws}
        floor = floors[i] if floors else {}
        draws = {fw: _boot_medians(case[fw], rng, resamples, floor.get(fw)) for fw in fws}
        best_point = min(med.values())
        best_draw = np.min(np.stack([draws[fw] for fw in fws]), axis=0)
        for fw in fws:
            point.setdefault(fw, []).append(best_point / med[fw] if med[fw] > 0 else 1.0)
            boot.setdefault(fw, []).append(np.where(draws[fw] > 0, best_draw / np.maximum(draws[fw], 1e-300), 1.0))
    tail = (1 - confidence) / 2 * 100
    out = {}
    for fw in sorted(point):
        logs = np.log(np.stack(boot[fw], axis=1))  # (resamples, cases)
        k = logs.shape[1]
        pick = rng.integers(0, k, size=(resamples, k))
        means = np.exp(np.take_along_axis(logs, pick, axis=1).mean(axis=1))
        lo, hi = np.percentile(means, [tail, 100 - tail])
        out[fw] = Score(float(np.exp(np.mean(np.log(point[fw])))), float(lo), float(hi), k)
    return out


def clear_winner(scores: Mapping[str, Score]) -> tuple[str | None, list[str]]:
    """(winner, []) when the best geomean's CI overlaps no other's; else (None, frameworks tied for best)."""
    if not scores:
        return None, []
    ranked = sorted(scores, key=lambda fw: (-scores[fw].geomean, fw))
    best = scores[ranked[0]]
    tied = [fw for fw in ranked[1:] if scores[fw].ci_high >= best.ci_low]
    if tied:
        return None, [ranked[0], *tied]
    return ranked[0], []


def geomean_speedup(pairs: Sequence[tuple[Observations, Observations]], resamples: int = RESAMPLES,
                    seed: int = SEED, confidence: float = 0.95,
                    floors: Sequence[tuple[float | None, float | None]] | None = None) -> tuple[float, float, float]:
    """Geometric mean over pairs of (median a / median b) per-step times, with a seeded bootstrap CI.

    Resamples both the samples within each configuration and the set of pairs, like `relative_to_best`;
    `floors[i]`: the least log-SDs of pair i's two medians.
    """
    if not pairs:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    point = [float(np.median(_pooled(a))) / float(np.median(_pooled(b))) for a, b in pairs]
    floors = floors or [(None, None)] * len(pairs)
    logs = np.log(np.stack([_boot_medians(a, rng, resamples, fa) / _boot_medians(b, rng, resamples, fb)
                            for (a, b), (fa, fb) in zip(pairs, floors)], axis=1))  # (resamples, pairs)
    pick = rng.integers(0, logs.shape[1], size=logs.shape)
    means = np.exp(np.take_along_axis(logs, pick, axis=1).mean(axis=1))
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(np.exp(np.mean(np.log(point)))), float(lo), float(hi)
