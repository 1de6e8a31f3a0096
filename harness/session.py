"""A benchmark session as plain functions: plan a suite, execute it, resume it. No click, no rich.

The command line (`xfbench.harness.cli`) parses options, calls these with keyword arguments and displays what
they return; tests call them directly. Every input problem is an `InputError` (an `XfbenchError`).
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .adapter import AdapterInfo, discover, why_broken
from .case import MODES, Case
from .errors import XfbenchError
from .measure.host import host_info
from .measure.forkserver import ForkServers
from .measure.runner import Progress, RunSummary, pending_cases, plan_for_meta, run_cases, run_peaks
from .models import MODELS, build_spec
from .plan.suites import Overrides, Suite, expand, load_suite
from .records import RunMeta
from .report.write import write_reports
from .results import ResultsError, RunDir
from .validate.cache import validation_lookup


class InputError(XfbenchError):
    """A command-line input that cannot be honoured; the message says what to do instead."""


def split_csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def plan(suite_name: str, *, frameworks: str | None = None, models: str | None = None, modes: str | None = None,
         batch_sizes: str | None = None, device: str | None = None, threads: int | None = None,
         registry: dict[str, AdapterInfo] | None = None) -> tuple[Suite, list[Case]]:
    """Load a suite and narrow it by the command-line options, in run order; InputError or SuiteError."""
    registry = registry if registry is not None else discover()
    for option, value in (("--frameworks", frameworks), ("--models", models), ("--modes", modes),
                          ("--batch-sizes", batch_sizes)):
        if value is not None and not split_csv(value):
            raise InputError(f"{option} {value!r} names nothing; give a comma-separated list, or leave it out")
    fws = split_csv(frameworks)
    for fw in fws or []:
        if fw not in registry:
            raise InputError(why_broken(fw) or f"unknown framework {fw!r}; registered: {', '.join(registry)} "
                             "(see `bench list frameworks`)")
    ms = split_csv(models)
    for m in ms or []:
        if m not in MODELS:
            raise InputError(f"unknown model {m!r}; choose one of {', '.join(MODELS)}")
    md = split_csv(modes)
    for m in md or []:
        if m not in MODES:
            raise InputError(f"unknown mode {m!r}; choose train or infer")
    bs = None
    if batch_sizes:
        try:
            bs = [int(b) for b in split_csv(batch_sizes) or []]
        except ValueError:
            raise InputError(f"--batch-sizes takes positive integers like 16,64; got {batch_sizes!r}") from None
        if any(b <= 0 for b in bs):
            raise InputError(f"--batch-sizes must be positive integers; got {batch_sizes!r}")
    if threads is not None and threads < 0:
        raise InputError("--threads must be >= 0 (0 means every available CPU)")
    suite = load_suite(suite_name, registry)
    over = Overrides(frameworks=fws, models=ms, modes=md, batch_sizes=bs, device=device, threads=threads)
    cases = expand(suite, registry, over)
    for c in cases:
        build_spec(c.model, **c.model_params)
    if not cases:
        raise InputError(f"suite {suite_name!r} with these options has no case to run; widen the filters")
    return suite, cases


@dataclass
class Outcome:
    """What a run or resume left: its directory, the cases' summary, and whether the reports were written."""

    run: RunDir
    summary: RunSummary
    reports_error: str | None = None  # the reports (or run.json's end) could not be written; records are safe
    reports_interrupted: bool = False  # Ctrl-C while the reports were written
    roofline_notes: list[str] = field(default_factory=list)  # peaks that could not be measured, one line each


def _finish(run: RunDir, meta: RunMeta, cases: list[Case], registry: dict[str, AdapterInfo],
            progress: Progress | None, validation: Any, cluster: Any = None) -> Outcome:
    """Run `cases` into `run`, then record the end in run.json and write the reports.

    `cluster`: a connected `ray_executor.Cluster` (bench run --executor ray), closed here; None: this machine.
    The run's lock is held until the reports are written, so a `--resume` cannot rewrite them at the
    same time. A disk error or Ctrl-C after the last record loses nothing: the outcome says so.
    """
    owns_lock = run.lock()
    servers = ForkServers(run.path / "logs")
    try:
        if cluster is not None:
            from .measure.ray_executor import run_cases_ray
            try:
                summary = run_cases_ray(cases, run, registry, cluster, progress, validation,
                                        accelerator_type=(meta.executor or {}).get("gpu_type"))
            finally:
                cluster.close()
        else:
            summary = run_cases(cases, run, registry, progress, validation=validation, servers=servers)
        outcome = Outcome(run, summary)
        try:
            if cluster is not None and meta.roofline and cases and not summary.interrupted:
                outcome.roofline_notes = ["roofline: not measured on a Ray cluster (peaks belong to each node); "
                                          "run `bench peak` on the nodes"]
            elif meta.roofline and cases and not summary.interrupted:
                # After the cases, with the last round's fork servers: each framework's practical peak.
                outcome.roofline_notes = run_peaks(cases, run, registry, servers)
            servers.close()
            run.write_meta(meta.replace(finished=time.time(), interrupted=summary.interrupted))
            write_reports(run.path)
        except KeyboardInterrupt:
            outcome.reports_interrupted = True
        except (OSError, ValueError) as e:
            outcome.reports_error = f"{type(e).__name__}: {e}"
        return outcome
    finally:
        servers.close()
        if owns_lock:
            run.unlock()


