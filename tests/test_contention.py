"""Contention (docs/spec.md 5.4): samples during which other processes used the worker's CPUs are found, left
out and measured again. Fake /proc/stat and a fake clock drive the logic; one real worker runs beside a busy
loop pinned to its CPU (no assertion on any timing)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xfbench.harness.case import Case, MeasureConfig
from xfbench.harness.measure.contention import ContentionMeter, busy_ticks
from xfbench.harness.measure.timing import measure

STAT = "cpu  {a} 0 0 0 0 0 0 0 0 0\ncpu0 {c0} 0 0 500 0 0 0 {s0} 0 0\ncpu1 {c1} 0 0 500 0 0 0 0 0 0\nintr 1 2 3\n"


def stat(cpu0: int, cpu1: int, steal0: int = 0) -> str:
    return STAT.format(a=cpu0 + cpu1, c0=cpu0, c1=cpu1, s0=steal0)


def test_busy_ticks_counts_user_system_irq_and_steal_of_the_given_cpus_only():
    text = "cpu0 10 1 2 1000 5 3 4 7 0 0\ncpu1 100 0 0 0 0 0 0 0 0 0\n"
    assert busy_ticks(text, [0]) == 10 + 1 + 2 + 3 + 4 + 7  # idle (1000) and iowait (5) are not busy
    assert busy_ticks(text, [0, 1]) == 27 + 100
    assert busy_ticks(text, [2]) is None  # a CPU /proc/stat does not list: no answer rather than a wrong one


class FakeMachine:
    """Each timed call lasts 0.1 s on 2 pinned CPUs, the worker busy on both; others' load per call is scripted."""

    def __init__(self, others_share_per_call: list[float]):
        self.script = list(others_share_per_call)
        self.calls, self.ticks, self.own = 0, 0, 0.0
        self.steps_seen: list[int] = []

    def read_stat(self) -> str:
        return stat(self.ticks // 2, self.ticks - self.ticks // 2)

    def own_cpu_s(self) -> float:
        return self.own

    def time_steps(self, k: int) -> float:
        share = self.script[self.calls] if self.calls < len(self.script) else 0.0
        self.calls += 1
        self.steps_seen.append(k)
        self.own += 0.2 * (1 - share)  # 2 CPUs x 0.1 s, less what the others took
        self.ticks += 20  # 2 CPUs x 0.1 s x 100 ticks/s: all busy, by the worker or by others
        return 0.1


def test_a_contended_burst_marks_exactly_those_samples_which_are_left_out_and_measured_again():
    # call 0: first step; 1-2: warm-up; 3: calibration; then samples: the 3rd and 4th are contended (50%)
    script = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0]
    fake = FakeMachine(script)
    meter = ContentionMeter(fake.time_steps, [0, 1], read_stat=fake.read_stat, own_cpu_s=fake.own_cpu_s,
                            ticks_per_s=100)
    cfg = MeasureConfig(warmup_steps=2, warmup_s=0.0, min_sample_s=0.05, min_samples=5, max_time_s=100.0,
                        target_ci=1.0)
    m = measure(meter, cfg, contention=lambda: meter.last_share)
    assert len(m.contended_s) == 2 and len(m.samples_s) == 5  # two extra samples replaced the contended ones
    assert all(0.35 < s <= 0.5 for s in m.contended_shares)  # 50%, less one forgiven tick per CPU
    assert fake.calls == 4 + 7 and not m.contended_kept


def test_light_noise_below_the_threshold_is_not_contention():
    fake = FakeMachine([0.05] * 30)  # 5% of the CPUs: interrupts, a shell; under the 10% threshold
    meter = ContentionMeter(fake.time_steps, [0, 1], read_stat=fake.read_stat, own_cpu_s=fake.own_cpu_s,
                            ticks_per_s=100)
    cfg = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.05, min_samples=5, max_time_s=100.0,
                        target_ci=1.0)
    m = measure(meter, cfg, contention=lambda: meter.last_share)
    assert not m.contended_s and len(m.samples_s) == 5


def test_when_every_sample_is_contended_they_are_reported_and_marked():
    fake = FakeMachine([0.6] * 100)
    meter = ContentionMeter(fake.time_steps, [0, 1], read_stat=fake.read_stat, own_cpu_s=fake.own_cpu_s,
                            ticks_per_s=100)
    cfg = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.05, min_samples=3, max_time_s=0.5,
                        target_ci=1.0)
    m = measure(meter, cfg, contention=lambda: meter.last_share)
    assert m.contended_kept and m.samples_s == m.contended_s and len(m.samples_s) == 15  # 3x the budget


def test_without_proc_stat_nothing_is_called_contended():
    meter = ContentionMeter(lambda k: 0.1, [0], read_stat=lambda: None)
    meter(1)
    assert meter.last_share is None


