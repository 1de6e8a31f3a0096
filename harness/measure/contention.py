"""Did other processes use the worker's CPUs during a timed sample? (docs/spec.md section 5.4)

Linux only, no privileges: `/proc/stat` gives every CPU's busy time in clock ticks (user, nice, system,
irq, softirq and steal: steal is time a hypervisor gave another virtual machine); the worker's own CPU time
comes from `time.process_time()`. What the pinned CPUs were busy with beyond the worker's own time, over
the sample's wall time and CPU count, is the share other processes took. Counters tick 100 times a
second, so one tick per CPU is forgiven: short samples can only show heavy contention, which is the kind
that matters (one busy core made torch's 2-thread LeNet-5 20-40x slower).
"""
from __future__ import annotations

import os
import time
from typing import Callable

BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system [idle iowait] irq softirq steal


def _ticks_per_s() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100


def read_proc_stat() -> str | None:
    try:
        with open("/proc/stat") as f:
            return f.read()
    except OSError:
        return None


def busy_ticks(stat: str, cpus: list[int]) -> int | None:
    """Clock ticks the given CPUs spent busy (anyone's work), from the text of /proc/stat."""
    wanted, total, found = {f"cpu{c}" for c in cpus}, 0, 0
    for line in stat.splitlines():
        name, _, rest = line.partition(" ")
        if name in wanted:
            values = rest.split()
            total += sum(int(values[i]) for i in BUSY_FIELDS if i < len(values))
            found += 1
    return total if found == len(wanted) else None


class ContentionMeter:
    """Wraps the timing kernel; after each call, `last_share` is the share of the pinned CPUs' capacity that
    other processes used during it (None where /proc/stat cannot say)."""

    def __init__(self, time_steps: Callable[[int], float], cpus: list[int],
                 read_stat: Callable[[], str | None] = read_proc_stat,
                 own_cpu_s: Callable[[], float] = time.process_time, ticks_per_s: int | None = None):
        self.inner, self.cpus, self.read_stat, self.own_cpu_s = time_steps, list(cpus), read_stat, own_cpu_s
        self.hz = ticks_per_s or _ticks_per_s()
        self.last_share: float | None = None

    def _busy(self) -> int | None:
        stat = self.read_stat()
        return busy_ticks(stat, self.cpus) if stat is not None and self.cpus else None

    def __call__(self, k: int) -> float:
        b0, c0 = self._busy(), self.own_cpu_s()
        t = self.inner(k)
        b1, c1 = self._busy(), self.own_cpu_s()
        self.last_share = None
        if b0 is not None and b1 is not None and t > 0:
            others_ticks = (b1 - b0) - (c1 - c0) * self.hz - len(self.cpus)  # one tick per CPU of rounding
            self.last_share = max(0.0, others_ticks / (t * self.hz * len(self.cpus)))
        return t
