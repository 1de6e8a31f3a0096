"""Host metadata for run.json: what machine, what software, which commit."""
from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from .. import __version__
from .gpu_metrics import driver_versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_memory_bytes() -> int | None:
    """Physical memory of this host, in bytes; None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def available_memory_bytes() -> int | None:
    """Memory a new process can use now without swapping (Linux `MemAvailable`), in bytes; None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory since it started or since `reset_peak_rss` (Linux `VmHWM`)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory to its current one; False where the OS cannot.

    Writing 5 to /proc/self/clear_refs resets `VmHWM` (Linux >= 4.0, no privileges needed for oneself).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _gpus() -> list[str]:
    """GPU names from nvidia-smi, without importing a framework; [] where there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


ASSUME_GPU_ENV = "XFBENCH_ASSUME_GPU"  # "1" or "0": say whether this host has an NVIDIA GPU instead of asking


def has_nvidia_gpu() -> bool:
    """Whether this host has an NVIDIA GPU: nvidia-smi lists one (asked once per process), no framework imported.

    `XFBENCH_ASSUME_GPU=1` or `=0` answers instead (tests; a host whose nvidia-smi is broken); other values
    are ignored. Suite entries with `when = "gpu"` apply only where this is true (`xfbench.harness.plan.suites`).
    """
    forced = os.environ.get(ASSUME_GPU_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return bool(_listed_gpus())


@functools.lru_cache(maxsize=1)
def _listed_gpus() -> tuple[str, ...]:
    return tuple(_gpus())


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def host_info() -> dict:
    gpus = _gpus()
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "memory_bytes": host_memory_bytes(),
        "gpus": gpus,
        # "gpu_driver", "cuda_driver" from NVML, where a GPU is listed and NVML answers (none on a CPU host)
        **(driver_versions() if gpus else {}),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "harness_version": __version__,
        "git_commit": git_commit(),
    }
