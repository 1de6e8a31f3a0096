import math
import numpy as np

import pytest

from xfbench.harness.analysis.stats import ci_half_width_share, median_ci, summarize


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
    from xfbench.harness.analysis.stats import grouped_median_ci, median_ci

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
    from xfbench.harness.analysis.significance import relative_to_best

    rng = np.random.default_rng(2)
    a1 = list(0.010 * (1 + 0.01 * rng.standard_normal(40)))  # a's fast process, with more samples
    a2 = list(0.013 * (1 + 0.01 * rng.standard_normal(12)))  # a's slow process
    b = list(0.0115 * (1 + 0.01 * rng.standard_normal(40)))
    pooled = relative_to_best([{"a": a1 + a2, "b": b}])
    by_process = relative_to_best([{"a": [a1, a2], "b": b}])
    assert by_process["a"].geomean == pooled["a"].geomean  # the point estimate pools the samples
    # Pooled, a's fast process outvotes the slow one and a always looks best; by process, it often is not.
    assert by_process["a"].ci_low < 0.95 < pooled["a"].ci_low


def _process(median, n, rng, noise=0.01):
    return list(median * (1 + noise * rng.standard_normal(n)))


def test_process_spread_pools_the_log_spread_of_process_medians_over_configurations():
    from xfbench.harness.analysis.stats import process_spread

    # Process medians 10% apart in every configuration, whatever its speed: log(1.1) / sqrt(2) each.
    configs = [[[m] * 5, [m * 1.1] * 5] for m in (0.001, 0.01, 0.5)]
    assert process_spread(configs) == pytest.approx(math.log(1.1) / math.sqrt(2))
    assert process_spread(configs + [[[0.2] * 7]]) == process_spread(configs)  # one process: no information
    assert process_spread([[[0.2] * 7]]) is None


def test_two_processes_that_agree_by_chance_get_the_runs_spread_as_their_floor():
    """Configurations of one run whose processes differ by 10-30% give a pooled spread; a configuration whose
    own two processes happened to agree gets a CI as wide as that spread allows, not a 1-degree-of-freedom one."""
    from xfbench.harness.analysis.stats import floor_ci, median_floor, process_spread

    rng = np.random.default_rng(3)
    spread_configs = [[_process(m, 10, rng), _process(m * f, 10, rng)] for m, f in ((0.01, 1.3), (0.02, 1.1),
                                                                                    (0.05, 1.2), (0.03, 0.85))]
    lucky = [_process(0.01, 10, rng), _process(0.01, 10, rng)]
    spread = process_spread(spread_configs + [lucky])
    own = summarize(lucky[0] + lucky[1], lucky)
    floored = summarize(lucky[0] + lucky[1], lucky, median_floor(spread, 2))
    assert floored.median == own.median and floored.ci_low < own.ci_low and floored.ci_high > own.ci_high
    z = 1.959963984540054
    assert floored.ci_high / floored.median == pytest.approx(math.exp(z * spread / math.sqrt(2)))
    wide = (own.median * 0.5, own.median * 2)
    assert floor_ci(own.median, wide, median_floor(spread, 2)) == wide  # never narrower than its own
    assert floor_ci(own.median, (1.0, 1.0), None) == (1.0, 1.0)


def test_a_floor_widens_the_verdicts_draws_too():
    from xfbench.harness.analysis.significance import relative_to_best

    rng = np.random.default_rng(4)
    a = [_process(0.010, 30, rng), _process(0.010, 30, rng)]
    b = [_process(0.011, 30, rng), _process(0.011, 30, rng)]
    plain = relative_to_best([{"a": a, "b": b}])
    floored = relative_to_best([{"a": a, "b": b}], floors=[{"a": 0.1, "b": 0.1}])
    assert floored["b"].geomean == plain["b"].geomean
    assert floored["b"].ci_high - floored["b"].ci_low > 3 * (plain["b"].ci_high - plain["b"].ci_low)