@dataclass(frozen=True)
class Executor:
    """Where the cases run: "local" (this machine) or "ray" (`address` None: a Ray instance started here)."""

    kind: str = "local"
    address: str | None = None
    gpu_type: str | None = None  # Ray's accelerator_type for CUDA cases, e.g. "H100"

    def to_json(self) -> dict[str, Any] | None:
        if self.kind == "local":
            return None
        return {"kind": self.kind, "address": self.address, **({"gpu_type": self.gpu_type} if self.gpu_type else {})}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> "Executor":
        return cls() if not d else cls(d["kind"], d.get("address"), d.get("gpu_type"))


def connect(executor: Executor, cases: list[Case], registry: dict[str, AdapterInfo],
            warn: Callable[[str], None] | None = None) -> Any:
    """The connected, checked Ray cluster for `executor`, or None for this machine; nothing is measured yet.

    A version that differs across nodes is an InputError; a node lacking a planned adapter is a warning.
    """
    if executor.kind == "local":
        return None
    from .measure.ray_executor import ClusterError, check_nodes, connect as ray_connect
    try:
        cluster = ray_connect(executor.address)
        try:
            for line in check_nodes(cluster, cases, registry):
                if warn:
                    warn(line)
        except BaseException:
            cluster.close()
            raise
    except ClusterError as e:
        raise InputError(str(e)) from None
    return cluster


def execute(suite: Suite, cases: list[Case], *, out: Path, registry: dict[str, AdapterInfo], argv: list[str],
            progress: Progress | None = None, gate: dict[str, dict] | None = None,
            started: Callable[[RunDir], None] | None = None, executor: Executor = Executor(),
            warn: Callable[[str], None] | None = None) -> Outcome:
    """Create the run directory, run every case, write run.json and the reports.

    `started(run)` is called once the run directory exists, before the first case: the command line's
    warnings go there, so that a run that cannot start says only why. With a Ray `executor`, the cluster
    is reached and its nodes checked before the run directory exists (`warn` gets their lines).
    """
    cluster = connect(executor, cases, registry, warn)
    try:
        run = RunDir.create(out, suite.name)
    except OSError as e:
        if cluster is not None:
            cluster.close()
        raise InputError(f"cannot create a run directory under {out}: {e.strerror}; choose a writable --out") from None
    meta = RunMeta(suite=suite.name, suite_path=str(suite.path), description=suite.description,
                   command=tuple(argv), started=time.time(), planned_cases=len(cases),
                   plan=plan_for_meta(cases), host=host_info(), roofline=suite.roofline,
                   executor=executor.to_json())
    try:
        run.write_meta(meta)
    except OSError as e:  # nothing half-written: a run directory without run.json is no run
        shutil.rmtree(run.path, ignore_errors=True)
        if cluster is not None:
            cluster.close()
        raise InputError(f"cannot write {run.path / 'run.json'}: {e.strerror}; choose a writable --out") from None
    if started:
        started(run)
    return _finish(run, meta, cases, registry, progress, validation_lookup(registry, gate), cluster)


@dataclass
class Resumption:
    """An interrupted run reopened for `--resume`: locked, repaired, its pending cases listed."""

    run: RunDir
    meta: RunMeta
    cases: list[Case]  # the planned cases without a record, in run order
    planned: int
    repaired: str | None  # what `RunDir.repair` did, if anything


def reopen(run_path: Path, argv: list[str], retry_failed: bool = False) -> Resumption:
    """Lock an interrupted run, cut a torn last line, and list what is left to run.

    `retry_failed`: also run again the cases whose record failed or timed out (a full disk, a killed
    worker); their new record replaces the failed one when the run is read.
    """
    try:
        run = RunDir.open(run_path)
        run.lock()  # refuses a run that another bench process is still writing
        repaired = run.repair()
        cases, planned = pending_cases(run, retry_failed=retry_failed)
        meta = run.meta()
        meta = meta.replace(resumed=(*meta.resumed, {"started": time.time(), "command": list(argv)}),
                            finished=None, interrupted=False)
        run.write_meta(meta)
    except (ResultsError, OSError) as e:
        raise InputError(f"cannot resume {run_path}: {e}") from None
    return Resumption(run, meta, cases, planned, repaired)


def resume(state: Resumption, registry: dict[str, AdapterInfo], progress: Progress | None = None,
           address: str | None = None, warn: Callable[[str], None] | None = None) -> Outcome:
    """Run the pending cases of a reopened run where it ran (its executor; `address` replaces a cluster's);
    keep its records; write run.json and the reports."""
    try:
        executor = Executor.from_json(state.meta.executor)
        if address is not None:
            if executor.kind == "local":
                raise InputError(f"--address names a Ray cluster, but {state.run.path} ran on this machine; "
                                 "drop --address")
            executor = dataclasses.replace(executor, address=address)
            state.meta = state.meta.replace(executor=executor.to_json())
            state.run.write_meta(state.meta)
        cluster = connect(executor, state.cases, registry, warn)
        return _finish(state.run, state.meta, state.cases, registry, progress, validation_lookup(registry), cluster)
    finally:
        state.run.unlock()
