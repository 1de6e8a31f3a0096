"""Records -> a `Report` (xfbench.harness.report.model): tables of display strings, plot names, the verdict.

Nothing here measures or writes: `xfbench.harness.report.write` renders the Report in every format and draws
the plots. Every number is a pure function of cases.jsonl and run.json, and of peak.json where a run
has one (seeded bootstraps, UTC dates), so the same records always give byte-identical output.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import pandas as pd

from ..analysis.stats import median_floor, process_spread, summarize
from ..measure.peak import read_peaks
from ..models import MODELS
from ..records import Record
from ..results import RunDir
from . import plots
from .backends import keras_backends_section
from .convergence import convergence_section
from .glance import GLANCE_CAPTION, GLANCE_FILE, at_a_glance
from .hosts import by_host_section, describe, gpu_line, hardware, host_labels, hosts_seen
from .model import Config, Group, Report, Section, group_key
from .roofline import roofline_section, with_share_of_peak
from .verdict import CONTENDED_PREFIX, verdict, vs_fastest

# Fairness-manifest keys (docs/spec.md 5.8) compared between frameworks in one comparison: FAIRNESS below.
# Left out on purpose: `versions`, `framework`, `adapter`, `adapter_package` (shown with the versions), `compile`
# (each framework's own API call; the shared `compile_scope` says what it covers) and descriptive notes
# (`optimizer_impl`, `donation`, `mkldnn`, `onednn`, `backend`, `device`, `gpu`, `compiled`), which differ by
# nature. A key reported by only one framework (torch's `fp32_precision`, jax's `matmul_precision`) cannot
# differ and is not listed.
def _always(group: Group) -> bool:
    return True


def _on_gpu(group: Group) -> bool:
    return group.device != "cpu"


def _on_cpu(group: Group) -> bool:
    return group.device == "cpu"


def _sequences(group: Group) -> bool:
    model = MODELS.get(group.model)
    return model is not None and "seq_len" in model.defaults


def _images(group: Group) -> bool:
    return not _sequences(group)


def _training_on_cpu(group: Group) -> bool:  # a forward chain has no independent ops to run side by side
    return group.device == "cpu" and group.mode == "train"


# Manifest keys that can change a result (docs/spec.md section 5.8): key -> (why it matters, where it can).
# A key that differs where it cannot matter (GPU allocator settings of a CPU case) is not reported.
FAIRNESS: dict[str, tuple[str, Callable[[Group], bool]]] = {
    "fp32_math": ("TF32 rounds float32 matmul and convolution inputs to 10 mantissa bits, several times faster "
                  "on tensor cores", _on_gpu),
    "precision": ("the numeric precision the case asked for", _always),
    "dtype": ("the parameters' dtype", _always),
    "compute_dtype": ("the dtype the layers compute in", _always),
    "autocast": ("which ops mixed precision moves to bfloat16", _always),
    "x64": ("jax: 64-bit types enabled process-wide", _always),
    "compile_scope": ("how much of a step a compiler sees: fusion and no Python dispatch", _always),
    "recurrent_impl": ("the recurrent kernel (fused library call or a loop over time steps)", _sequences),
    "data_layout": ("channels-first or channels-last convolutions pick different kernels", _images),
    "threads": ("the cores one op may use", _on_cpu),
    "interop_threads": ("independent ops (a backward's weight and input gradients) run side by side",
                        _training_on_cpu),
    "affinity": ("the CPUs the worker may run on", _on_cpu),
    "env": ("environment variables the frameworks read at start", _always),
    "allocator_preallocation": ("how the device allocator grows", _on_gpu),
    "memory_growth": ("TensorFlow: GPU memory grown on demand or taken at start", _on_gpu),
    "fp32_precision": ("torch: the per-backend float32 math flags", _on_gpu),
    "matmul_precision": ("jax: the default matmul precision", _on_gpu),
    "tensor_float_32": ("TensorFlow: the TF32 switch", _on_gpu),
    "cudnn_benchmark": ("torch: cuDNN autotuning of convolution algorithms", _on_gpu),
    "cuda_graphs": ("torch: a step's kernels replayed as CUDA graphs, one launch instead of one per kernel", _on_gpu),
    "command_buffers": ("jax: XLA:GPU replays runs of a step's kernels as CUDA graphs (command buffers)", _on_gpu),
}
UNSTABLE_PREFIXES = ("unstable", "too few samples")
GPU_METHOD = (" On a GPU, with NVML: GPU busy is the share of the timed samples in which a kernel ran (the mean of "
              "the driver's utilisation samples, over processes); NVML memory is the worker's GPU memory as the driver "
              "counts it (CUDA context, library handles and the allocator's cache included, beside step memory's "
              "tensors), the largest reading of the timed samples and the case's end.")
CPU_CAP_PREFIXES = ("thread cap exceeded", "cores idle")


def _validated(rec: Record) -> str:
    # From the record's `validated` entry (xfbench.harness.validate.cache); absent: `bench validate` never ran.
    v = rec.validated
    if not v or not v.get("status"):
        return "not validated"
    if v["status"] == "unverified":  # agreed only with other adapters, which may share its mistake
        return f"agrees with {v.get('against') or 'no other adapter'}; not checked against the NumPy reference"
    scope = "; forward only" if v.get("scope") == "forward only" else ""
    return str(v["status"]) + (f" (vs {v['against']}{scope})" if v.get("against") else f" ({scope[2:]})" if scope
                               else "")


def _config(recs: list[Record], spread: float | None = None) -> Config:
    case = recs[0].case
    times = tuple(t for r in recs for t in r.samples_s)
    per_process = tuple(tuple(r.samples_s) for r in recs if r.samples_s)
    floor = median_floor(spread, len(per_process))
    s = summarize(list(times), per_process, floor)  # several processes: a hierarchical CI, floored
    step, setup, whole_run = [], [], False
    for r in recs:
        m, gpu = r.metrics, case.device != "cpu"
        step_v = m.step_peak_device_memory_bytes if gpu else m.step_peak_host_rss_bytes
        if step_v is None:  # an older record, or a framework that cannot reset its peak: the whole run's
            step_v = m.peak_device_memory_bytes if gpu else m.peak_host_rss_bytes
            whole_run = whole_run or step_v is not None
        setup_v = m.setup_peak_device_memory_bytes if gpu else m.setup_peak_host_rss_bytes
        if step_v is not None:
            step.append(float(step_v))
        if setup_v is not None:
            setup.append(float(setup_v))
    fps = recs[0].metrics.flops_per_sample
    cpu = [r.metrics.cpu_utilisation for r in recs if r.metrics.cpu_utilisation is not None]
    gpu_busy = [r.metrics.gpu_utilisation for r in recs if r.metrics.gpu_utilisation is not None]
    return Config(
        config_id=recs[0].config_id, framework=case.framework, batch_size=case.batch_size, times_s=times,
        summary=s, first_step_s=tuple(float(r.metrics.first_step_s) for r in recs), memory_bytes=tuple(step),
        setup_memory_bytes=tuple(setup), memory_whole_run=whole_run, process_times_s=per_process,
        flops_per_s=fps * case.batch_size / s.median if fps else None,
        cpu_utilisation=sum(cpu) / len(cpu) if cpu else None, processes=len(recs),
        warnings=tuple(dict.fromkeys(w for r in recs for w in r.warnings)),
        validated=next((_validated(r) for r in recs if _validated(r) != "not validated"), "not validated"),
        manifest=recs[0].manifest, median_floor=floor,
        gpu_utilisation=sum(gpu_busy) / len(gpu_busy) if gpu_busy else None,
        nvml_memory_bytes=tuple(float(r.metrics.nvml_used_memory_bytes) for r in recs
                                if r.metrics.nvml_used_memory_bytes is not None))


def run_spreads(records: list[Record], run_host: dict[str, Any] | None = None) -> dict[str, float]:
    """Device -> the pooled process-to-process spread of the run's ok configurations on it (stats.process_spread);
    a configuration measured on several hosts counts once per host (`run_host`: run.json's, as in `collect_groups`)."""
    by_device: dict[str, dict[tuple[str, str], list[tuple[float, ...]]]] = {}
    for r, host in zip(records, host_labels(records, run_host)):
        if r.ok and r.samples_s:
            by_device.setdefault(r.case.device, {}).setdefault((host, r.config_id), []).append(tuple(r.samples_s))
    spreads = {device: process_spread(configs.values()) for device, configs in by_device.items()}
    return {device: s for device, s in spreads.items() if s is not None}


def collect_groups(records: list[Record], run_host: dict[str, Any] | None = None) -> list[Group]:
    """Ok records pooled per configuration (processes) and grouped into comparisons, sorted.

    Where the records come from several hosts (`run_host`: run.json's, the machine of a record without
    its own), a configuration pools only the processes of one host and each comparison is one host's.
    """
    configs: dict[tuple[str, str], list[Record]] = {}
    for r, host in zip(records, host_labels(records, run_host)):
        if r.ok:
            configs.setdefault((host, r.config_id), []).append(r)
    spreads = run_spreads(records, run_host)
    groups: dict[tuple, Group] = {}
    for (host, _), recs in configs.items():
        key = group_key(recs[0].case, host)
        groups.setdefault(key, Group(*key)).configs.append(_config(recs, spreads.get(recs[0].case.device)))
    for g in groups.values():
        g.configs.sort(key=lambda x: (x.batch_size, -x.samples_per_s, x.framework))
    return [groups[k] for k in sorted(groups)]


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def _secs(x: float) -> str:
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def _bytes(b: float) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:,.0f} MiB"


