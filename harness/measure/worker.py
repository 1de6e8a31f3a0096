"""The worker: one process per case, one framework imported, one JSON record written.

Usage (by the runner, not by people): python -m xfbench.harness.measure.worker CASE.json RECORD.json
A case with process_start "fork" runs `run_case` in a process forked from xfbench.harness.measure.forkserver
instead, which did `prepare` once for every case of its framework in the round.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

# These import the standard library only: the thread caps must be in place before numpy, scipy or
# a framework loads its thread pools, so everything else is imported after `pin_threads`.
from ..case import Case
from ..envs import describe as environment, split
from ..records import Metrics, Record
from ..results import write_json_atomic
from .contention import ContentionMeter, contention_warnings
from .gpu_contention import gpu_busy_warning, other_gpu_processes
from .gpu_metrics import GpuSampler
from .process import die_with_parent, pin_threads

# Stability warnings (docs/spec.md section 5.7).
CV_WARN = 0.05
SPREAD_WARN = 1.5
CPU_SHARE_LOW, CPU_SHARE_HIGH = 0.5, 1.15  # CPU time / wall time relative to the thread cap


# Environment variables that can change a result, recorded in every manifest (unset: null).
MANIFEST_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS", "TF_XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE",
                "XLA_PYTHON_CLIENT_MEM_FRACTION", "TF_ENABLE_ONEDNN_OPTS", "TF_GPU_ALLOCATOR", "NVIDIA_TF32_OVERRIDE",
                "PYTORCH_CUDA_ALLOC_CONF", "CUDA_VISIBLE_DEVICES")

_OOM_TYPES = ("MemoryError", "OutOfMemoryError", "ResourceExhaustedError")
_OOM_WORDS = ("out of memory", "resource_exhausted", "oom when allocating", "failed to allocate")


def is_out_of_memory(e: BaseException) -> bool:
    """Whether an exception from any framework reports running out of (host or device) memory."""
    names = {t.__name__ for t in type(e).__mro__}
    return bool(names & set(_OOM_TYPES)) or any(w in str(e).lower() for w in _OOM_WORDS)


class CpuMeter:
    """Wraps the timing kernel to add up process CPU time and wall time of the timed calls."""

    def __init__(self, time_steps: Callable[[int], float]):
        self.inner, self.cpu_s, self.wall_s, self.calls = time_steps, 0.0, 0.0, 0

    def __call__(self, k: int) -> float:
        c0, w0 = time.process_time(), time.perf_counter()
        t = self.inner(k)
        self.calls += 1
        if self.calls > 1:  # the first step (compilation) is often single-threaded: leave it out
            self.cpu_s += time.process_time() - c0
            self.wall_s += time.perf_counter() - w0
        return t

    @property
    def share(self) -> float | None:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else None


class PeakMemory:
    """Peak host and device memory, set-up (import to the end of warm-up) and steady-state step apart.

    Host: the kernel's `VmHWM`, reset at the end of the warm-up; device: the adapter's allocator peak,
    reset there too where the framework can (else the step figure is absent, never a set-up number).
    """

    def __init__(self, adapter: Any):
        self.adapter = adapter
        self.setup_host = self.setup_device = None
        self.host_reset = self.device_reset = False

    def end_setup(self) -> None:
        from .host import peak_rss_bytes, reset_peak_rss
        self.setup_host = peak_rss_bytes()
        self.setup_device = self.adapter.peak_device_memory_bytes()
        self.host_reset = self.setup_host is not None and reset_peak_rss()
        self.device_reset = self.setup_device is not None and self.adapter.reset_peak_device_memory()

    def finish(self) -> dict[str, Any]:
        from .host import peak_rss_bytes
        device_now = self.adapter.peak_device_memory_bytes()
        step_host = peak_rss_bytes() if self.host_reset else None
        # ru_maxrss reads the same high-water mark that the reset lowered: the whole run's is the larger of both.
        overall_host = max(v for v in (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, self.setup_host,
                                       step_host) if v is not None)
        step_device = device_now if self.device_reset else None
        return {"peak_host_rss_bytes": overall_host,
                "peak_device_memory_bytes": max(v for v in (device_now, self.setup_device) if v is not None)
                if device_now is not None else None,
                "setup_peak_host_rss_bytes": self.setup_host, "step_peak_host_rss_bytes": step_host,
                "setup_peak_device_memory_bytes": self.setup_device, "step_peak_device_memory_bytes": step_device}


def metrics_for(case: Case, spec, m, cpu_share: float | None,
                kept_share: float | None = None) -> tuple[dict[str, Any], list[str]]:
    """Throughput, statistics, FLOP/s and stability warnings from one measurement."""
    from ..analysis.stats import summarize
    s = summarize(m.samples_s)
    flops_per_sample = spec.train_flops() if case.mode == "train" else spec.forward_flops()
    out: dict[str, Any] = {
        **_throughput(case, s),
        "first_step_s": m.first_step_s,
        "warmup_steps": m.warmup_steps,
        "steps_per_sample": m.steps_per_sample,
        "stop_reason": m.stop_reason,
        "measure_s": m.measure_s,
        "flops_per_sample": flops_per_sample,
        "achieved_flops_per_s": flops_per_sample * case.batch_size / s.median,
        "cpu_utilisation": cpu_share,
    }
    if spec.seq_len:
        out["tokens_per_s"] = out["samples_per_s"] * spec.seq_len
        out["tokens_per_s_ci"] = [v * spec.seq_len for v in out["samples_per_s_ci"]]
    warnings = contention_warnings(m, kept_share, case.measure.contention_share, case.measure.min_samples)
    if m.contended_s:
        out["contended_samples"] = len(m.contended_s)
        out["contended_share_max"] = max(m.contended_shares)
    if kept_share is not None:
        out["contended_share_kept"] = kept_share
    if s.cv > CV_WARN:
        warnings.append(f"unstable: coefficient of variation {s.cv:.1%} > {CV_WARN:.0%}")
    if s.n < case.measure.min_samples:
        warnings.append(f"too few samples: {s.n} < {case.measure.min_samples}")
    if s.min > 0 and s.max / s.min > SPREAD_WARN:
        warnings.append(f"unstable: slowest sample {s.max / s.min:.2f}x the fastest")
    if case.device == "cpu" and cpu_share is not None:
        if cpu_share > case.threads * CPU_SHARE_HIGH:
            warnings.append(f"thread cap exceeded: {cpu_share:.2f} CPUs busy, cap {case.threads}")
        elif cpu_share < case.threads * CPU_SHARE_LOW:
            warnings.append(f"cores idle: {cpu_share:.2f} CPUs busy of {case.threads}")
    return out, warnings


@dataclass(frozen=True)
class Prepared:
    """A process made ready for a framework: pinned, its environment recorded, the adapter class imported."""

    cpus: list[int]
    env: dict[str, str | None]  # MANIFEST_ENV as the user and the thread caps set it, before the adapter's defaults
    info: Any  # xfbench.harness.adapter.AdapterInfo (imported after the thread caps, as numpy is)
    adapter_cls: type
    import_s: float


def prepare(framework: str, threads: int, device: str) -> Prepared:
    """Pin this process and cap its thread pools, then import the framework's adapter (in that order)."""
    cpus = pin_threads(threads, pin=device == "cpu")
    env = {k: os.environ.get(k) for k in MANIFEST_ENV}
    from ..adapter import discover
    info = discover()[split(framework)[0]]  # in an environment (xfbench.harness.envs) its own name
    t0 = time.perf_counter()
    adapter_cls = info.load()  # the framework is imported here, after the thread caps
    adapter_cls.preload()
    return Prepared(cpus, env, info, adapter_cls, time.perf_counter() - t0)


