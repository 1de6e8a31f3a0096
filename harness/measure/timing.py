"""The timing loop (docs/spec.md section 5.3-5.4): first step, warm-up, calibration, samples.

The kernel is `time_steps(k)`: run k steps, sync, return the seconds. Everything else here only
decides how often to call it, so a fake clock in tests drives the whole protocol exactly.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from ..case import MeasureConfig
from ..analysis.stats import ci_half_width_share

Clock = Callable[[], int]  # nanoseconds, monotonic


def step_timer(step: Callable[[], None], sync: Callable[[], None],
               clock: Clock = time.perf_counter_ns) -> Callable[[int], float]:
    """The timing kernel: k steps then a full device sync, in seconds."""
    def time_steps(k: int) -> float:
        t0 = clock()
        for _ in range(k):
            step()
        sync()
        return (clock() - t0) / 1e9
    return time_steps


@dataclass
class Measurement:
    first_step_s: float
    warmup_steps: int
    warmup_s: float
    steps_per_sample: int
    samples_s: list[float] = field(default_factory=list)  # seconds per step, one per sample
    stop_reason: str = ""
    measure_s: float = 0.0  # wall time of the sampling phase
    # Samples during which other processes used more than `contention_share` of the pinned CPUs: left out of
    # samples_s (and re-measured) unless no clean sample was left, then samples_s holds them and
    # `contended_kept` says so.
    contended_s: list[float] = field(default_factory=list)
    contended_shares: list[float] = field(default_factory=list)
    contended_kept: bool = False


def measure(time_steps: Callable[[int], float], cfg: MeasureConfig,
            steady: Callable[[], None] | None = None,
            contention: Callable[[], float | None] | None = None,
            sampling: Callable[[], None] | None = None) -> Measurement:
    """Run the protocol's phases around `time_steps`; return per-step times of every sample.

    `steady` is called once, after the warm-up: where set-up ends and the steady state begins (the
    worker resets its peak-memory counters there). `sampling` is called once, after the calibration, as
    the timed samples begin (the worker starts its GPU utilisation reading there); they end when this returns.
    `contention`, after each sample, gives the share of the pinned CPUs that other processes used during it;
    above `cfg.contention_share` the sample is contended: kept apart and measured again while the time
    budget lasts.
    """
    first = time_steps(1)

    # Warm-up: at least `warmup_steps` steps and at least `warmup_s` seconds, the first step excluded.
    warm_n, warm_s = 0, 0.0
    while warm_n < cfg.warmup_steps or warm_s < cfg.warmup_s:
        warm_s += time_steps(1)
        warm_n += 1
    per_step = warm_s / warm_n
    if steady is not None:
        steady()

    # Calibration: k steps per sample so that one sample lasts >= min_sample_s.
    k = max(1, math.ceil(cfg.min_sample_s / per_step)) if per_step > 0 else 1
    while True:
        t = time_steps(k)
        if t >= cfg.min_sample_s:
            break
        k = max(k + 1, math.ceil(k * cfg.min_sample_s / t * 1.1)) if t > 0 else k * 2

    m = Measurement(first_step_s=first, warmup_steps=warm_n, warmup_s=warm_s, steps_per_sample=k)
    if sampling is not None:
        sampling()
    # Samples: until the CI of the median is tight enough, or the time or sample budget is spent.
    spent = 0.0
    while True:
        t = time_steps(k)
        spent += t
        share = contention() if contention is not None else None
        if share is not None and share > cfg.contention_share:
            m.contended_s.append(t / k)
            m.contended_shares.append(share)
        else:
            m.samples_s.append(t / k)
        n = len(m.samples_s)
        if n >= cfg.min_samples and ci_half_width_share(m.samples_s) <= cfg.target_ci:
            m.stop_reason = f"95% CI of the median within {cfg.target_ci:.0%}"
            break
        if spent >= cfg.max_time_s:
            m.stop_reason = f"time budget of {cfg.max_time_s:g} s spent"
            if n >= cfg.min_samples:
                break
            # Below min_samples only the budget's hard ceiling (3x) stops a very slow case.
            if spent >= 3 * cfg.max_time_s:
                m.stop_reason += f" with {n} of {cfg.min_samples} samples"
                break
        if n + len(m.contended_s) >= cfg.max_samples:
            m.stop_reason = f"sample limit {cfg.max_samples} reached"
            break
    if not m.samples_s:  # every sample contended: report them, marked, rather than nothing
        m.samples_s, m.contended_kept = list(m.contended_s), True
    m.measure_s = spent
    return m