def _gpu_columns(group: Group) -> tuple[bool, bool]:
    """Whether the table shows "GPU busy" and "NVML memory": a GPU comparison whose records have them (NVML)."""
    on_gpu = group.device != "cpu"
    return (on_gpu and any(c.gpu_utilisation is not None for c in group.configs),
            on_gpu and any(c.nvml_memory_bytes for c in group.configs))


def group_table(group: Group) -> pd.DataFrame:
    rows = []
    busy, nvml = _gpu_columns(group)
    for c in group.configs:
        rel, verdict = vs_fastest(group, c)
        rows.append({
            "framework": c.framework, "batch": str(c.batch_size), "samples/s": _num(c.samples_per_s),
            "95% CI": f"{_num(c.ci[0])}–{_num(c.ci[1])}", "rel. speed": f"{rel:.2f}", "vs fastest": verdict,
            "first step s": _secs(min(c.first_step_s)),
            "set-up memory": _bytes(max(c.setup_memory_bytes)) if c.setup_memory_bytes else "-",
            "step memory": (_bytes(max(c.memory_bytes)) + (" (whole run)" if c.memory_whole_run else ""))
                           if c.memory_bytes else "-",
            **({"NVML memory": _bytes(max(c.nvml_memory_bytes)) if c.nvml_memory_bytes else "-"} if nvml else {}),
            "GFLOP/s": f"{c.flops_per_s / 1e9:,.2f}" if c.flops_per_s else "-",
            "CPU busy": f"{c.cpu_utilisation:.2f}" if c.cpu_utilisation is not None else "-",
            **({"GPU busy": f"{c.gpu_utilisation:.0%}" if c.gpu_utilisation is not None else "-"} if busy else {}),
            "samples": f"{c.summary.n}" + (f" ({c.processes} proc.)" if c.processes > 1 else " (1 proc.)")
                       + (" ⚠" if c.warnings else ""),
            "validated": c.validated})
    return pd.DataFrame(rows)


