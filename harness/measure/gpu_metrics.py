"""How busy the GPU was and how much of its memory the worker held, from NVML (docs/spec.md sections 5.7, 7.3).

`nvidia-ml-py` (imported as `pynvml` only when asked; `pip install xfbench[gpu]`) reads the driver, not a
framework, so every framework's case is seen the same way. Without it, or where NVML fails (no driver, a
device it cannot query), every answer here is None or nothing and the case runs as before.

Utilisation: the driver keeps a buffer of `NVML_GPU_UTILIZATION_SAMPLES`, each the percentage of its sample
period (1/6 s to 1 s, by GPU) in which a kernel ran. `GpuSampler.start` notes the newest one's timestamp as the
timed samples start, `stop` reads every later one as they end: two calls outside the timed samples, and nothing
running in between. Where the GPU keeps no such buffer, a daemon thread polls `nvmlDeviceGetUtilizationRates`
every POLL_S seconds instead. The buffer is finite: of timed samples longer than it covers, the first are
lost and the figures describe the later part.

Memory: NVML's figure for this process (`usedGpuMemory`) is all it holds on the device, CUDA context, library
handles and the allocator's cache included, where the framework's own peak (`peak_device_memory_bytes`) counts
only the tensors it allocated. NVML reports the host's pids; in a container with a pid namespace of its own a
lone process on the device is taken for this one, as `gpu_contention` does.

The device is CUDA device 0 (`gpu_contention._visible_handles`: `CUDA_VISIBLE_DEVICES` by index or UUID).
"""
from __future__ import annotations

import os
import threading
from typing import Any

from .gpu_contention import _text, _visible_handles

POLL_S = 0.1  # the fallback's polling interval, seconds
# pynvml's NVML_VALUE_TYPE_* -> the field of c_nvmlValue_t that holds such a value
_VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
_NOT_FOUND = 6  # NVML_ERROR_NOT_FOUND: no sample newer than the timestamp asked for


def _nvml() -> Any | None:
    """pynvml, initialised; None where it is not installed or NVML cannot start. Pair with `_shutdown`."""
    try:
        import pynvml as nvml
    except Exception:  # not installed (or a broken install)
        return None
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError: no driver, no library
        return None
    return nvml


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass


def _device(nvml: Any, index: int) -> Any | None:
    try:
        handles = _visible_handles(nvml)
    except Exception:  # NVMLError
        return None
    return handles[index] if 0 <= index < len(handles) else None


def cuda_driver_text(version: int) -> str:
    """13000 -> "13.0": NVML's CUDA driver version as nvidia-smi prints it."""
    return f"{version // 1000}.{version % 1000 // 10}"


def _drivers(nvml: Any) -> dict[str, str]:
    out = {}
    try:
        out["gpu_driver"] = _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:
        pass
    try:
        out["cuda_driver"] = cuda_driver_text(int(nvml.nvmlSystemGetCudaDriverVersion()))
    except Exception:
        pass
    return out


def driver_versions() -> dict[str, str]:
    """{"gpu_driver": "580.65.06", "cuda_driver": "13.0"} of this host (host metadata); {} without NVML."""
    nvml = _nvml()
    if nvml is None:
        return {}
    try:
        return _drivers(nvml)
    finally:
        _shutdown(nvml)


def _identity(nvml: Any, handle: Any) -> dict[str, Any] | None:
    try:
        name = _text(nvml.nvmlDeviceGetName(handle))
    except Exception:  # NVMLError: no answer for this device
        return None
    out: dict[str, Any] = {"name": name}
    try:
        out["memory_bytes"] = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
    except Exception:
        pass
    drivers = _drivers(nvml)
    out.update({k: drivers[f] for k, f in (("driver", "gpu_driver"), ("cuda_driver", "cuda_driver")) if f in drivers})
    return out


