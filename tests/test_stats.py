import math
import numpy as np

import pytest

from harness.analysis.stats import ci_half_width_share, median_ci, summarize


def test_summary_of_literal_numbers():
    s = summarize([1.0, 2.0, 3.0, 4.0, 10.0])
    assert (s.n, s.median, s.mean, s.min, s.max) == (5, 3.0, 4.0, 1.0, 10.0)
    assert s.iqr == 2.0  # 4 - 2 (linear percentiles)
    assert s.std == pytest.approx(math.sqrt(12.5))
    assert s.cv == pytest.approx(math.sqrt(12.5) / 4.0)


def test_median_ci_brackets_the_median_and_is_reproducible():
    values = [1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 1.03, 0.97, 1.00, 1.01]
    lo, hi = median_ci(values)
    assert lo <= 1.0 <= hi
    assert 0.97 <= lo and hi <= 1.03
    assert median_ci(values) == (lo, hi)


def test_identical_samples_have_a_zero_width_interval():
    assert median_ci([2.5] * 10) == (2.5, 2.5)
    assert ci_half_width_share([2.5] * 10) == 0.0


def test_single_sample_interval_is_the_sample():
    assert median_ci([0.3]) == (0.3, 0.3)


def test_noisier_samples_have_a_wider_interval():
    tight = [1.0, 1.001, 0.999] * 5
    loose = [1.0, 1.2, 0.8] * 5
    assert ci_half_width_share(tight) < 0.002 < ci_half_width_share(loose)


def test_summary_refuses_no_samples():
    with pytest.raises(ValueError):
        summarize([])


def test_hierarchical_ci_widens_with_process_to_process_spread():
    """Two processes 30% apart: the CI must cover both, wider than either alone or the pooled samples'."""
    from harness.analysis.stats import grouped_median_ci, median_ci

    rng = np.random.default_rng(1)
    fast = list(0.010 * (1 + 0.01 * rng.standard_normal(40)))  # a fast process that took more samples
    slow = list(0.013 * (1 + 0.01 * rng.standard_normal(12)))
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    both = grouped_median_ci([fast, slow])
    assert width(both) > 3 * max(width(median_ci(fast)), width(median_ci(slow)))
    assert width(both) > 2 * width(median_ci(fast + slow))  # pooled, the fast process's samples outvote
    assert grouped_median_ci([fast, slow]) == both  # seeded
    assert grouped_median_ci([fast]) == median_ci(fast)  # one process: the ordinary bootstrap
    same = [list(0.010 * (1 + 0.01 * rng.standard_normal(30))) for _ in range(2)]
    assert width(grouped_median_ci(same)) < width(both) / 3  # no spread between processes: no widening


def test_relative_to_best_resamples_processes_first():
    from harness.analysis.significance import relative_to_best

    rng = np.random.default_rng(2)
    a1 = list(0.010 * (1 + 0.01 * rng.standard_normal(40)))  # a's fast process, with more samples
    a2 = list(0.013 * (1 + 0.01 * rng.standard_normal(12)))  # a's slow process
    b = list(0.0115 * (1 + 0.01 * rng.standard_normal(40)))
    pooled = relative_to_best([{"a": a1 + a2, "b": b}])
    by_process = relative_to_best([{"a": [a1, a2], "b": b}])
    assert by_process["a"].geomean == pooled["a"].geomean  # the point estimate pools the samples
    # Pooled, a's fast process outvotes the slow one and a always looks best; by process, it often is not.
    assert by_process["a"].ci_low < 0.95 < pooled["a"].ci_low