def _flat_manifest_source(m: dict[str, Any]) -> dict[str, Any]:
    """The manifest with the shared keys filled in from older records' own words where they lack them."""
    if "compile_scope" not in m and "compile" in m:  # a record from before the shared key
        m = {**m, "compile_scope": m["compile"]}
    if "recurrent_impl" not in m and "recurrent" in m:
        m = {**m, "recurrent_impl": m["recurrent"]}
    return m


def _flat_manifest(m: dict[str, Any], group: Group | None = None) -> dict[str, str]:
    out = {}
    m = _flat_manifest_source(m)
    for k, (_, applies) in FAIRNESS.items():
        if k not in m or (group is not None and not applies(group)):
            continue
        v = m[k]
        if isinstance(v, dict):
            out.update({f"{k}.{sk}": "unset" if sv is None else str(sv) for sk, sv in sorted(v.items())})
        elif isinstance(v, list):
            out[k] = ",".join(str(x) for x in v)
        else:
            out[k] = "unset" if v is None else str(v)
    return out


def differing_settings(group: Group) -> dict[str, dict[str, str]]:
    """Manifest settings whose values differ between the frameworks of one comparison: key -> fw -> value."""
    per_fw: dict[str, dict[str, str]] = {}
    for c in group.configs:
        per_fw.setdefault(c.framework, _flat_manifest(c.manifest, group))
    keys = sorted({k for m in per_fw.values() for k in m})
    out = {}
    for k in keys:
        vals = {fw: m[k] for fw, m in sorted(per_fw.items()) if k in m}
        if len(vals) >= 2 and len(set(vals.values())) > 1:
            out[k] = vals
    return out


