"""The parent: runs each case in a fresh worker process, validates its record, keeps going on failure."""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ..adapter import AdapterInfo
from ..case import Case
from ..envs import interpreter_for
from ..records import PlannedCase, Record, ResultsError
from ..results import RunDir
from .forkserver import ForkServers, ServerGone
from .host import available_memory_bytes, host_info
from .process import (MemoryLimitExceeded, exit_reason, module_command, reap_orphans, run_isolated,
                      signals_interrupt, tail)

# case -> (its `validated` entry or None, why it must not be timed or None); see xfbench.harness.validate.cache
Validation = Callable[[Case], "tuple[dict[str, Any] | None, str | None]"]


class Progress(Protocol):
    def started(self, index: int, total: int, case: Case) -> None: ...
    def finished(self, index: int, total: int, case: Case, record: Record) -> None: ...


class _Quiet:
    def started(self, index: int, total: int, case: Case) -> None:
        pass

    def finished(self, index: int, total: int, case: Case, record: Record) -> None:
        pass


class _Guarded:
    """Progress whose display can never stop a run: its first error silences it and is kept for the end."""

    def __init__(self, inner: Progress):
        self.inner, self.error = inner, None

    def _call(self, name: str, *args: Any) -> None:
        if self.error is None:
            try:
                getattr(self.inner, name)(*args)
            except Exception as e:  # a display bug must not lose a measurement
                self.error = f"{type(e).__name__}: {e}"

    def started(self, index: int, total: int, case: Case) -> None:
        self._call("started", index, total, case)

    def finished(self, index: int, total: int, case: Case, record: Record) -> None:
        self._call("finished", index, total, case, record)


GIB = 2**30


def memory_limit_bytes(case: Case, available: int | None) -> int | None:
    """The most resident memory the case's worker processes may hold together; None: no limit but the kernel's.

    A suite's `memory_limit_gib` is taken as it is. Otherwise 90% of the memory `available` when the case
    starts, less 1 GiB: the parent, the OS and the page cache keep room, and the machine never swaps
    itself to a halt before the worker is stopped; with under 2.5 GiB available, half of it.
    """
    if case.memory_limit_gib is not None:
        return int(case.memory_limit_gib * GIB)
    if available is None:
        return None
    return int(max(0.9 * available - GIB, available / 2))


def run_worker(case: Case, workdir: Path, logdir: Path,
               command: Callable[[Path, Path], list[str]] | None = None,
               servers: ForkServers | None = None) -> Record:
    """Run `case` in a process of its own and return its validated record, or a failed/timeout record.

    A fresh interpreter, or with `servers` and process_start "fork", a process forked from the fork
    server of its framework and round (xfbench.harness.measure.forkserver); if that server cannot start or
    stops answering, a fresh interpreter after all.
    """
    workdir, logdir = workdir.absolute(), logdir.absolute()  # the worker runs in another directory
    workdir.mkdir(parents=True, exist_ok=True)
    logdir.mkdir(parents=True, exist_ok=True)
    case_file, rec_file = workdir / f"{case.case_id}.case.json", workdir / f"{case.case_id}.record.json"
    log_file = logdir / f"{case.case_id}.log"
    case_file.write_text(json.dumps(case.to_dict()))
    rec_file.unlink(missing_ok=True)
    cmd = (command or (lambda c, r: module_command("xfbench.harness.measure.worker", c, r,
                                                    python=interpreter_for(case.framework)[0])))(case_file, rec_file)
    started = time.time()
    limit = memory_limit_bytes(case, available_memory_bytes())
    try:
        server = servers.get(case) if servers is not None and case.process_start == "fork" else None
        code = None
        if server is not None:
            try:
                code = server.run(case_file, rec_file, log_file, case.case_timeout_s, limit)
            except ServerGone as e:
                servers.drop(case, str(e))
                server = None
        if server is None:
            code = run_isolated(cmd, log_file, case.case_timeout_s, limit)
    except OSError as e:
        case_file.unlink(missing_ok=True)
        return Record.of(case, "failed", f"cannot start the worker: {e}", started, time.time())
    except MemoryLimitExceeded as e:
        case_file.unlink(missing_ok=True)
        return Record.of(case, "failed", f"out of memory: limit {e.limit_bytes / GIB:.3g} GiB (the worker's "
                         f"processes reached {e.used_bytes / GIB:.3g} GiB)", started, time.time(),
                         stderr_tail=tail(log_file))
    if code is None:
        case_file.unlink(missing_ok=True)
        return Record.of(case, "timeout", f"worker passed case_timeout_s={case.case_timeout_s:g} s",
                         started, time.time(), stderr_tail=tail(log_file))
    try:
        rec = Record.from_json(json.loads(rec_file.read_text()))
        if rec.case_id != case.case_id:
            raise ResultsError(f"the record is for case {rec.case_id}, expected {case.case_id}")
    except FileNotFoundError:
        return Record.of(case, "failed", exit_reason(code) if code else "worker wrote no record",
                         started, time.time(), stderr_tail=tail(log_file))
    except (ValueError, OSError) as e:
        return Record.of(case, "failed", f"invalid worker record: {e}", started, time.time(),
                         stderr_tail=tail(log_file))
    finally:
        case_file.unlink(missing_ok=True)
        rec_file.unlink(missing_ok=True)
    return rec.replace(stderr_tail=tail(log_file)) if rec.status == "failed" else rec


def plan_for_meta(cases: list[Case]) -> tuple[PlannedCase, ...]:
    """The planned cases in run order, as stored in run.json so that `--resume` needs no suite file."""
    return tuple(PlannedCase(c.case_id, c) for c in cases)