def own_used_memory(nvml: Any, handle: Any) -> int | None:
    """This process's GPU memory on `handle` in bytes, as NVML counts it; None where NVML cannot say which is ours."""
    try:
        listed = list(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
    except Exception:  # NVMLError
        return None
    mine = [p for p in listed if p.pid == os.getpid()]
    if not mine and len(listed) == 1:  # the host's pid for this very process (a container: see the docstring)
        mine = listed
    used = [p.usedGpuMemory for p in mine if getattr(p, "usedGpuMemory", None) is not None]
    return int(max(used)) if used else None


def _share(value_type: int, sample: Any) -> float:
    return float(getattr(sample.sampleValue, _VALUE_FIELDS.get(value_type, "uiVal"))) / 100.0


class GpuSampler:
    """GPU utilisation and this process's GPU memory over a case's timed samples, from NVML.

    `start` as the timed samples begin, `stop` as they end, `finish` at the end of the case for the metrics
    (docs/spec.md 7.3) and `device` for the manifest; `close` ends everything (idempotent), also after a failed
    case. Without NVML every call does nothing, `finish` gives {} and `device` is None.
    """

    def __init__(self, device_index: int = 0, poll_s: float = POLL_S):
        self.device_index, self.poll_s = device_index, poll_s
        self.nvml: Any = None
        self.handle: Any = None
        self.device: dict[str, Any] | None = None  # the manifest's `gpu_device` (_identity), read at start
        self.last_seen: int | None = None  # the driver buffer's newest timestamp at start (GetSamples); None: polling
        self.shares: list[float] = []
        self.used: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.nvml = _nvml()
        if self.nvml is None:
            return
        self.handle = _device(self.nvml, self.device_index)
        if self.handle is None:
            self.close()
            return
        self.device = _identity(self.nvml, self.handle)
        self._read_memory()
        try:
            self.last_seen = max((int(s.timeStamp) for s in self._driver_samples(0)[1]), default=0)
        except Exception as e:
            if getattr(e, "value", None) == getattr(self.nvml, "NVML_ERROR_NOT_FOUND", _NOT_FOUND):
                self.last_seen = 0  # an empty buffer: every sample it gets from now on is the timed samples'
            else:  # not supported on this GPU (or this NVML): poll instead
                self._thread = threading.Thread(target=self._poll, name="xfbench-gpu-utilisation", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        if self.nvml is None:
            return
        self._end_polling()
        if self.last_seen is not None:
            try:
                value_type, samples = self._driver_samples(self.last_seen)
                self.shares += [_share(value_type, s) for s in samples if s.timeStamp > self.last_seen]
            except Exception:  # NOT_FOUND: no sample in the timed samples (shorter than one sample period)
                pass
            self.last_seen = None
        self._read_memory()

    def finish(self) -> dict[str, Any]:
        """The metrics measured: `gpu_utilisation` (mean), `_min`, `_max`, `_samples`, `nvml_used_memory_bytes`."""
        self._read_memory()  # the end of the case
        self.close()
        out: dict[str, Any] = {}
        if self.shares:
            out.update(gpu_utilisation=sum(self.shares) / len(self.shares), gpu_utilisation_min=min(self.shares),
                       gpu_utilisation_max=max(self.shares), gpu_utilisation_samples=len(self.shares))
        if self.used:
            out["nvml_used_memory_bytes"] = max(self.used)
        return out

    def close(self) -> None:
        self._end_polling()
        if self.nvml is not None:
            _shutdown(self.nvml)
        self.nvml = self.handle = None

    def _driver_samples(self, since: int) -> tuple[int, list[Any]]:
        value_type, samples = self.nvml.nvmlDeviceGetSamples(self.handle, self.nvml.NVML_GPU_UTILIZATION_SAMPLES, since)
        return value_type, list(samples)

    def _end_polling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.poll_s + 1.0)
            self._thread = None

    def _read_memory(self) -> None:
        if self.nvml is not None and self.handle is not None:
            used = own_used_memory(self.nvml, self.handle)
            if used is not None:
                self.used.append(used)

    def _poll(self) -> None:
        """The fallback: the driver's utilisation over its last sample period, every `poll_s` seconds."""
        nvml, handle = self.nvml, self.handle
        while not self._stop.wait(self.poll_s):
            try:
                self.shares.append(float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu) / 100.0)
            except Exception:  # NVMLError: not supported either; the case has no utilisation figure
                return
