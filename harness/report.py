"""Reports rendered from stored records only; nothing here measures.

`build_report(run)` turns a run directory into a `Report` (pandas tables of display strings, plot file
names, verdict answers); `report_md` and `report_html` render it, `plots` draws the figures, and
`write_reports` writes report.md, report.html, results.csv and plots/*.png into the run directory.
Every number is a pure function of cases.jsonl and run.json (seeded bootstraps, UTC dates), so the
same records always give byte-identical markdown.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .results import RunDir, load_frame
from .significance import compare_times
from .stats import Summary, summarize

# Fairness-manifest keys (SPEC 5.8) compared between frameworks in one comparison. Left out on purpose:
# `versions`, `framework`, `adapter` and descriptive notes (`optimizer_impl`, `recurrent`, `donation`,
# `mkldnn`, `onednn`, `backend`, `device`, `gpu`), which differ by nature. A key reported by only one
# framework (torch's `fp32_precision`, jax's `matmul_precision`) cannot differ and is not listed.
FAIRNESS_KEYS = ("threads", "interop_threads", "affinity", "env", "precision", "dtype", "compute_dtype",
                 "autocast", "compile", "data_layout", "allocator_preallocation", "memory_growth",
                 "fp32_precision", "matmul_precision", "tensor_float_32", "cudnn_benchmark", "x64")
UNSTABLE_PREFIXES = ("unstable", "too few samples")
CPU_CAP_PREFIXES = ("thread cap exceeded", "cores idle")


@dataclass(frozen=True)
class Config:
    """One configuration of one framework, its worker processes pooled."""

    config_id: str  # the case_id without its process suffix
    framework: str
    batch_size: int
    times_s: tuple[float, ...]  # seconds per step, every sample of every process
    summary: Summary
    first_step_s: tuple[float, ...]  # one per process
    memory_bytes: tuple[float, ...]  # peak device memory on GPU, else peak host RSS; one per process
    flops_per_s: float | None
    cpu_utilisation: float | None
    processes: int
    warnings: tuple[str, ...]
    validated: str
    manifest: dict[str, Any]

    @property
    def samples_per_s(self) -> float:
        return self.batch_size / self.summary.median

    @property
    def ci(self) -> tuple[float, float]:
        return self.batch_size / self.summary.ci_high, self.batch_size / self.summary.ci_low


@dataclass
class Group:
    """One comparison: a model, mode, device, precision, thread count, params and optimizer."""

    model: str
    mode: str
    device: str
    precision: str
    threads: int
    params: str
    optimizer: str
    configs: list[Config] = field(default_factory=list)

    @property
    def title(self) -> str:
        t = (f"{self.model} · {self.mode}" + (f" ({self.optimizer})" if self.optimizer else "")
             + f" · {self.device} · {self.precision} · {self.threads} thread{'s' if self.threads != 1 else ''}")
        return t + (f" · {self.params}" if self.params != "{}" else "")

    @property
    def slug(self) -> str:
        """A short file-name-safe id: the readable parts, plus a hash of the params and optimizer options."""
        base = f"{self.model}-{self.mode}-{self.optimizer.split(' ')[0]}-{self.device}-{self.precision}-t{self.threads}"
        extra = self.params if self.params != "{}" else ""
        extra += self.optimizer.partition(" ")[2]
        tag = f"-{hashlib.sha1(extra.encode()).hexdigest()[:6]}" if extra else ""
        return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") + tag

    def batches(self) -> list[int]:
        return sorted({c.batch_size for c in self.configs})

    def at(self, batch: int) -> list[Config]:
        return [c for c in self.configs if c.batch_size == batch]


def _validated(rec: dict[str, Any]) -> str:
    # Read from record["validated"] (see harness/results.py); absent means `bench validate` never ran.
    v = rec.get("validated")
    if not isinstance(v, dict) or not v.get("status"):
        return "not validated"
    return str(v["status"]) + (f" (vs {v['against']})" if v.get("against") else "")


def _config(recs: list[dict[str, Any]]) -> Config:
    case = recs[0]["case"]
    times = tuple(float(t) for r in recs for t in r["samples_s"])
    s = summarize(list(times))
    mem = []
    for r in recs:
        m = r["metrics"]
        v = m.get("peak_device_memory_bytes") if case["device"] != "cpu" else None
        v = v if v is not None else m.get("peak_host_rss_bytes")
        if v is not None:
            mem.append(float(v))
    fps = recs[0]["metrics"].get("flops_per_sample")
    cpu = [r["metrics"]["cpu_utilisation"] for r in recs if r["metrics"].get("cpu_utilisation") is not None]
    return Config(
        config_id=recs[0]["case_id"].rsplit("-p", 1)[0], framework=case["framework"], batch_size=case["batch_size"], times_s=times, summary=s,
        first_step_s=tuple(float(r["metrics"]["first_step_s"]) for r in recs), memory_bytes=tuple(mem),
        flops_per_s=fps * case["batch_size"] / s.median if fps else None,
        cpu_utilisation=sum(cpu) / len(cpu) if cpu else None, processes=len(recs),
        warnings=tuple(dict.fromkeys(w for r in recs for w in r["warnings"])),
        validated=next((_validated(r) for r in recs if _validated(r) != "not validated"), "not validated"),
        manifest=recs[0]["manifest"])


def collect_groups(records: list[dict[str, Any]]) -> list[Group]:
    """Ok records pooled per configuration (processes) and grouped into comparisons, sorted."""
    configs: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] == "ok":
            configs.setdefault(r["case_id"].rsplit("-p", 1)[0], []).append(r)
    groups: dict[tuple, Group] = {}
    for recs in configs.values():
        c = recs[0]["case"]
        opt = ""
        if c["mode"] == "train":
            opt = c["optimizer"] + (f" {json.dumps(c.get('optimizer_params'), sort_keys=True)}"
                                    if c.get("optimizer_params") else "")
        key = (c["model"], c["mode"], c["device"], c["precision"], c["threads"],
               json.dumps(c["model_params"], sort_keys=True), opt)
        groups.setdefault(key, Group(*key)).configs.append(_config(recs))
    for g in groups.values():
        g.configs.sort(key=lambda x: (x.batch_size, -x.samples_per_s, x.framework))
    return [groups[k] for k in sorted(groups)]


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def _secs(x: float) -> str:
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def _bytes(b: float) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:,.0f} MiB"


def vs_fastest(group: Group, cfg: Config) -> tuple[float, str]:
    """(throughput / fastest throughput at the same batch size, 'fastest' | 'tied' | 'N.NNx slower')."""
    peers = group.at(cfg.batch_size)
    if len(peers) < 2:
        return 1.0, "only one measured"
    fastest = max(peers, key=lambda c: (c.samples_per_s, c.framework))
    if cfg is fastest:
        return 1.0, "fastest"
    comp = compare_times(fastest.times_s, cfg.times_s, ci_a=(fastest.summary.ci_low, fastest.summary.ci_high),
                         ci_b=(cfg.summary.ci_low, cfg.summary.ci_high))
    return cfg.samples_per_s / fastest.samples_per_s, comp.label() if comp.significant else "tied"


def group_table(group: Group) -> pd.DataFrame:
    rows = []
    for c in group.configs:
        rel, verdict = vs_fastest(group, c)
        rows.append({
            "framework": c.framework, "batch": str(c.batch_size), "samples/s": _num(c.samples_per_s),
            "95% CI": f"{_num(c.ci[0])}–{_num(c.ci[1])}", "rel. speed": f"{rel:.2f}", "vs fastest": verdict,
            "first step s": _secs(min(c.first_step_s)),
            "peak memory": _bytes(max(c.memory_bytes)) if c.memory_bytes else "-",
            "GFLOP/s": f"{c.flops_per_s / 1e9:,.2f}" if c.flops_per_s else "-",
            "CPU busy": f"{c.cpu_utilisation:.2f}" if c.cpu_utilisation is not None else "-",
            "samples": f"{c.summary.n}" + (f" ({c.processes} proc.)" if c.processes > 1 else "")
                       + (" ⚠" if c.warnings else ""),
            "validated": c.validated})
    return pd.DataFrame(rows)


def _flat_manifest(m: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k in FAIRNESS_KEYS:
        if k not in m:
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
        per_fw.setdefault(c.framework, _flat_manifest(c.manifest))
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
            seen.setdefault((k, text), []).append(f"{g.model} {g.mode}")
    rows = [{"setting": k, "values": text,
             "comparisons": f"all {len(compared)}" if len(where) == len(compared) else ", ".join(where)}
            for (k, text), where in sorted(seen.items())]
    return pd.DataFrame(rows, columns=["setting", "values", "comparisons"])


def warning_lists(groups: list[Group]) -> list[tuple[str, list[str]]]:
    """(heading, items) for unstable cases, thread-cap violations and other warnings."""
    buckets: dict[str, list[str]] = {"Unstable measurements": [], "CPU use far from the thread cap": [],
                                     "Other warnings": []}
    for g in groups:
        for c in g.configs:
            for w in c.warnings:
                where = ("Unstable measurements" if w.startswith(UNSTABLE_PREFIXES) else
                         "CPU use far from the thread cap" if w.startswith(CPU_CAP_PREFIXES) else "Other warnings")
                buckets[where].append(f"{c.framework} {g.model} {g.mode} b={c.batch_size} {g.device}: {w}")
    return [(k, v) for k, v in buckets.items() if v]


def not_measured_tables(records: list[dict[str, Any]]) -> list[tuple[str, pd.DataFrame]]:
    out = []
    for title, statuses in (("Skipped", ("skipped",)), ("Failed or timed out", ("failed", "timeout"))):
        rows = [{"case": (f"{r['case']['framework']} {r['case']['model']} {r['case']['mode']} "
                          f"b={r['case']['batch_size']} {r['case']['device']} {r['case']['precision']}"),
                 "status": r["status"], "reason": " ".join((r["reason"] or "").split())}
                for r in records if r["status"] in statuses]
        if rows:
            out.append((title, pd.DataFrame(rows)))
    return out


@dataclass
class Section:
    title: str
    table: pd.DataFrame
    notes: list[str]
    plots: list[tuple[str, str]]  # (caption, path relative to the run directory)


@dataclass
class Report:
    title: str
    intro: list[str]
    frameworks: pd.DataFrame
    verdict_method: str
    verdict: pd.DataFrame
    answers: list[tuple[str, str]]
    settings: pd.DataFrame
    method: str
    sections: list[Section]
    startup_plot: tuple[str, str] | None
    warnings: list[tuple[str, list[str]]]
    not_measured: list[tuple[str, pd.DataFrame]]
    notes: list[str]
    groups: list[Group]  # what the plots are drawn from


def _frameworks(records: list[dict[str, Any]]) -> pd.DataFrame:
    seen: dict[str, str] = {}
    for r in records:
        if r["status"] == "ok" and r["case"]["framework"] not in seen:
            v = r["manifest"].get("versions", {})
            seen[r["case"]["framework"]] = ", ".join(f"{k} {x}" for k, x in v.items() if x) or "-"
    return pd.DataFrame([{"adapter": k, "versions": v} for k, v in sorted(seen.items())],
                        columns=["adapter", "versions"])


def build_report(run: RunDir) -> Report:
    from . import plots
    from .verdict import verdict

    meta, records = run.meta(), run.records()
    host = meta.get("host", {})
    groups = collect_groups(records)
    when = (dt.datetime.fromtimestamp(meta["started"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            if meta.get("started") else "?")
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "skipped", "failed", "timeout")}
    intro = [f"Run {run.path.name}, started {when}; {len(records)} case records: {counts['ok']} measured, "
             f"{counts['skipped']} skipped, {counts['failed'] + counts['timeout']} failed or timed out.",
             f"Host: {host.get('hostname', '?')}, {host.get('cpu_model', '?')}, "
             f"{host.get('cpus_available', '?')} CPUs available"
             + (f", GPUs: {'; '.join(host['gpus'])}" if host.get("gpus") else ", no GPU")
             + f"; {host.get('os', '?')}; Python {host.get('python', '?')}; xfbench {host.get('harness_version', '?')}"
             + (f" ({host['git_commit'][:12]})" if host.get("git_commit") else "") + "."]
    v = verdict(groups)
    sections = []
    for g in groups:
        diff = differing_settings(g)
        notes = ([f"Settings that differ here: {', '.join(diff)}."] if diff else [])
        sections.append(Section(g.title, group_table(g), notes, plots.plot_paths(g)))
    notes = [f"Ignored unreadable line(s) {run.torn_lines} of cases.jsonl (a torn write)."] if run.torn_lines else []
    return Report(
        title=f"xfbench report: {meta.get('suite', '?')}", intro=intro, frameworks=_frameworks(records),
        verdict_method=v.method, verdict=v.table, answers=v.answers, settings=settings_table(groups),
        method=("samples/s is the median over all samples of all worker processes (each sample: k steps, then a "
                "full device sync); its 95% CI is a percentile bootstrap of the median. rel. speed is the "
                "throughput over the fastest framework's at the same batch size; \"vs fastest\" says \"tied\" "
                "unless a Mann-Whitney U test on the per-step times gives p < 0.05 and the 95% CIs of the "
                "medians do not overlap. first step s is the first step alone (tracing, compilation, "
                "autotuning; the fastest process). peak memory is peak device memory on a GPU and the worker's "
                "peak host RSS on CPU (the framework runtime included). GFLOP/s is analytic FLOPs per sample "
                "times samples/s. validated is the `bench validate` result for the case, if any. ⚠: see "
                "Warnings."),
        sections=sections, startup_plot=plots.startup_path(groups), warnings=warning_lists(groups),
        not_measured=not_measured_tables(records), notes=notes, groups=groups)


def write_reports(run_path: Path) -> dict[str, Path]:
    """Write report.md, report.html, results.csv and plots/*.png into the run directory; return their paths."""
    from . import plots
    from .report_html import render_html
    from .report_md import render_markdown

    run = RunDir(Path(run_path))
    report = build_report(run)
    written = plots.write_plots(run.path, report.groups)
    for stale in set((run.path / plots.PLOTS_DIR).glob("*.png")) - set(written):
        stale.unlink()  # a figure of a comparison no longer in the records
    out = {"report.md": run.path / "report.md", "report.html": run.path / "report.html",
           "results.csv": run.path / "results.csv"}
    out["report.md"].write_text(render_markdown(report))
    out["report.html"].write_text(render_html(report, run.path))
    load_frame(run.path).to_csv(out["results.csv"], index=False)
    out.update({f"plots/{p.name}": p for p in written})
    return out
