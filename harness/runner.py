"""The parent: runs each case in a fresh worker process, validates its record, keeps going on failure."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from .adapter import AdapterInfo
from .case import Case
from .results import SCHEMA_VERSION, ResultsError, RunDir, migrate, validate_record

STDERR_TAIL_LINES = 20
STDERR_TAIL_CHARS = 4000  # a worker flooding one endless line must not bloat the record
# Set in every worker's environment (inherited by its children): "<parent pid>:<parent start time>".
# A process carrying it whose parent is gone was left behind by a killed run; `reap_orphans` ends it.
PARENT_ENV = "XFBENCH_PARENT"
_SIGNAL_HINTS = {
    "SIGKILL": " (out of memory? the kernel's OOM killer sends SIGKILL)",
    "SIGSEGV": " (a crash in native code)",
    "SIGBUS": " (a crash in native code)",
}


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
    return "\n".join(text.splitlines()[-lines:])[-STDERR_TAIL_CHARS:]


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
            return f"worker killed by {name}{_SIGNAL_HINTS.get(name, '')}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code} without a record"


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, not errors
    env["PYTHONUNBUFFERED"] = "1"
    env[PARENT_ENV] = f"{os.getpid()}:{_start_time(os.getpid())}"
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
        # The worker also dies with this process if it is SIGKILLed (harness.worker sets PDEATHSIG).
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=worker_env(), start_new_session=True)
        except OSError as e:
            case_file.unlink(missing_ok=True)
            return _record(case, "failed", f"cannot start the worker: {e}", started)
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


def _start_time(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22; the name may hold spaces
    except (OSError, ValueError, IndexError):
        return None


def reap_orphans() -> list[int]:
    """SIGKILL every process left behind by a bench parent that is gone; return their pids.

    A worker dies with its parent, but a child the worker's framework started may not; it still
    carries PARENT_ENV in its environment, and pid plus start time tell whether that parent lives.
    """
    proc, me, killed = Path("/proc"), os.getpid(), []
    if not proc.is_dir():
        return killed
    marker = re.compile(rb"(?:^|\0)" + PARENT_ENV.encode() + rb"=(\d+):(\d+)(?:\0|$)")
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            found = marker.search((entry / "environ").read_bytes())
        except OSError:  # gone, or another user's process
            continue
        if not found or _start_time(int(found[1])) == int(found[2]):
            continue
        with contextlib.suppress(OSError):
            os.kill(int(entry.name), signal.SIGKILL)
            killed.append(int(entry.name))
    return killed


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal or ssh session) stop the run as Ctrl-C does."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    saved = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            saved[sig] = signal.signal(sig, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def plan_for_meta(cases: list[Case]) -> list[dict[str, Any]]:
    """The planned cases in run order, as stored in run.json so that `--resume` needs no suite file."""
    return [c.to_dict() for c in cases]


def pending_cases(run: RunDir) -> tuple[list[Case], int]:
    """The planned cases of `run` that have no record yet, in run order, and how many were planned."""
    meta = run.meta()
    plan = meta.get("plan")
    if not isinstance(plan, list):
        raise ResultsError(f"{run.path / 'run.json'} lists no planned cases (written before --resume "
                           "existed, or not by bench run); start a new run instead")
    cases = []
    for i, d in enumerate(plan, 1):
        try:
            cases.append(Case.from_dict(d))
        except (TypeError, ValueError, AttributeError) as e:
            raise ResultsError(f"{run.path / 'run.json'}: planned case #{i} is not a case ({e})") from None
    done = {r["case_id"] for r in run.records()}
    return [c for c in cases if c.case_id not in done], len(cases)


@dataclass
class RunSummary:
    records: list[dict[str, Any]]
    interrupted: bool = False
    orphans_killed: list[int] = field(default_factory=list)


def run_cases(cases: list[Case], run: RunDir, frameworks: dict[str, AdapterInfo],
              progress: Progress | None = None, worker: Callable[..., dict[str, Any]] = run_worker,
              validation: Callable[[Case], dict[str, Any] | None] | None = None) -> RunSummary:
    """Run every case in order, appending each record to the run as soon as it exists.

    `validation(case)` gives the record's `validated` entry (harness.validate); a failed entry of the
    `bench run --validate` forward check ("check": "fp32 forward") makes the case a failed record, untimed.
    Holds the run's lock throughout; Ctrl-C, SIGTERM or SIGHUP stop it after killing the running worker.
    """
    progress = progress or _Quiet()
    summary = RunSummary(records=[], orphans_killed=reap_orphans())
    missing = {name: info.missing() for name, info in frameworks.items()}
    total = len(cases)
    owns_lock = run.lock()
    try:
        with _signals_interrupt():
            for i, case in enumerate(cases, 1):
                progress.started(i, total, case)
                info = frameworks.get(case.framework)
                validated = validation(case) if validation else None
                if info is None:
                    rec = _record(case, "skipped", f"no adapter named {case.framework!r} is registered",
                                  time.time())
                elif missing[case.framework]:
                    rec = _record(case, "skipped", f"{', '.join(missing[case.framework])} not installed; install "
                                  f"it (e.g. pip install 'xfbench[{info.framework}]') to measure {case.framework}",
                                  time.time())
                elif validated and validated.get("check") == "fp32 forward" and validated["status"] == "failed":
                    rec = _record(case, "failed", f"not timed: validation failed, {validated.get('failed_check')}",
                                  time.time())
                else:
                    rec = worker(case, run.path / "work", run.path / "logs")
                if validated:
                    rec["validated"] = validated
                run.append(rec)
                summary.records.append(rec)
                progress.finished(i, total, case, rec)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if owns_lock:
            run.unlock()
        try:
            (run.path / "work").rmdir()
        except OSError:
            pass
    return summary