def settings_table(groups: list[Group]) -> pd.DataFrame:
    """Every (setting, values) that differs in some comparison, with the comparisons it affects."""
    seen: dict[tuple[str, str], list[str]] = {}
    compared = [g for g in groups if len({c.framework for c in g.configs}) >= 2]
    for g in compared:
        for k, vals in differing_settings(g).items():
            text = "; ".join(f"{fw}: {v}" for fw, v in vals.items())
            seen.setdefault((k, text), []).append(f"{g.model} {g.mode}" + (f" on {g.host}" if g.host else ""))
    rows = [{"setting": k, "values": text, "why it matters": FAIRNESS[k.split(".")[0]][0],
             "comparisons": f"all {len(compared)}" if len(where) == len(compared) else ", ".join(where)}
            for (k, text), where in sorted(seen.items())]
    return pd.DataFrame(rows, columns=["setting", "values", "why it matters", "comparisons"])


def warning_lists(groups: list[Group]) -> list[tuple[str, list[str]]]:
    """(heading, items) for unstable cases, thread-cap violations and other warnings."""
    contended = "Contended: other processes used the worker's CPUs or GPU"
    remeasured = "Re-measured: samples that other processes slowed, left out and replaced (the numbers stand)"
    buckets: dict[str, list[str]] = {contended: [], "Unstable measurements": [], "CPU use far from the thread cap": [],
                                     remeasured: [], "Other warnings": []}
    for g in groups:
        for c in g.configs:
            for w in c.warnings:
                where = (contended if w.startswith(CONTENDED_PREFIX) else remeasured if w.startswith("re-measured") else
                         "Unstable measurements" if w.startswith(UNSTABLE_PREFIXES) else
                         "CPU use far from the thread cap" if w.startswith(CPU_CAP_PREFIXES) else "Other warnings")
                on = f" on {g.host}" if g.host else ""
                buckets[where].append(f"{c.framework} {g.model} {g.mode} b={c.batch_size} {g.device}{on}: {w}")
    return [(k, v) for k, v in buckets.items() if v]


