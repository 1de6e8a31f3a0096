"""The report's types: what `build` makes from records and every renderer reads. No logic beyond naming."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..analysis.stats import Summary
from ..case import Case

# Columns that hold numbers are right-aligned in every format.
RIGHT = {"batch", "samples/s", "95% CI", "rel. speed", "first step s", "set-up memory", "step memory", "GFLOP/s", "CPU busy",
         "GPU busy", "NVML memory",
         "samples", "speed vs best", "cases", "wins", "ties", "losses", "share of peak", "threads", "GEMM GFLOP/s",
         "GEMM 95% CI", "of host peak", "copy GB/s", "copy 95% CI", "native samples/s"}
# Columns named per host (the "By host" table, xfbench.harness.report.hosts) are numbers too.
RIGHT_PREFIXES = ("samples/s on ", "95% CI on ", "ratio ")


def right_aligned(column: object) -> bool:
    """Whether a table column holds numbers (right-aligned in every format)."""
    return column in RIGHT or str(column).startswith(RIGHT_PREFIXES)


@dataclass(frozen=True)
class Config:
    """One configuration of one framework, its worker processes pooled."""

    config_id: str  # the case_id without its process suffix
    framework: str
    batch_size: int
    times_s: tuple[float, ...]  # seconds per step, every sample of every process
    summary: Summary
    first_step_s: tuple[float, ...]  # one per process
    # Steady-state step peak (device memory on GPU, host RSS on CPU), one per process; the whole run's peak
    # where the record has no step figure (memory_whole_run).
    memory_bytes: tuple[float, ...]
    flops_per_s: float | None
    cpu_utilisation: float | None
    processes: int
    warnings: tuple[str, ...]
    validated: str
    manifest: dict[str, Any]
    setup_memory_bytes: tuple[float, ...] = ()  # peak from import to the end of warm-up, one per process
    process_times_s: tuple[tuple[float, ...], ...] = ()  # times_s split by worker process
    memory_whole_run: bool = False
    # The least SD of log(median step time) the run's pooled process-to-process spread allows for this many
    # processes (xfbench.harness.analysis.stats.median_floor); None where no configuration of the run had two.
    median_floor: float | None = None
    # GPU cases with NVML: the mean over processes of the share of the timed samples a kernel ran, and each
    # process's GPU memory as the driver counts it (metrics gpu_utilisation, nvml_used_memory_bytes)
    gpu_utilisation: float | None = None
    nvml_memory_bytes: tuple[float, ...] = ()

    @property
    def samples_per_s(self) -> float:
        return self.batch_size / self.summary.median

    @property
    def ci(self) -> tuple[float, float]:
        return self.batch_size / self.summary.ci_high, self.batch_size / self.summary.ci_low


def group_key(case: Case, host: str = "") -> tuple[str, str, str, str, int, str, str, str]:
    """What a case is compared by, less the batch size: the fields of its `Group`, in order. `host`: the
    machine that measured it (xfbench.harness.report.hosts.host_labels), "" when the run's records share one."""
    opt = ""
    if case.mode == "train":
        opt = case.optimizer + (f" {json.dumps(case.optimizer_params, sort_keys=True)}" if case.optimizer_params else "")
    return (case.model, case.mode, case.device, case.precision, case.threads,
            json.dumps(case.model_params, sort_keys=True), opt, host)


@dataclass
class Group:
    """One comparison: a model, mode, device, precision, thread count, params and optimizer, on one host.

    `host` is "" when every record of the run came from one machine; otherwise the hostname that measured
    the group's cases, and frameworks are compared only within it."""

    model: str
    mode: str
    device: str
    precision: str
    threads: int
    params: str
    optimizer: str
    host: str = ""
    configs: list[Config] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str, str, int, str, str, str]:
        """`group_key` of its cases."""
        return (self.model, self.mode, self.device, self.precision, self.threads, self.params, self.optimizer,
                self.host)

    @property
    def job(self) -> str:
        """The title without the host: the same comparison on every host."""
        t = (f"{self.model} · {self.mode}" + (f" ({self.optimizer})" if self.optimizer else "")
             + f" · {self.device} · {self.precision} · {self.threads} thread{'s' if self.threads != 1 else ''}")
        return t + (f" · {self.params}" if self.params != "{}" else "")

    @property
    def title(self) -> str:
        return self.job + (f" · on {self.host}" if self.host else "")

    @property
    def slug(self) -> str:
        """A short file-name-safe id: the readable parts, plus a hash of the params, optimizer options and host."""
        base = f"{self.model}-{self.mode}-{self.optimizer.split(' ')[0]}-{self.device}-{self.precision}-t{self.threads}"
        base += f"-on-{self.host}" if self.host else ""
        extra = self.params if self.params != "{}" else ""
        extra += self.optimizer.partition(" ")[2]
        extra += f" on {self.host}" if self.host else ""  # two hostnames that read alike keep their own files
        tag = f"-{hashlib.sha1(extra.encode()).hexdigest()[:6]}" if extra else ""
        return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") + tag

    def batches(self) -> list[int]:
        return sorted({c.batch_size for c in self.configs})

    def at(self, batch: int) -> list[Config]:
        return [c for c in self.configs if c.batch_size == batch]


@dataclass
class Section:
    title: str
    table: pd.DataFrame
    notes: list[str]
    plots: list[tuple[str, str]]  # (caption, path relative to the run directory)


@dataclass(frozen=True)
class GlanceCell:
    """One framework on one job of the at-a-glance heat map."""

    speed: float | None  # throughput / the fastest framework's on the job (1.0: fastest); None: not measured
    marks: tuple[str, ...] = ()  # "tied", "only one", "contended", "1 process"
    status: str = "ok"  # or why there is no number: "failed", "timed out", "skipped"


@dataclass(frozen=True)
class GlanceRow:
    job: str  # the comparison's title and the batch size
    cells: dict[str, GlanceCell]  # framework -> cell; a framework the job never planned has none


@dataclass(frozen=True)
class Glance:
    """The heat map at the top of the report: one row per job, one column per framework."""

    frameworks: tuple[str, ...]
    rows: tuple[GlanceRow, ...]


@dataclass
class Report:
    title: str
    intro: list[str]
    frameworks: pd.DataFrame
    verdict_method: str
    verdict: pd.DataFrame
    answers: list[tuple[str, str]]
    settings: pd.DataFrame
    method: str
    sections: list[Section]
    startup_plot: tuple[str, str] | None
    warnings: list[tuple[str, list[str]]]
    not_measured: list[tuple[str, pd.DataFrame]]
    notes: list[str]
    groups: list[Group]  # what the plots are drawn from
    glance: Glance | None = None  # the heat map drawn at glance_plot, the first thing each format shows
    glance_plot: tuple[str, str] | None = None  # (caption, path relative to the run directory)
    roofline: Section | None = None  # the host's measured peaks (peak.json), where the run has them
    keras: Section | None = None  # Keras on each backend against each other and native (xfbench.harness.report.backends)
    convergence: Section | None = None  # runs to a target accuracy (xfbench.harness.report.convergence)
    by_host: Section | None = None  # a framework on several hosts side by side (xfbench.harness.report.hosts)
