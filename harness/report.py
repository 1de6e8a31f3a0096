"""Reports rendered from stored records only; nothing here measures."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import RunDir, load_frame
from .stats import summarize


@dataclass(frozen=True)
class Row:
    """One configuration, its repetitions (processes) pooled."""

    framework: str
    batch_size: int
    samples_per_s: float
    ci: tuple[float, float]
    step_ms: float
    first_step_s: float
    cpu_utilisation: float | None
    samples: int
    processes: int
    warnings: tuple[str, ...]


def _group_key(case: dict[str, Any]) -> tuple:
    return (case["model"], case["mode"], case["device"], case["precision"],
            json.dumps(case["model_params"], sort_keys=True),
            case["optimizer"] if case["mode"] == "train" else "")


def pooled_rows(records: list[dict[str, Any]]) -> dict[tuple, list[Row]]:
    """Ok records grouped by comparison (model, mode, device, precision, params, optimizer)."""
    configs: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] == "ok":
            configs.setdefault(r["case_id"].rsplit("-p", 1)[0], []).append(r)
    groups: dict[tuple, list[Row]] = {}
    for recs in configs.values():
        case = recs[0]["case"]
        samples = [t for r in recs for t in r["samples_s"]]
        s = summarize(samples)
        b = case["batch_size"]
        cpu = [r["metrics"].get("cpu_utilisation") for r in recs if r["metrics"].get("cpu_utilisation")]
        row = Row(framework=case["framework"], batch_size=b, samples_per_s=b / s.median,
                  ci=(b / s.ci_high, b / s.ci_low), step_ms=s.median * 1e3,
                  first_step_s=min(r["metrics"]["first_step_s"] for r in recs),
                  cpu_utilisation=sum(cpu) / len(cpu) if cpu else None, samples=s.n, processes=len(recs),
                  warnings=tuple(dict.fromkeys(w for r in recs for w in r["warnings"])))
        groups.setdefault(_group_key(case), []).append(row)
    for rows in groups.values():
        rows.sort(key=lambda r: (r.batch_size, -r.samples_per_s))
    return dict(sorted(groups.items()))


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def _vs_fastest(row: Row, best: float) -> str:
    if row.samples_per_s >= best:
        return "fastest"
    return f"{best / row.samples_per_s:.2f}x slower"


def render_markdown(run: RunDir) -> str:
    meta, records = run.meta(), run.records()
    host = meta.get("host", {})
    lines = [f"# xfbench report: {meta.get('suite', '?')}", ""]
    when = dt.datetime.fromtimestamp(meta["started"]).strftime("%Y-%m-%d %H:%M") if "started" in meta else "?"
    lines += [f"Run `{run.path.name}`, started {when}; {len(records)} case records.",
              f"Host: {host.get('cpu_model', '?')}, {host.get('cpus_available', '?')} CPUs available"
              + (f", GPUs: {'; '.join(host['gpus'])}" if host.get("gpus") else ", no GPU")
              + f"; Python {host.get('python', '?')}; xfbench {host.get('harness_version', '?')}"
              + (f" ({host['git_commit'][:12]})" if host.get("git_commit") else "") + ".", ""]
    versions = sorted({f"{k} {v}" for r in records for k, v in r["manifest"].get("versions", {}).items()})
    if versions:
        lines += [f"Frameworks: {', '.join(versions)}.", ""]
    lines += ["Throughput is the median over all samples (each sample: k steps, then a full device sync); "
              "the 95% CI of the median is a percentile bootstrap. \"vs fastest\" compares medians at the "
              "same batch size; overlapping intervals mean the difference is not established.", ""]
    for (model, mode, device, precision, params, optimizer), rows in pooled_rows(records).items():
        title = f"{model} · {mode}" + (f" ({optimizer})" if optimizer else "") + f" · {device} · {precision}"
        if params != "{}":
            title += f" · {params}"
        lines += [f"## {title}", "",
                  "| framework | batch | samples/s | 95% CI | vs fastest | step ms | first step s | CPU busy | samples |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
        best = {}
        for r in rows:
            best[r.batch_size] = max(best.get(r.batch_size, 0.0), r.samples_per_s)
        for r in rows:
            cpu = f"{r.cpu_utilisation:.2f}" if r.cpu_utilisation is not None else "-"
            lines.append(f"| {r.framework} | {r.batch_size} | {_num(r.samples_per_s)} | "
                         f"{_num(r.ci[0])}–{_num(r.ci[1])} | {_vs_fastest(r, best[r.batch_size])} | "
                         f"{r.step_ms:.2f} | {r.first_step_s:.2f} | {cpu} | {r.samples}"
                         + (f" ({r.processes} proc.)" if r.processes > 1 else "") + " |")
        warned = [(r.framework, r.batch_size, w) for r in rows for w in r.warnings]
        if warned:
            lines += [""] + [f"- ⚠ {fw} b={b}: {w}" for fw, b, w in warned]
        lines.append("")
    not_ok = [r for r in records if r["status"] != "ok"]
    if not_ok:
        lines += ["## Not measured", "", "| case | status | reason |", "|---|---|---|"]
        for r in not_ok:
            c = r["case"]
            reason = (r["reason"] or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {c['framework']} {c['model']} {c['mode']} b={c['batch_size']} {c['device']} "
                         f"| {r['status']} | {reason} |")
        lines.append("")
    if run.torn_lines:
        lines += [f"Note: ignored unreadable line(s) {run.torn_lines} of cases.jsonl (a torn write).", ""]
    return "\n".join(lines)


def write_reports(run_path: Path) -> dict[str, Path]:
    """Write report.md and results.csv into the run directory; return their paths."""
    run = RunDir(Path(run_path))
    md = run.path / "report.md"
    md.write_text(render_markdown(run))
    csv = run.path / "results.csv"
    load_frame(run.path).to_csv(csv, index=False)
    return {"report.md": md, "results.csv": csv}
