"""Worker processes: how the parent starts, bounds and kills them, and what a worker does first.

Both kinds of worker (a measured case, `xfbench.harness.measure.worker`; a validation job,
`xfbench.harness.validate.worker`) start through `run_isolated`: a session of its own, output to a log file,
a timeout that kills the whole process group, and death with the parent (`die_with_parent`).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from ..errors import XfbenchError

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


def module_command(module: str, *args: str | os.PathLike, python: str | None = None) -> list[str]:
    """The command line that runs `python -m module args...`, the cwd not on sys.path.

    `python`: the interpreter, this one by default; a framework environment's for its adapters
    (`xfbench.harness.envs.interpreter_for`). Environments are made with Python >= 3.10 like bench's own.

    `python -m` puts the current directory first on sys.path, so a `numpy.py` or `harness/` where
    `bench` was started would run in the worker. `-P` (Python 3.11+) leaves it out; on 3.10 runpy runs
    the module after dropping that first entry, which is what `-P` does. Arguments must be absolute
    paths: `run_isolated` starts workers in another directory.
    """
    if python in (None, sys.executable) and sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", module, *map(str, args)]
    # -c works on every version: another interpreter's may be 3.10, which lacks -P
    run = f"import runpy, sys; del sys.path[0]; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    return [python or sys.executable, "-c", run, *map(str, args)]


class MemoryLimitExceeded(XfbenchError):
    """The worker's process group held more memory than its limit, and was killed (the runner records it)."""

    def __init__(self, used_bytes: int, limit_bytes: int):
        super().__init__(f"the worker's processes reached {used_bytes / 2**30:.3g} GiB, over their memory limit of "
                         f"{limit_bytes / 2**30:.3g} GiB; raise memory_limit_gib or lower the batch size")
        self.used_bytes, self.limit_bytes = used_bytes, limit_bytes


# How often the parent reads the worker's resident memory. Each read walks the worker's process tree
# (a few small /proc reads, ~0.1 ms), so the parent takes a negligible share of the cores being timed.
MEMORY_POLL_S = 0.25


def run_isolated(cmd: list[str], log_file: Path, timeout_s: float, rss_limit_bytes: int | None = None) -> int | None:
    """Run `cmd` in a session of its own, stdout and stderr into `log_file`; its exit code, None on timeout.

    It runs in the log file's folder, so nothing in the user's current directory is in its way. With
    `rss_limit_bytes`, the resident memory of its whole process group is read every MEMORY_POLL_S; over
    the limit the group is killed and MemoryLimitExceeded raised. On a timeout, Ctrl-C or SIGTERM the
    whole process group is SIGKILLed, so a framework's child processes cannot outlive the worker.
    OSError (the command cannot start) propagates.
    """
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=worker_env(), start_new_session=True, cwd=Path(log_file).absolute().parent)
        try:
            if rss_limit_bytes is None:
                return proc.wait(timeout=timeout_s)
            return _wait_within(proc, timeout_s, rss_limit_bytes)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return None
        except BaseException:  # Ctrl-C, SIGTERM, the memory limit: take the worker down with us
            _kill(proc)
            raise


def _wait_within(proc: subprocess.Popen, timeout_s: float, rss_limit_bytes: int) -> int:
    """`proc.wait(timeout_s)`, checking its process group's memory every MEMORY_POLL_S on the way."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return proc.wait(timeout=max(0.0, min(MEMORY_POLL_S, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise
        used = group_memory_bytes(proc.pid, over=rss_limit_bytes)
        if used is not None and used > rss_limit_bytes:
            raise MemoryLimitExceeded(used, rss_limit_bytes)


def group_memory_bytes(pgid: int, over: int | None = None) -> int | None:
    """Resident memory of every process in group `pgid`, summed; None where /proc cannot say (not Linux).

    RSS from /proc/PID/stat is cheap enough to read every poll, but counts pages a forked child shares
    with its parent once per process; so a sum above `over` is measured again as PSS (shared pages
    split between their users; RSS where the kernel has no smaps_rollup), and that figure decides.
    """
    members = _group_rss(pgid)
    if members is None:
        return None
    used = sum(members.values())
    if over is None or used <= over:
        return used
    pss = {pid: _pss_bytes(pid) for pid in members}
    return sum(rss if pss[pid] is None else pss[pid] for pid, rss in members.items())


def _group_rss(pgid: int) -> dict[int, int] | None:
    """pid -> resident bytes of each live process of the worker `pgid`; None without /proc.

    The worker's process tree (`/proc/PID/task/TID/children`: a few reads) where the kernel offers it,
    else a scan of every process for those in group `pgid` (hundreds of reads).
    """
    tree = _tree_rss(pgid)
    if tree is not None:
        return tree
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    page, out = os.sysconf("SC_PAGE_SIZE"), {}
    for name in entries:
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 on; the name may hold spaces
            if int(fields[2]) == pgid:  # field 5, the process group; field 24, resident pages
                out[int(name)] = int(fields[21]) * page
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not readable
            continue
    return out


def _tree_rss(root: int) -> dict[int, int] | None:
    """pid -> resident bytes of `root` and its descendants; None where /proc has no `children` files."""
    page, out, todo = os.sysconf("SC_PAGE_SIZE"), {}, [root]
    while todo:
        pid = todo.pop()
        try:
            out[pid] = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            for tid in os.listdir(f"/proc/{pid}/task"):
                todo += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except FileNotFoundError:
            if pid == root and not Path(f"/proc/{root}/task").is_dir():
                return {}  # the worker is gone: nothing is resident
            if pid == root:
                return None  # no `children` files (CONFIG_PROC_CHILDREN off): scan instead
        except (OSError, ValueError, IndexError):
            continue  # a process or thread that ended meanwhile
    return out


def _pss_bytes(pid: int) -> int | None:
    """Proportional resident memory of `pid` from /proc/PID/smaps_rollup (Linux 4.14+); None if unknown."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


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

def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies, even by SIGKILL; exit if it already has.

    The parent is the bench process named in PARENT_ENV, or `parent` (a fork server's pid, for the
    process it forked). The parent runs each worker in a session of its own, so without this a killed
    run leaves its worker running (and a core busy) until it finishes by itself.
    """
    if parent is None:
        named = os.environ.get(PARENT_ENV, "").partition(":")[0]
        if not named.isdigit():
            return
        parent = int(named)
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the prctl took hold
        os._exit(1)


def pin_threads(threads: int, pin: bool = True) -> list[int]:
    """Cap the thread pools at `threads` and pin this process to that many CPUs, before any framework import.

    `pin=False` (a GPU case) keeps every allowed CPU: the host threads that feed the device, compile and
    copy must not fight over `threads` cores, while the CPU-side thread pools stay capped.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if threads > len(allowed):
        raise ValueError(f"threads={threads} but only {len(allowed)} CPUs are available to this process")
    cpus = allowed[:threads] if pin else allowed
    os.sched_setaffinity(0, cpus)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    return cpus
