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
from typing import Any, Callable

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
        self.last_raw: tuple[float, float] | None = None  # (others' ticks, capacity in ticks) of the last call
        self.samples: list[tuple[tuple[float, float] | None, float | None]] = []  # (raw, share) per sample

    def _busy(self) -> int | None:
        stat = self.read_stat()
        return busy_ticks(stat, self.cpus) if stat is not None and self.cpus else None

    def __call__(self, k: int) -> float:
        b0, c0 = self._busy(), self.own_cpu_s()
        t = self.inner(k)
        b1, c1 = self._busy(), self.own_cpu_s()
        self.last_share = self.last_raw = None
        if b0 is not None and b1 is not None and t > 0:
            others, capacity = (b1 - b0) - (c1 - c0) * self.hz, t * self.hz * len(self.cpus)
            self.last_raw = (others, capacity)
            self.last_share = max(0.0, (others - len(self.cpus)) / capacity)  # one tick per CPU of rounding
        return t

    def sample_share(self) -> float | None:
        """`timing.measure`'s `contention` callback: the last call was a sample; its share, kept for `kept_share`."""
        self.samples.append((self.last_raw, self.last_share))
        return self.last_share

    def kept_share(self, threshold: float, all_kept: bool = False) -> float | None:
        """The share others took over all the samples kept as clean (all of them with `all_kept`), together.

        A sample of a few ticks cannot show moderate contention alone (one tick per CPU is forgiven), but
        summed over every kept sample the ticks can: with a busy loop on one of 2 CPUs, 30 ms samples of
        torch looked clean one by one while the loop took a quarter of the CPUs throughout.
        """
        kept = [raw for raw, share in self.samples
                if raw is not None and (all_kept or share is None or share <= threshold)]
        capacity = sum(c for _, c in kept)
        if not kept or capacity <= 0:
            return None
        return max(0.0, (sum(o for o, _ in kept) - len(self.cpus)) / capacity)


def busy_cpus_now(window_s: float = 0.5, cpus: list[int] | None = None) -> float | None:
    """How many of `cpus` (default: those this process may use) other processes keep busy, measured over
    `window_s` seconds of /proc/stat while this process sleeps; None where /proc/stat cannot say."""
    cpus = sorted(os.sched_getaffinity(0)) if cpus is None else cpus
    first = read_proc_stat()
    c0 = time.process_time()
    time.sleep(window_s)
    second = read_proc_stat()
    if first is None or second is None:
        return None
    b0, b1 = busy_ticks(first, cpus), busy_ticks(second, cpus)
    if b0 is None or b1 is None:
        return None
    own = (time.process_time() - c0) * _ticks_per_s()
    return max(0.0, (b1 - b0 - own) / (_ticks_per_s() * window_s))


def busy_machine_warning(threads: int, busy: float | None, load_average: float | None = None) -> str | None:
    """One line when other processes leave fewer free CPUs than a case pins; None on a quiet machine.

    Decided on `busy` (measured just now); the load average, a minute's mean that lingers after an earlier
    run, is only quoted.
    """
    allowed = len(os.sched_getaffinity(0))
    if threads <= 0 or busy is None or allowed - busy >= threads - 0.5:
        return None
    return (f"busy machine: other processes keep about {busy:.1f} of the {allowed} CPUs busy"
            + (f" (load average {load_average:.2f})" if load_average is not None else "")
            + f", and cases pin {threads} thread(s): expect contended samples; a quiet machine gives steadier numbers")


def contention_warnings(m: Any, kept_share: float | None = None, threshold: float = 0.10,
                        min_samples: int = 0) -> list[str]:
    """The record's lines about contention in a measurement (timing.Measurement).

    "contended: ..." when the statistics hold contended samples (no clean one was left), when contention
    left fewer clean samples than the protocol's `min_samples` (the few that looked clean are a fluke of the
    10 ms clock, not a clean measurement), or when the kept samples, each clean alone, add up to more than
    `threshold` of others' use (`kept_share`): the number is not the framework's alone, and the report, heat
    map and verdict say so. "re-measured: ..." when contended samples were left out and replaced by enough
    clean ones: the number stands, the line says it happened.
    """
    out = []
    k = len(m.contended_s)
    if m.contended_kept:
        return [f"contended: other processes used up to {max(m.contended_shares):.0%} of the pinned CPUs in {k} of "
                f"{k} samples; no clean sample was left, so these are reported"]
    if k and len(m.samples_s) < min_samples:
        return [f"contended: other processes used up to {max(m.contended_shares):.0%} of the pinned CPUs in {k} "
                f"sample(s); only {len(m.samples_s)} clean sample(s) in the time allowed, fewer than {min_samples}"]
    if kept_share is not None and kept_share > threshold:
        out.append(f"contended: other processes used {kept_share:.0%} of the pinned CPUs over the "
                   f"{len(m.samples_s)} kept samples, too short one by one to show it (10 ms clock ticks)")
    if k:
        out.append(f"re-measured: other processes used up to {max(m.contended_shares):.0%} of the pinned CPUs in "
                   f"{k} sample(s), left out and measured again ({len(m.samples_s)} clean samples kept)")
    return out