def pending_cases(run: RunDir, retry_failed: bool = False) -> tuple[list[Case], int]:
    """The planned cases of `run` that have no record yet (or only a failed one, with `retry_failed`), in
    run order, and how many were planned."""
    plan = run.meta().plan
    if plan is None:
        raise ResultsError(f"{run.path / 'run.json'} lists no planned cases (written before --resume "
                           "existed, or not by bench run); start a new run instead")
    done = {r.case_id for r in run.records() if not (retry_failed and r.status in ("failed", "timeout"))}
    return [p.case for p in plan if p.case_id not in done and p.case.case_id not in done], len(plan)


@dataclass
class RunSummary:
    records: list[Record]
    interrupted: bool = False
    orphans_killed: list[int] = field(default_factory=list)
    display_error: str | None = None  # the progress display failed (and went quiet); the run went on


def run_cases(cases: list[Case], run: RunDir, frameworks: dict[str, AdapterInfo],
              progress: Progress | None = None, worker: Callable[..., Record] | None = None,
              validation: Validation | None = None, servers: ForkServers | None = None) -> RunSummary:
    """Run every case in order, appending each record to the run as soon as it exists.

    `worker(case, workdir, logdir)` measures one case; by default `run_worker`, with the fork servers
    `servers` (the caller's to close), or the run's own (closed at the end).
    `validation(case)` gives the record's `validated` entry and, for a case that must not be timed
    (its `bench run --forward-check` failed), why: that case becomes a failed record, untimed.
    Holds the run's lock throughout; Ctrl-C, SIGTERM or SIGHUP stop it after killing the running worker.
    """
    progress = _Guarded(progress or _Quiet())
    summary = RunSummary(records=[], orphans_killed=reap_orphans())
    missing = {name: info.missing() for name, info in frameworks.items()}
    total = len(cases)
    own_servers = servers is None
    servers = servers or ForkServers(run.path / "logs")
    servers.plan(cases)
    worker = worker or (lambda case, workdir, logdir: run_worker(case, workdir, logdir, servers=servers))
    host = host_info()  # every record names the machine that measured it (on a Ray cluster, its node)
    owns_lock = run.lock()
    try:
        with signals_interrupt():
            for i, case in enumerate(cases, 1):
                progress.started(i, total, case)
                info = frameworks.get(case.framework)
                validated, refused = validation(case) if validation else (None, None)
                now = time.time()
                if info is None:
                    rec = Record.of(case, "skipped", f"no adapter named {case.framework!r} is registered", now, now)
                elif missing[case.framework]:
                    rec = Record.of(case, "skipped", f"{', '.join(missing[case.framework])} not installed; install "
                                    f"it (e.g. pip install 'xfbench[{info.framework}]') to measure {case.framework}",
                                    now, now)
                elif refused:
                    rec = Record.of(case, "failed", refused, now, now)
                else:
                    rec = worker(case, run.path / "work", run.path / "logs")
                rec = rec.replace(host=host, **({"validated": validated} if validated else {}))
                run.append(rec)
                summary.records.append(rec)
                progress.finished(i, total, case, rec)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if own_servers:
            servers.close()
        summary.display_error = progress.error
        if owns_lock:
            run.unlock()
        try:
            (run.path / "work").rmdir()
        except OSError:
            pass
    return summary


def run_peaks(cases: list[Case], run: RunDir, frameworks: dict[str, AdapterInfo],
              servers: ForkServers | None = None, **sizes: int) -> list[str]:
    """Measure the roofline of every adapter in `cases` into the run's peak.json (docs/spec.md 5.10).

    Each adapter at the device and thread count most of its cases used, CUDA first where it has CUDA cases (a
    GPU host's quick run has as many CPU cases: its GPU peak is the one a GPU user asks for; peak.json holds
    one peak per adapter); forked from the fork server of
    its last such case where that case was forked (no second import of the framework), else in a fresh
    worker. Entries already in peak.json for other adapters are kept. Returns one line per adapter whose
    peak could not be measured. `sizes`: `n` and `nbytes` of measure_peaks (the tests' tiny ones).
    """
    from .peak import PEAK_FILE, fresh_worker, measure_peaks, read_peaks
    by_adapter: dict[str, list[Case]] = {}
    for c in cases:
        if c.framework in frameworks and not frameworks[c.framework].missing():
            by_adapter.setdefault(c.framework, []).append(c)
    peaks, notes = read_peaks(run.path)
    for name, cs in by_adapter.items():
        device, threads = max(Counter((c.device, c.threads) for c in cs).items(),
                              key=lambda kv: (kv[0][0] == "cuda", kv[1]))[0]
        last = [c for c in cs if (c.device, c.threads) == (device, threads)][-1]
        server = servers.get(last) if servers is not None and last.process_start == "fork" else None

        def launch(adapter: str, request: Path, result: Path, log: Path, timeout_s: float,
                   server=server, case=last) -> int | None:
            if server is not None:
                try:
                    return server.run(request, result, log, timeout_s, kind="peak")
                except ServerGone as e:
                    servers.drop(case, str(e))
            return fresh_worker(adapter, request, result, log, timeout_s)

        out = measure_peaks({name: frameworks[name]}, device=device, threads=threads, launch=launch, **sizes)
        peaks.update(out.peaks)
        notes += [f"roofline of {n}: {why}" for n, why in out.failed.items()]
    if peaks:
        from ..results import write_json_atomic
        write_json_atomic(run.path / PEAK_FILE, peaks)
    return notes
