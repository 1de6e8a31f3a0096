"""The roofline (issue 13): this host's practical peak with each framework, float32 GEMM and copy bandwidth.

A case's achieved GFLOP/s means little alone: 50 GFLOP/s is most of a 2-core CPU and a rounding error on a
GPU. So the peak is measured, never looked up: an n x n float32 matmul (2 n^3 FLOPs) and a copy of a large
array (read and write: 2 x nbytes), each with the call a framework expert would use (`Adapter.peak_gemm`,
`Adapter.peak_copy`), timed with a case's protocol (xfbench.harness.measure.timing: first call, warm-up,
calibration, samples of k calls and the adapter's full sync; median and bootstrap 95% CI) but shorter,
with the suite's threads and pinning.

One framework per process, as for cases: `bench peak` starts `python -m xfbench.harness.measure.peak REQUEST.json
RESULT.json` per adapter (`measure_peaks`); `run_peak` measures inside a process that is already pinned
and has imported the framework (a fork server). A run directory may keep the results as `peak.json`
(adapter name -> `run_peak`'s dict, docs/spec.md section 7.7), which the report reads.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

# Standard library only above and here: the thread caps must be in place before numpy loads (see `main`).
from ..case import MeasureConfig
from ..envs import interpreter_for, split
from ..results import write_json_atomic
from .process import die_with_parent, exit_reason, module_command, pin_threads, run_isolated, tail

PEAK_FILE = "peak.json"
DEFAULT_N = 2048  # the square GEMM size: large enough to reach a CPU's BLAS peak
DEFAULT_COPY_BYTES = 256 * 2**20  # well beyond any CPU's last-level cache and a GPU's L2
# Short: the peak runs before a suite, for every framework; a GEMM of n = 2048 takes ~0.17 s on 2 cores.
PEAK_MEASURE = MeasureConfig(warmup_steps=2, warmup_s=0.2, min_sample_s=0.1, min_samples=5, max_samples=100,
                             target_ci=0.02, max_time_s=1.0)
PEAK_TIMEOUT_S = 300.0  # one worker: import, both kernels; TensorFlow's import alone takes ~10 s on 2 cores
CV_WARN = 0.05  # as a case's (xfbench.harness.measure.worker)
REQUIRED = ("gemm_n", "gemm_gflops", "gemm_gflops_ci", "copy_bytes", "copy_gbs", "copy_gbs_ci", "device", "threads")


def peak_inputs(n: int, nbytes: int, seed: int = 0) -> tuple[Any, Any, Any]:
    """The GEMM's two n x n float32 operands (standard normal, seeded) and the copy's float32 source."""
    import numpy as np

    if n < 1 or nbytes < 4:
        raise ValueError(f"the GEMM needs n >= 1 and the copy at least 4 bytes; got n={n}, nbytes={nbytes}")
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    return a, b, np.arange(nbytes // 4, dtype=np.float32)  # distinct values: a copy check sees every element


def _time(kernel: Any, adapter: Any, cfg: MeasureConfig, cpus: list[int] | None,
          clock: Callable[[], int]) -> tuple[Any, Any]:
    """(Summary of seconds per call, Measurement) of one kernel, under the case protocol."""
    from ..analysis.stats import summarize
    from .contention import ContentionMeter
    from .timing import measure, step_timer

    timer = step_timer(kernel.run, adapter.sync, clock)
    meter = ContentionMeter(timer, cpus) if cpus else None
    m = measure(meter or timer, cfg, contention=(lambda: meter.last_share) if meter else None)
    return summarize(m.samples_s), m


def _rate(amount: float, s: Any) -> tuple[float, list[float]]:
    """amount per second, in 1e9 units, at the median and at both ends of the CI of the time per call."""
    return amount / s.median / 1e9, [amount / s.ci_high / 1e9, amount / s.ci_low / 1e9]


def _warnings(what: str, s: Any, m: Any) -> list[str]:
    from .contention import contention_warnings
    out = [f"{what}: {w}" for w in contention_warnings(m)]
    if s.cv > CV_WARN:
        out.append(f"{what}: unstable: coefficient of variation {s.cv:.1%} > {CV_WARN:.0%}")
    return out


def measure_peak(adapter: Any, n: int = DEFAULT_N, nbytes: int = DEFAULT_COPY_BYTES,
                 cfg: MeasureConfig = PEAK_MEASURE, *, cpus: list[int] | None = None,
                 clock: Callable[[], int] = time.perf_counter_ns) -> dict[str, Any]:
    """Time the adapter's GEMM of n x n and its copy of nbytes (float32); GFLOP/s and GB/s with 95% CIs.

    `cpus`: the CPUs this process is pinned to; given, samples that other processes contended are left
    out and measured again, as a case's are. The GEMM goes first and is dropped before the copy's
    buffers exist, so at most one kernel's memory is held.
    """
    a, b, x = peak_inputs(n, nbytes)
    started = time.perf_counter()
    gemm = adapter.peak_gemm(a, b)
    del a, b
    gemm_s, gemm_m = _time(gemm, adapter, cfg, cpus, clock)
    gemm_what = gemm.what
    del gemm
    copy = adapter.peak_copy(x)
    del x
    copy_s, copy_m = _time(copy, adapter, cfg, cpus, clock)
    flops, moved = 2.0 * n ** 3, 2.0 * (nbytes // 4 * 4)  # multiply-adds count 2, as the models' FLOPs do
    gflops, gflops_ci = _rate(flops, gemm_s)
    gbs, gbs_ci = _rate(moved, copy_s)
    return {
        "device": adapter.device, "threads": adapter.threads, "precision": "fp32",
        "gemm_n": n, "gemm_flops": flops, "gemm_kernel": gemm_what, "gemm_s": gemm_s.median,
        "gemm_gflops": gflops, "gemm_gflops_ci": gflops_ci, "gemm_samples": gemm_s.n,
        "copy_bytes": nbytes // 4 * 4, "copy_kernel": copy.what, "copy_s": copy_s.median,
        "copy_gbs": gbs, "copy_gbs_ci": gbs_ci, "copy_samples": copy_s.n,
        "warnings": _warnings("GEMM", gemm_s, gemm_m) + _warnings("copy", copy_s, copy_m),
        "measure_s": time.perf_counter() - started,
    }


def run_peak(adapter_cls: type, name: str, device: str, threads: int, n: int = DEFAULT_N,
             nbytes: int = DEFAULT_COPY_BYTES, cfg: MeasureConfig = PEAK_MEASURE) -> dict[str, Any]:
    """The roofline of adapter `name` in this process, which is pinned already and has imported its framework.

    The adapter is built as a case's would be (the adapter's options from its registration, fp32, seed 0),
    so its constructor sets the same thread and precision knobs. Raises `xfbench.harness.adapter.Unsupported`
    where the adapter cannot serve the device or has no peak kernels.
    """
    from ..adapter import discover

    info = discover()[split(name)[0]]  # in a framework environment its own name
    adapter = adapter_cls(device=device, precision="fp32", threads=threads, seed=0, **info.options)
    cpus = sorted(os.sched_getaffinity(0))
    peak = measure_peak(adapter, n, nbytes, cfg, cpus=cpus if device == "cpu" else None)
    return {"adapter": name, "framework": info.framework, "versions": info.versions(), "affinity": cpus, **peak}


def check_peak(d: Any) -> dict[str, Any]:
    """`d` if it is one framework's peak as `run_peak` writes it; else ValueError saying what is wrong."""
    if not isinstance(d, dict):
        raise ValueError(f"expected an object, got {type(d).__name__}")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    for key in ("gemm_gflops", "gemm_gflops_ci", "copy_gbs", "copy_gbs_ci"):
        values = d[key] if key.endswith("_ci") else [d[key]]
        if not isinstance(values, list) or len(values) != (2 if key.endswith("_ci") else 1) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"{key} must be " + ("two positive numbers" if key.endswith("_ci") else "a positive number")
                             + f", not {d[key]!r}")
    return d


