"""Worker processes: how the parent starts, bounds and kills them, and what a worker does first.

Both kinds of worker (a measured case, `harness.measure.worker`; a validation job,
`harness.validate.worker`) start through `run_isolated`: a session of its own, output to a log file,
a timeout that kills the whole process group, and death with the parent (`die_with_parent`).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

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


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, not errors
    env["PYTHONUNBUFFERED"] = "1"
    env[PARENT_ENV] = f"{os.getpid()}:{_start_time(os.getpid())}"
    # The worker must import this very harness, also when it runs from a source checkout.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def module_command(module: str, *args: str | os.PathLike) -> list[str]:
    """The command line that runs `python -m module args...` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def run_isolated(cmd: list[str], log_file: Path, timeout_s: float) -> int | None:
    """Run `cmd` in a session of its own, stdout and stderr into `log_file`; its exit code, None on timeout.

    On a timeout, Ctrl-C or SIGTERM the whole process group is SIGKILLed, so a framework's child
    processes cannot outlive the worker. OSError (the command cannot start) propagates.
    """
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=worker_env(), start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return None
        except BaseException:  # Ctrl-C, SIGTERM: take the worker down with us
            _kill(proc)
            raise


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last `lines` lines of a log, at most STDERR_TAIL_CHARS characters."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])[-STDERR_TAIL_CHARS:]


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
            return f"worker killed by {name}{_SIGNAL_HINTS.get(name, '')}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code} without a record"


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
def signals_interrupt() -> Iterator[None]:
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


# ---- in the worker, first thing ----

def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the bench parent dies, even by SIGKILL; exit if it already has.

    The parent runs each worker in a session of its own, so without this a killed run leaves its
    worker running (and a core busy) until it finishes by itself.
    """
    parent = os.environ.get(PARENT_ENV, "").partition(":")[0]
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the parent died before the prctl took hold
        os._exit(1)


def pin_threads(threads: int) -> list[int]:
    """Pin this process to `threads` CPUs and cap the thread pools, before any framework import."""
    allowed = sorted(os.sched_getaffinity(0))
    if threads > len(allowed):
        raise ValueError(f"threads={threads} but only {len(allowed)} CPUs are available to this process")
    cpus = allowed[:threads]
    os.sched_setaffinity(0, cpus)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    return cpus
