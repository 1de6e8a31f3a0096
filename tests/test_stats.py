import math

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