def read_peaks(run_path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The run directory's peak.json (adapter -> peak) and notes on what could not be read; ({}, []) without one."""
    path = Path(run_path) / PEAK_FILE
    if not path.exists():
        return {}, []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {}, [f"{PEAK_FILE} could not be read ({e}); the report shows no roofline"]
    if not isinstance(data, dict):
        return {}, [f"{PEAK_FILE} is not an object of adapter -> peak; the report shows no roofline"]
    peaks, notes = {}, []
    for name, d in sorted(data.items()):
        try:
            peaks[name] = check_peak(d)
        except ValueError as e:
            notes.append(f"{PEAK_FILE}: the peak of {name} is left out: {e}")
    return peaks, notes


# ---- the parent: one worker process per adapter (`bench peak`) ----

# (adapter, request file, result file, log file, timeout) -> the worker's exit code, None on timeout
Launch = Callable[[str, Path, Path, Path, float], "int | None"]


def fresh_worker(name: str, request: Path, result: Path, log: Path, timeout_s: float) -> int | None:
    """Run one peak request in a fresh interpreter (`python -m xfbench.harness.measure.peak`)."""
    return run_isolated(module_command(__name__, request, result, python=interpreter_for(name)[0]), log, timeout_s)


@dataclass
class PeakOutcome:
    peaks: dict[str, dict[str, Any]] = field(default_factory=dict)  # adapter -> run_peak's dict
    skipped: dict[str, str] = field(default_factory=dict)  # adapter -> why (not installed, no such device)
    failed: dict[str, str] = field(default_factory=dict)  # adapter -> why, naming its log file
    logs: Path | None = None  # the folder of the workers' logs; kept only when something failed


def measure_peaks(adapters: dict[str, Any], *, device: str, threads: int, n: int = DEFAULT_N,
                  nbytes: int = DEFAULT_COPY_BYTES, cfg: MeasureConfig = PEAK_MEASURE,
                  timeout_s: float = PEAK_TIMEOUT_S, started: Callable[[str], None] | None = None,
                  launch: Launch | None = None) -> PeakOutcome:
    """Each adapter's roofline (name -> AdapterInfo) in a worker process of its own, one after another.

    An adapter that is not installed or cannot serve `device` is skipped; a worker that crashes, hangs
    past `timeout_s` or writes no result is recorded as failed with its log, and the others still run.
    `launch` runs one worker (default: a fresh interpreter; `bench run` forks it from a fork server).
    """
    out = PeakOutcome()
    work = Path(tempfile.mkdtemp(prefix="xfbench-peak-"))
    for name, info in adapters.items():
        missing = info.missing()
        if missing:
            out.skipped[name] = f"not installed ({', '.join(missing)} missing)"
            continue
        if started is not None:
            started(name)
        request, result, log = (work / f"{name}.{ext}" for ext in ("request.json", "result.json", "log"))
        request.write_text(json.dumps({"adapter": name, "device": device, "threads": threads, "n": n,
                                       "nbytes": nbytes, "measure": asdict(cfg)}))
        code = (launch or fresh_worker)(name, request, result, log, timeout_s)
        _collect(out, name, code, result, log, timeout_s)
    if out.failed:
        out.logs = work
    else:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()
    return out


def _collect(out: PeakOutcome, name: str, code: int | None, result: Path, log: Path, timeout_s: float) -> None:
    """File one worker's outcome under peaks, skipped or failed."""
    try:
        reply = json.loads(result.read_text())
        if reply["status"] == "ok":
            out.peaks[name] = check_peak(reply["peak"])
        elif reply["status"] == "skipped":
            out.skipped[name] = str(reply["reason"])
        else:
            out.failed[name] = f"{reply['reason']} (log: {log})"
        return
    except FileNotFoundError:  # no result: the worker died or hung
        why = f"timed out after {timeout_s:g} s" if code is None else exit_reason(code)
    except (OSError, ValueError, KeyError, TypeError) as e:
        why = f"its result is unreadable ({type(e).__name__}: {e})"
    last = tail(log, 1).strip()
    out.failed[name] = why + (f": {last[:200]}" if last else "") + f" (log: {log})"


# ---- the worker ----

def answer(req: dict[str, Any], adapter_cls: type | None = None) -> dict[str, Any]:
    """The worker's reply to a peak request: {"status": "ok", "peak": ...}, or "skipped"/"failed" with a reason.

    `adapter_cls`: the process is pinned and has imported the adapter already (a fork server's child);
    else this pins it and imports the adapter.
    """
    try:
        if adapter_cls is None:
            pin_threads(req["threads"], pin=req["device"] == "cpu")  # before numpy or the framework loads
        from ..adapter import Unsupported, discover
        try:
            adapter_cls = adapter_cls or discover()[split(req["adapter"])[0]].load()
            peak = run_peak(adapter_cls, req["adapter"], req["device"], req["threads"], req["n"], req["nbytes"],
                            MeasureConfig(**req["measure"]))
            return {"status": "ok", "peak": peak}
        except Unsupported as e:
            return {"status": "skipped", "reason": str(e)}
    except Exception as e:
        traceback.print_exc(limit=-5)
        return {"status": "failed", "reason": f"{type(e).__name__}: {e}".splitlines()[0][:500]}


def main(argv: list[str]) -> int:
    """`python -m xfbench.harness.measure.peak REQUEST.json RESULT.json`: pin, import one framework, measure, write."""
    die_with_parent()
    if len(argv) != 2:
        print("usage: python -m xfbench.harness.measure.peak REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    write_json_atomic(argv[1], answer(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
