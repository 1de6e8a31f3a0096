"""The timing protocol driven by a fake clock: exact numbers, no real time involved."""
from xfbench.harness.case import MeasureConfig
from xfbench.harness.measure.timing import measure, step_timer


class FakeClock:
    """A nanosecond clock that only moves when a fake step runs."""

    def __init__(self):
        self.now = 0
        self.steps = 0
        self.syncs = 0

    def __call__(self) -> int:
        return self.now


def make(step_ns):
    """step_ns(i) -> nanoseconds that step number i (0-based) takes."""
    clock = FakeClock()

    def step():
        clock.now += step_ns(clock.steps)
        clock.steps += 1

    def sync():
        clock.syncs += 1

    return clock, step_timer(step, sync, clock)


def test_kernel_times_k_steps_and_syncs_once():
    clock, time_steps = make(lambda i: 2_000_000)
    assert time_steps(5) == 0.010
    assert (clock.steps, clock.syncs) == (5, 1)


def test_phases_first_step_warmup_calibration_and_stopping():
    # First step 500 ms (compilation), then 10 ms per step, perfectly steady.
    clock, time_steps = make(lambda i: 500_000_000 if i == 0 else 10_000_000)
    cfg = MeasureConfig(warmup_steps=3, warmup_s=0.05, min_sample_s=0.1, min_samples=10, target_ci=0.02,
                        max_time_s=30.0)
    m = measure(time_steps, cfg)
    assert m.first_step_s == 0.5
    assert m.warmup_steps == 5  # 3 steps are only 30 ms: warm-up goes on to 50 ms
    assert m.steps_per_sample == 10  # 100 ms / 10 ms
    assert m.samples_s == [0.01] * 10  # zero spread: stops at min_samples
    assert "CI" in m.stop_reason
    # 1 + 5 + calibration (10) + 10 samples of 10 steps
    assert clock.steps == 1 + 5 + 10 + 100


def test_calibration_grows_k_until_a_sample_is_long_enough():
    # Warm-up steps are slow (20 ms), later ones fast (1 ms): the first guess of k (5) is too small.
    clock, time_steps = make(lambda i: 20_000_000 if i < 4 else 1_000_000)
    cfg = MeasureConfig(warmup_steps=3, warmup_s=0.0, min_sample_s=0.1, min_samples=3, max_time_s=30.0)
    m = measure(time_steps, cfg)
    assert m.warmup_steps == 3
    assert m.steps_per_sample * 0.001 >= 0.1  # each sample lasts at least min_sample_s
    assert m.samples_s == [0.001] * 3


def test_noisy_case_stops_at_the_time_budget():
    # Alternating 10 ms / 20 ms samples never reach a 2% CI; the 1 s budget stops it.
    clock, time_steps = make(lambda i: 10_000_000)
    calls = {"n": 0}

    def alternating(k):
        calls["n"] += 1
        return time_steps(k) * (2 if calls["n"] % 2 else 1)

    cfg = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.05, min_samples=5, max_time_s=1.0)
    m = measure(alternating, cfg)
    assert "time budget" in m.stop_reason
    assert len(m.samples_s) >= 5
    assert 1.0 <= m.measure_s < 1.0 + 0.2


def test_slow_case_keeps_min_samples_up_to_three_budgets():
    clock, time_steps = make(lambda i: 400_000_000)  # 0.4 s a step
    noisy = iter([1.0, 1.5] * 100)

    def jitter(k):
        return time_steps(k) * next(noisy)

    cfg = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.1, min_samples=10, max_time_s=1.0)
    m = measure(jitter, cfg)
    assert len(m.samples_s) < 10 and "with" in m.stop_reason and m.measure_s >= 3.0


def test_sample_limit():
    clock, time_steps = make(lambda i: 1_000_000)
    values = iter([1.0, 3.0] * 1000)
    cfg = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.001, min_samples=2, max_samples=7,
                        max_time_s=100.0)
    m = measure(lambda k: time_steps(k) * next(values), cfg)
    assert len(m.samples_s) == 7 and "sample limit" in m.stop_reason