def adapter_package(info: Any) -> dict[str, str | None]:
    """The manifest's `adapter_package`: who registers the adapter, at what version, and its source (12 hex)."""
    p = info.provenance()
    return {**p, "source_sha256": p["source_sha256"] and p["source_sha256"][:12]}


def run_case(case: Case, prepared: Prepared | None = None) -> Record:
    """Measure one case in this process; return its record (status ok, skipped or failed).

    `prepared`: this process was forked from a server that already ran `prepare` (process_start "fork").
    """
    started = time.time()
    gpu = None
    try:
        prep = prepared or prepare(case.framework, case.threads, case.device)
        cpus, info = prep.cpus, prep.info
        from ..models import build_spec
        from ..optimizers import build_optimizer
        from ..weights import init_weights, make_inputs
        from .timing import measure, step_timer

        t0 = time.perf_counter()
        spec = build_spec(case.model, **case.model_params)
        optimizer = build_optimizer(case.optimizer, **case.optimizer_params) if case.mode != "infer" else None
        adapter = prep.adapter_cls(device=case.device, precision=case.precision, threads=case.threads,
                              seed=case.seed, **info.options)
        adapter.build(spec, optimizer)
        if adapter.parameter_count() != spec.parameter_count():
            raise RuntimeError(f"{case.framework} builds {adapter.parameter_count():,} trainable parameters, "
                               f"the spec says {spec.parameter_count():,}")
        if case.mode == "converge":
            return _converge(case, prep, adapter, spec, started, t0, forked=prepared is not None)
        adapter.load_weights(init_weights(spec, case.seed))
        batch = adapter.put_batch(*make_inputs(spec, case.batch_size, case.seed))
        adapter.sync()
        setup_s = time.perf_counter() - t0

        step = adapter.train_step if case.mode == "train" else adapter.infer_step
        timer = step_timer(lambda: step(batch), adapter.sync)
        # On CPU, other processes' use of the pinned CPUs is checked around every sample (xfbench.harness.measure.contention).
        contention = ContentionMeter(timer, cpus) if case.device == "cpu" else None
        meter = CpuMeter(contention or timer)
        memory = PeakMemory(adapter)
        gpu_seen: list = []  # other processes on the GPU as the timed samples start and end (gpu_contention)
        # GPU utilisation and the worker's GPU memory from NVML over the timed samples (gpu_metrics)
        gpu = GpuSampler() if case.device == "cuda" else None

        def end_setup() -> None:
            memory.end_setup()
            if case.device == "cuda":
                gpu_seen.extend(other_gpu_processes(0, holding_context=True) or [])

        m = measure(meter, case.measure, steady=end_setup, sampling=gpu.start if gpu else None,
                    contention=contention.sample_share if contention else None)
        if gpu:
            gpu.stop()
        if case.device == "cuda":
            gpu_seen.extend(other_gpu_processes(0, holding_context=True) or [])
        metrics, warnings = metrics_for(case, spec, m, meter.share, contention.kept_share(
            case.measure.contention_share, m.contended_kept) if contention else None)
        gpu_warning = gpu_busy_warning(gpu_seen)
        if gpu_warning:
            warnings.insert(0, gpu_warning)
        metrics.update(setup_s=setup_s, import_s=prep.import_s, parameters=spec.parameter_count(), **memory.finish(),
                       **(gpu.finish() if gpu else {}))
        manifest = _manifest(case, prep, adapter, forked=prepared is not None)
        if gpu and gpu.device:
            manifest["gpu_device"] = gpu.device  # which GPU, driver and CUDA driver, as NVML names them
        return Record.of(case, "ok", None, started, time.time(), metrics=Metrics.from_json(metrics),
                         samples_s=tuple(m.samples_s), warnings=tuple(warnings), manifest=manifest)
    except Exception as e:
        from ..adapter import Unsupported
        if isinstance(e, Unsupported):
            return Record.of(case, "skipped", str(e), started, time.time())
        # The parent keeps the last 20 lines of stderr in the record: the innermost frames, where the error is,
        # must fit there with the "Traceback" line, whatever the harness's own frames (timing meters) above them.
        traceback.print_exc(limit=-5)
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        if is_out_of_memory(e):  # e.g. a GPU OOM at this batch size; a smaller one may still fit
            reason = f"out of memory ({case.device}, batch size {case.batch_size}): {reason}"
        return Record.of(case, "failed", reason, started, time.time())
    finally:
        if gpu:
            gpu.close()