def test_a_real_worker_beside_a_busy_loop_on_its_cpu_is_flagged(tmp_path):
    pytest.importorskip("torch")
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat here")
    from xfbench.harness.measure.runner import run_worker

    cpu = sorted(os.sched_getaffinity(0))[0]  # a 1-thread worker pins itself to the first allowed CPU
    loop = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, [{cpu}])\nwhile True: pass"])
    try:
        measure_cfg = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.05, min_samples=3, max_time_s=0.5)
        case = Case(framework="torch", model="lenet5", mode="infer", batch_size=8, threads=1, measure=measure_cfg,
                    case_timeout_s=300.0)
        rec = run_worker(case, tmp_path / "w", tmp_path / "l")
    finally:
        loop.kill()
        loop.wait()
    assert rec.status == "ok", rec.stderr_tail
    assert any(w.startswith("contended: other processes used") for w in rec.warnings), rec.warnings
    assert rec.metrics.contended_samples >= 1 and rec.metrics.contended_share_max > 0.1


def test_a_busy_machine_gets_one_line_before_the_run_and_a_quiet_one_none():
    from xfbench.harness.measure.contention import busy_machine_warning

    cpus = len(os.sched_getaffinity(0))
    assert busy_machine_warning(cpus, busy=0.1, load_average=3.0) is None  # a lingering load average alone
    line = busy_machine_warning(cpus, busy=1.0, load_average=1.2)
    assert line.startswith("busy machine: other processes keep about 1.0 of the") and "\n" not in line
    assert f"cases pin {cpus} thread(s)" in line and "(load average 1.20)" in line
    assert busy_machine_warning(cpus, busy=None) is None and busy_machine_warning(0, busy=5.0) is None


def test_samples_too_short_to_show_contention_alone_add_up_to_it():
    """15% of the CPUs taken throughout, in samples of 20 ticks: each, less its forgiven tick per CPU, shows 5%
    (clean), but together they show 13%: the case is contended, and says why."""
    from xfbench.harness.measure.contention import contention_warnings

    fake = FakeMachine([0.15] * 40)
    meter = ContentionMeter(fake.time_steps, [0, 1], read_stat=fake.read_stat, own_cpu_s=fake.own_cpu_s,
                            ticks_per_s=100)
    cfg = MeasureConfig(warmup_steps=1, warmup_s=0.0, min_sample_s=0.05, min_samples=5, max_time_s=100.0,
                        target_ci=1.0)
    m = measure(meter, cfg, contention=meter.sample_share)
    assert not m.contended_s and len(m.samples_s) == 5 and len(meter.samples) == 5
    kept = meter.kept_share(cfg.contention_share)
    assert kept == pytest.approx((5 * 3 - 2) / (5 * 20))
    (warning,) = contention_warnings(m, kept, cfg.contention_share)
    assert warning.startswith("contended: other processes used 13% of the pinned CPUs over the 5 kept samples")
    quiet = FakeMachine([0.05] * 40)
    meter = ContentionMeter(quiet.time_steps, [0, 1], read_stat=quiet.read_stat, own_cpu_s=quiet.own_cpu_s,
                            ticks_per_s=100)
    m = measure(meter, cfg, contention=meter.sample_share)
    assert contention_warnings(m, meter.kept_share(cfg.contention_share), cfg.contention_share) == []


def test_replaced_samples_are_re_measured_not_contended():
    from xfbench.harness.measure.contention import contention_warnings

    fake = FakeMachine([0.0] * 6 + [0.5, 0.5] + [0.0] * 10)
    meter = ContentionMeter(fake.time_steps, [0, 1], read_stat=fake.read_stat, own_cpu_s=fake.own_cpu_s,
                            ticks_per_s=100)
    cfg = MeasureConfig(warmup_steps=2, warmup_s=0.0, min_sample_s=0.05, min_samples=5, max_time_s=100.0,
                        target_ci=1.0)
    m = measure(meter, cfg, contention=meter.sample_share)
    (note,) = contention_warnings(m, meter.kept_share(cfg.contention_share), cfg.contention_share)
    assert note.startswith("re-measured: other processes used up to 40% of the pinned CPUs in 2 sample(s)")


def test_too_few_clean_samples_between_contended_ones_is_contended_not_re_measured():
    """One sample that looked clean amid a busy loop is a fluke of the 10 ms clock: the case is contended."""
    from xfbench.harness.measure.contention import contention_warnings

    fake = FakeMachine([0.0] * 5 + [0.5] * 100)  # first step, warm-up, calibration, one clean sample; then busy
    meter = ContentionMeter(fake.time_steps, [0, 1], read_stat=fake.read_stat, own_cpu_s=fake.own_cpu_s,
                            ticks_per_s=100)
    cfg = MeasureConfig(warmup_steps=2, warmup_s=0.0, min_sample_s=0.05, min_samples=5, max_time_s=1.0,
                        target_ci=1.0)
    m = measure(meter, cfg, contention=meter.sample_share)
    assert len(m.samples_s) < 5 and m.contended_s and not m.contended_kept
    (warning,) = contention_warnings(m, meter.kept_share(cfg.contention_share), cfg.contention_share,
                                     cfg.min_samples)
    assert warning.startswith("contended: other processes used up to 40% of the pinned CPUs in ")
    assert f"only {len(m.samples_s)} clean sample(s) in the time allowed, fewer than 5" in warning