def not_measured_tables(records: list[Record],
                        run_host: dict[str, Any] | None = None) -> list[tuple[str, pd.DataFrame]]:
    out = []
    hosts = host_labels(records, run_host)
    for title, statuses in (("Skipped", ("skipped",)), ("Failed or timed out", ("failed", "timeout"))):
        rows = [{"case": (f"{r.case.framework} {r.case.model} {r.case.mode} b={r.case.batch_size} "
                          f"{r.case.device} {r.case.precision}" + (f" on {h}" if h else "")),
                 "status": r.status, "reason": " ".join((r.reason or "").split())}
                for r, h in zip(records, hosts) if r.status in statuses]
        if rows:
            out.append((title, pd.DataFrame(rows)))
    return out


def _adapter_package(manifest: dict[str, Any]) -> str:
    """`adapter xfbench 0.1.0 (src 1a2b3c4d5e6f)`: which code produced the numbers; "" for older records."""
    p = manifest.get("adapter_package")
    if not isinstance(p, dict) or not p.get("package"):
        return ""
    src = f" (src {p['source_sha256']})" if p.get("source_sha256") else ""
    return f"adapter {p['package']} {p.get('version') or '?'}{src}"


def _environment(manifest: dict[str, Any]) -> str:
    """`environment torch-2-12 (Python 3.11.7)` for a framework environment's worker; "" for bench's own."""
    e = manifest.get("environment")
    if not isinstance(e, dict) or e.get("name") in (None, "main"):
        return ""
    return f"environment {e['name']} (Python {e.get('python') or '?'})"


def _frameworks(records: list[Record]) -> pd.DataFrame:
    """One row per adapter: versions, and what ran (compile scope, recurrent kernel) as its records say."""
    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        if not r.ok:
            continue
        row = rows.setdefault(r.case.framework, {"versions": "", "scope": {}, "recurrent": {}})
        if not row["versions"]:
            v = r.manifest.get("versions", {})
            row["versions"] = " · ".join(x for x in (", ".join(f"{k} {x}" for k, x in v.items() if x),
                                                      _adapter_package(r.manifest), _environment(r.manifest)) if x) or "-"
        m = _flat_manifest_source(r.manifest)
        for key, column in (("compile_scope", "scope"), ("recurrent_impl", "recurrent")):
            if m.get(key):
                row[column][str(m[key])] = None  # distinct values, first seen first
    return pd.DataFrame([{"adapter": k, "versions": row["versions"], "compile scope": "; ".join(row["scope"]) or "-",
                          "recurrent layers": "; ".join(row["recurrent"]) or "-"} for k, row in sorted(rows.items())],
                        columns=["adapter", "versions", "compile scope", "recurrent layers"])


