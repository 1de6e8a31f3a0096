"""Which other processes use the GPU a case runs on? (docs/spec.md section 5.4)

NVML's process lists (`nvidia-ml-py`, imported as `pynvml` only when asked; `pip install xfbench[gpu]`):
compute and graphics processes of the device, with the GPU memory each holds. A process that shares the
GPU with a timed case competes for its SMs, memory bandwidth and copy engines, and a throughput measured
beside it is not the framework's alone: the worker records the same kind of `contended: ...` warning as
for busy CPUs, and `bench run` says so once before a GPU run.

Which device: CUDA numbers the devices that `CUDA_VISIBLE_DEVICES` lists (NVML indices or `GPU-` UUIDs,
a UUID prefix being enough; CUDA stops at the first entry it cannot read), or, when it is unset, all of
them in NVML's order (PCI bus order: CUDA's own default order can differ on a machine with mixed GPUs).
Every case runs on CUDA device 0 (torch `cuda`, TensorFlow `/GPU:0`, JAX's first GPU).

Pids: NVML reports the host's pids. Inside a container with a pid namespace of its own they are not this
process's numbers, so a process holding a context cannot find itself among them: with `holding_context`,
a lone entry is then taken for this process, and with several the list keeps them all (one is this one).
"""
from __future__ import annotations

import os
from typing import Any, Iterable

GpuProcess = tuple[int, str, "int | None"]  # (pid, process name, GPU memory used in bytes or None: unknown)
NAMES_SHOWN = 5


def _larger(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _visible_handles(nvml: Any) -> list[Any]:
    """NVML handles in CUDA's device order under CUDA_VISIBLE_DEVICES (NVML's order when it is unset)."""
    count = nvml.nvmlDeviceGetCount()
    every = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return every
    uuids = None
    handles = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.isdigit() and int(entry) < count:
            handles.append(every[int(entry)])
            continue
        if entry.startswith("GPU-"):
            uuids = uuids if uuids is not None else [_text(nvml.nvmlDeviceGetUUID(h)) for h in every]
            matches = [h for h, u in zip(every, uuids) if u.startswith(entry)]
            if len(matches) == 1:
                handles.append(matches[0])
                continue
        elif entry.startswith("MIG-"):
            handles.append(nvml.nvmlDeviceGetHandleByUUID(entry))
            continue
        break  # as CUDA does: the devices before the first entry it cannot read, none after
    return handles


def _name(nvml: Any, pid: int) -> str:
    try:
        return os.path.basename(_text(nvml.nvmlSystemGetProcessName(pid))) or "?"
    except Exception:  # NVMLError (no such process here, no permission); fall back to /proc
        try:
            with open(f"/proc/{pid}/comm") as f:
                return f.read().strip() or "?"
        except OSError:
            return "?"


def _ours(pid: int) -> bool:
    """This process, or one it started (a compiler's helper): the worker runs in a session of its own."""
    if pid == os.getpid():
        return True
    try:
        return os.getsid(pid) == os.getsid(0) and os.getsid(0) == os.getpid()
    except OSError:  # not visible here (another pid namespace) or gone
        return False


def other_gpu_processes(device_index: int | None = None, holding_context: bool = False) -> list[GpuProcess] | None:
    """Processes other than this one (and those it started) on CUDA device `device_index` (None: every visible
    device), with the GPU memory each uses, from NVML; None where NVML cannot say (not installed, no driver,
    no such device, an NVML error). Never raises.

    `holding_context`: this process holds a CUDA context on the device (a worker after set-up), which tells
    whether NVML's pids are this pid namespace's (see the module's docstring).
    """
    try:
        import pynvml as nvml
    except Exception:  # not installed (or a broken install): no answer, never a failed case
        return None
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError: no driver, no library
        return None
    try:
        handles = _visible_handles(nvml)
        if device_index is not None:
            handles = handles[device_index:device_index + 1] if 0 <= device_index else []
        if not handles:
            return None
        found: dict[int, int | None] = {}
        for h in handles:
            listed = list(nvml.nvmlDeviceGetComputeRunningProcesses(h))  # without these there is no answer
            try:
                listed += nvml.nvmlDeviceGetGraphicsRunningProcesses(h)
            except nvml.NVMLError:  # e.g. not supported on a data-centre GPU: compute processes are what count
                pass
            for p in listed:  # a process in both lists (compute and graphics) once, its larger figure
                found[p.pid] = _larger(found.get(p.pid), getattr(p, "usedGpuMemory", None))
        seen_self = os.getpid() in found
        others = [(pid, _name(nvml, pid), used) for pid, used in sorted(found.items()) if not _ours(pid)]
        if holding_context and not seen_self and len(others) == 1:
            return []  # the host's pid for this very process: nothing else is there
        return others
    except Exception:  # NVMLError or a driver that answers oddly: no answer
        return None
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def _size(used: int | None) -> str:
    if used is None:
        return ""
    return f" ({used / 2**30:.1f} GiB)" if used >= 2**30 else f" ({used / 2**20:.0f} MiB)"


def _listing(processes: Iterable[GpuProcess]) -> str:
    merged: dict[int, GpuProcess] = {}
    for pid, name, used in processes:  # the same process seen before and after the samples: once, its peak
        merged[pid] = (pid, name, _larger(merged[pid][2], used) if pid in merged else used)
    shown = [f"{pid} {name}{_size(used)}" for pid, name, used in sorted(merged.values())]
    more = len(shown) - NAMES_SHOWN
    return ", ".join(shown[:NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


def gpu_busy_warning(processes: Iterable[GpuProcess] | None) -> str | None:
    """The record's warning when other processes were on the case's GPU; None when none were (or NVML
    could not say). `processes` may hold one process twice (lists taken before and after the samples)."""
    processes = list(processes or [])
    if not processes:
        return None
    return f"contended: other processes on the GPU: {_listing(processes)}"


def busy_gpu_line(processes: Iterable[GpuProcess] | None) -> str | None:
    """`bench run`'s line before a GPU run that others already use; None on a GPU of its own."""
    processes = list(processes or [])
    if not processes:
        return None
    return (f"busy GPU: other processes use the GPU the cases will run on: {_listing(processes)}; "
            "expect contended cases: a GPU of its own gives steadier numbers")
