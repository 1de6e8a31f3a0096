"""Significance, ties and the verdict's winner logic on crafted samples (no real timings)."""
import numpy as np
import pytest

from xfbench.harness.analysis.significance import Comparison, Score, clear_winner, compare_times, geomean_speedup, relative_to_best
from xfbench.harness.report.verdict import answer


def noisy(median, n=20, spread=0.01, seed=0):
    """n per-step times spread evenly (+-spread) around `median`, in a shuffled order."""
    vals = median * (1 + np.linspace(-spread, spread, n))
    return list(np.random.default_rng(seed).permutation(vals))


def test_clearly_faster_and_slower():
    a, b = noisy(0.010), noisy(0.008)
    c = compare_times(a, b)
    assert c.significant and c.p_value < 1e-6
    assert c.speedup == pytest.approx(1.25)
    assert c.label() == "1.25x faster"
    assert compare_times(b, a).label() == "1.25x slower"


def test_same_distribution_is_not_significant():
    c = compare_times(noisy(0.010, seed=1), noisy(0.010, seed=2))
    assert not c.significant and c.label() == "not significant"


def test_small_shift_with_overlapping_intervals_is_a_tie():
    # 0.5% apart with 10% spread: the medians' CIs overlap, so "tied" even if a test were to reject.
    c = compare_times(noisy(0.0100, spread=0.1), noisy(0.01005, spread=0.1, seed=3))
    assert not c.significant


def test_significant_test_but_overlapping_cis_is_still_a_tie():
    a, b = noisy(0.010), noisy(0.008)
    assert compare_times(a, b).significant
    assert not compare_times(a, b, ci_a=(0.007, 0.011), ci_b=(0.0075, 0.0085)).significant


def test_single_samples_and_identical_samples_are_never_significant():
    assert compare_times([1.0], [2.0]) == Comparison(0.5, 1.0, False)
    assert not compare_times([1.0] * 5, [1.0] * 5).significant
    with pytest.raises(ValueError):
        compare_times([], [1.0])


def test_relative_to_best_point_estimates_and_seeded():
    cases = [{"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}, {"a": [1.0, 1.0], "b": [0.5, 0.5]},
             {"a": [3.0]}]  # a case with one framework is not comparable
    s = relative_to_best(cases)
    assert s["a"].geomean == pytest.approx(np.sqrt(0.5)) and s["a"].cases == 2
    assert s["b"].geomean == pytest.approx(np.sqrt(0.5))
    assert s == relative_to_best(cases)  # seeded: identical
    assert s["a"].ci_low == pytest.approx(0.5) and s["a"].ci_high == pytest.approx(1.0)


def test_clear_winner_needs_non_overlapping_intervals():
    assert clear_winner({"a": Score(1.0, 0.95, 1.0, 3), "b": Score(0.6, 0.5, 0.7, 3)}) == ("a", [])
    assert clear_winner({"a": Score(1.0, 0.8, 1.0, 3), "b": Score(0.9, 0.7, 0.85, 3),
                         "c": Score(0.5, 0.4, 0.6, 3)}) == (None, ["a", "b"])
    assert clear_winner({}) == (None, [])


def test_answers_say_no_clear_winner_or_name_one():
    assert answer({}).startswith("no comparable cases")
    tied = answer({"a": Score(1.0, 0.8, 1.0, 2), "b": Score(0.9, 0.7, 0.95, 2)})
    assert tied.startswith("no clear winner: a at 1.00 of the best (95% CI 0.80–1.00, 2 cases); b at 0.90")
    clear = answer({"a": Score(1.0, 0.97, 1.0, 1), "b": Score(0.5, 0.4, 0.6, 1)})
    assert clear == ("a at 1.00 of the best (95% CI 0.97–1.00, 1 case); "
                     "next b at 0.50 of the best (95% CI 0.40–0.60, 1 case)")


def test_geomean_speedup():
    g, lo, hi = geomean_speedup([([2.0] * 4, [1.0] * 4), ([1.0] * 4, [2.0] * 4)])
    assert g == pytest.approx(1.0) and lo == pytest.approx(0.5) and hi == pytest.approx(2.0)
    assert np.isnan(geomean_speedup([])[0])