def build_report(run: RunDir) -> Report:
    meta, all_records = run.meta(), run.records()
    # Runs to accuracy have a section of their own; every other part of the report is about throughput.
    records = [r for r in all_records if r.case.mode != "converge"]
    converge, converge_answers = convergence_section(all_records)
    host = meta.host
    groups = collect_groups(records, host)
    when = (dt.datetime.fromtimestamp(meta.started, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            if meta.started else "?")
    counts = {s: sum(r.status == s for r in all_records) for s in ("ok", "skipped", "failed", "timeout")}
    hosts = hosts_seen(records, host)  # the machines that measured the records (run.json's host for older ones)
    by_host = by_host_section(groups, hosts)
    machine = "Host" if len(hosts) <= 1 else "Run started on"  # several hosts: run.json's is where `bench run` ran
    intro = [f"Run {run.path.name}, started {when}; {len(all_records)} case records: {counts['ok']} measured, "
             f"{counts['skipped']} skipped, {counts['failed'] + counts['timeout']} failed or timed out.",
             f"{machine}: {host.get('hostname', '?')}, {host.get('cpu_model', '?')}, "
             f"{host.get('cpus_available', '?')} CPUs available"
             + (f", GPUs: {'; '.join(host['gpus'])}" if host.get("gpus") else ", no GPU")
             + f"; {host.get('os', '?')}; Python {host.get('python', '?')}; xfbench {host.get('harness_version', '?')}"
             + (f" ({host['git_commit'][:12]})" if host.get("git_commit") else "") + "."]
    gpu = gpu_line(records, host)  # a run on a GPU: which one, its driver, and each framework's CUDA and cuDNN
    if gpu:
        intro.append(gpu)
    if len(hosts) > 1:  # a run on a cluster: say which machines measured it
        intro.append(f"The records come from {len(hosts)} hosts: " + "; ".join(describe(h, m) for h, m in hosts.items())
                     + ". Frameworks are compared only on the same host"
                     + ("; see By host for the hardware comparison." if by_host else "."))
    v = verdict(groups)
    peaks, peak_notes = read_peaks(run.path)  # peak.json: the roofline, where the run measured it
    sections = []
    # peak.json holds the run's own machine's peaks: a job measured on another host gets no share of them.
    here = ("", *(label for label, m in hosts.items() if hardware(m) == hardware(host)))
    for g in groups:
        diff = differing_settings(g)
        notes = ([f"Settings that differ here: {', '.join(diff)}."] if diff else [])
        table = with_share_of_peak(group_table(g), g, peaks if g.host in here else {}) if peaks else group_table(g)
        sections.append(Section(g.title, table, notes, plots.plot_paths(g)))
    notes = run.reading_notes() + peak_notes
    spreads = run_spreads(records, host)
    spread_text = ("the run's process-to-process spread (pooled over its configurations: "
                   + ", ".join(f"{v:.1%} on {d}" for d, v in sorted(spreads.items()))
                   + "; the SD of the log of a process's median step time)") if spreads else \
        "the run's process-to-process spread (none measured: no configuration ran in two processes)"
    return Report(
        title=f"xfbench report: {meta.suite}", intro=intro, frameworks=_frameworks(records),
        verdict_method=v.method, verdict=v.table, answers=v.answers + converge_answers,
        settings=settings_table(groups),
        method=("samples/s is the median over all samples of all worker processes (each sample: k steps, then a "
                "full device sync); its 95% CI is a percentile bootstrap of the median, hierarchical where a case "
                "ran in several processes (processes resampled first, then samples within each), and never narrower "
                f"than {spread_text} allows. samples says how "
                "many processes: with \"1 proc.\" the CI omits process-to-process variation. rel. speed is the "
                "throughput over the fastest framework's at the same batch size; \"vs fastest\" says \"tied\" "
                "unless a Mann-Whitney U test on the per-step times gives p < 0.05 and the 95% CIs of the "
                "medians do not overlap. first step s is the first step alone (tracing, compilation, "
                "autotuning; the fastest process). set-up memory is the peak from the framework's "
                "import to the end of the warm-up (building, loading weights, compiling); step memory is the peak "
                "while the timed steps ran (reset after the warm-up), the figure the verdict compares: device memory "
                "on a GPU, the worker's resident memory on CPU (the framework runtime included); \"(whole run)\" "
                "marks a record without a step figure. GFLOP/s is analytic FLOPs per sample "
                "times samples/s. validated is the `bench validate` result for the case, if any. ⚠: see "
                "Warnings.") + (GPU_METHOD if any(any(_gpu_columns(g)) for g in groups) else ""),
        sections=sections, startup_plot=plots.startup_path(groups), warnings=warning_lists(groups),
        not_measured=not_measured_tables(all_records, host), notes=notes, groups=groups,
        glance=at_a_glance(groups, records, host) if records else None,
        glance_plot=(GLANCE_CAPTION, GLANCE_FILE) if records else None,
        roofline=roofline_section(peaks, [g for g in groups if g.host in here]) if peaks else None,
        keras=keras_backends_section(groups), by_host=by_host, convergence=converge)
