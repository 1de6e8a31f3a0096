"""The parent: runs each case in a fresh worker process, validates its record, keeps going on failure."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from .adapter import AdapterInfo
from .case import Case
from .results import SCHEMA_VERSION, ResultsError, RunDir, migrate, validate_record

STDERR_TAIL_LINES = 20


class Progress(Protocol):
    def started(self, index: int, total: int, case: Case) -> None: ...
    def finished(self, index: int, total: int, case: Case, record: dict[str, Any]) -> None: ...


class _Quiet:
    def started(self, index: int, total: int, case: Case) -> None:
        pass

    def finished(self, index: int, total: int, case: Case, record: dict[str, Any]) -> None:
        pass


def _record(case: Case, status: str, reason: str, started: float, **extra: Any) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "case_id": case.case_id, "case": case.to_dict(), "status": status,
            "reason": reason, "metrics": {}, "samples_s": [], "warnings": [], "manifest": {},
            "started": started, "finished": time.time(), **extra}


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code} without a record"


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, not errors
    env["PYTHONUNBUFFERED"] = "1"
    # The worker must import this very harness, also when it runs from a source checkout.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def run_worker(case: Case, workdir: Path, logdir: Path,
               command: Callable[[Path, Path], list[str]] | None = None) -> dict[str, Any]:
    """Run `case` in a fresh process and return its validated record, or a failed/timeout record."""
    workdir.mkdir(parents=True, exist_ok=True)
    logdir.mkdir(parents=True, exist_ok=True)
    case_file, rec_file = workdir / f"{case.case_id}.case.json", workdir / f"{case.case_id}.record.json"
    log_file = logdir / f"{case.case_id}.log"
    case_file.write_text(json.dumps(case.to_dict()))
    rec_file.unlink(missing_ok=True)
    cmd = (command or (lambda c, r: [sys.executable, "-m", "harness.worker", str(c), str(r)]))(case_file, rec_file)
    started = time.time()
    with open(log_file, "wb") as log:
        # A session of its own, so a timeout or Ctrl-C can kill the worker and all its children.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=worker_env(), start_new_session=True)
        try:
            code = proc.wait(timeout=case.case_timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return _record(case, "timeout", f"worker passed case_timeout_s={case.case_timeout_s:g} s",
                           started, stderr_tail=_tail(log_file))
        except BaseException:  # Ctrl-C, SIGTERM: take the worker down with us
            _kill(proc)
            raise
    try:
        rec = json.loads(rec_file.read_text())
        rec = validate_record(migrate(rec))
        if rec["case_id"] != case.case_id:
            raise ResultsError(f"the record is for case {rec['case_id']}, expected {case.case_id}")
    except FileNotFoundError:
        return _record(case, "failed", _exit_reason(code) if code else "worker wrote no record",
                       started, stderr_tail=_tail(log_file))
    except (ValueError, OSError) as e:
        return _record(case, "failed", f"invalid worker record: {e}", started, stderr_tail=_tail(log_file))
    finally:
        case_file.unlink(missing_ok=True)
        rec_file.unlink(missing_ok=True)
    if rec["status"] == "failed":
        rec["stderr_tail"] = _tail(log_file)
    return rec


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@dataclass
class RunSummary:
    records: list[dict[str, Any]]
    interrupted: bool = False


def run_cases(cases: list[Case], run: RunDir, frameworks: dict[str, AdapterInfo],
              progress: Progress | None = None, worker: Callable[..., dict[str, Any]] = run_worker) -> RunSummary:
    """Run every case in order, appending each record to the run as soon as it exists."""
    progress = progress or _Quiet()
    summary = RunSummary(records=[])
    missing = {name: info.missing() for name, info in frameworks.items()}
    total = len(cases)
    try:
        for i, case in enumerate(cases, 1):
            progress.started(i, total, case)
            info = frameworks.get(case.framework)
            if info is None:
                rec = _record(case, "skipped", f"no adapter named {case.framework!r} is registered", time.time())
            elif missing[case.framework]:
                rec = _record(case, "skipped", f"{', '.join(missing[case.framework])} not installed; install it "
                              f"(e.g. pip install 'xfbench[{info.framework}]') to measure {case.framework}",
                              time.time())
            else:
                rec = worker(case, run.path / "work", run.path / "logs")
            run.append(rec)
            summary.records.append(rec)
            progress.finished(i, total, case, rec)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        try:
            (run.path / "work").rmdir()
        except OSError:
            pass
    return summary