def _manifest(case: Case, prep: Prepared, adapter: Any, forked: bool) -> dict[str, Any]:
    """The record's fairness manifest (docs/spec.md 5.8): where the worker ran, how, and the adapter's settings."""
    cpus, info = prep.cpus, prep.info
    return {
        "framework": info.framework, "adapter": info.name, "affinity": cpus,
        "cpu_pinning": f"pinned to {len(cpus)} CPUs" if case.device == "cpu" else
                       f"not pinned: a {case.device} case keeps all {len(cpus)} CPUs for the host threads",
        "env": prep.env,
        "environment": environment(),  # which interpreter: bench's own ("main") or a framework environment's
        # "fork": forked from a server that imported the framework once for the round (import_s is its import)
        "process_start": "fork" if forked else "exec",
        **adapter.settings(),
        "adapter_package": adapter_package(info),  # after settings(): the harness's word, not the adapter's
    }


def _throughput(case: Case, s: Any) -> dict[str, Any]:
    """samples/s, its 95% CI and the step-time summary, from the summary `s` of the per-step times."""
    return {"samples_per_s": case.batch_size / s.median,
            "samples_per_s_ci": [case.batch_size / s.ci_high, case.batch_size / s.ci_low], "step_s": s.as_dict()}


def _converge(case: Case, prep: Prepared, adapter: Any, spec: Any, started: float, t0: float,
              forked: bool) -> Record:
    """A run to accuracy (mode "converge", xfbench.harness.measure.convergence): its record.

    Process p of the configuration is seed `case.seed + p`: canonical weights and batch order of that seed, the
    same in every framework, so the processes are the seeds a time to target's CI is taken over.
    """
    from ..analysis.stats import summarize
    from ..data import check_fits, load_dataset
    from ..weights import init_weights
    from .convergence import train_to_target

    conv, seed = case.convergence, case.seed + case.process
    data = load_dataset(conv.dataset, **conv.dataset_options)
    check_fits(data, spec)
    adapter.load_weights(init_weights(spec, seed))
    adapter.sync()
    setup_s = time.perf_counter() - t0
    memory = PeakMemory(adapter)
    memory.end_setup()
    run = train_to_target(adapter, data, batch_size=case.batch_size, seed=seed, target=conv.target,
                          eval_every=conv.eval_every, max_steps=conv.max_steps, workers=conv.workers)
    samples = run.interval_step_s()
    metrics = {**_throughput(case, summarize(samples)), "first_step_s": run.first_step_s, "setup_s": setup_s,
               "import_s": prep.import_s, "parameters": spec.parameter_count(), "measure_s": run.train_s,
               **memory.finish()}
    warnings = [] if run.steps_to_target else [
        f"did not reach test accuracy {conv.target:g} in {conv.max_steps} steps (best "
        f"{max(p.test_accuracy for p in run.curve):.3f}); no time to target"]
    manifest = {**_manifest(case, prep, adapter, forked=forked), "input_pipeline": run.pipeline,
                "dataset": run.dataset, "data_order_sha256": run.order_sha256}
    return Record.of(case, "ok", None, started, time.time(), metrics=Metrics.from_json(metrics),
                     samples_s=tuple(samples), warnings=tuple(warnings), manifest=manifest,
                     convergence=run.to_json())


def main(argv: list[str]) -> int:
    die_with_parent()
    if len(argv) != 2:
        print("usage: python -m xfbench.harness.measure.worker CASE.json RECORD.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        case = Case.from_dict(json.load(f))
    write_json_atomic(argv[1], run_case(case).to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
