"""`bench export RUN --format F`: a run's stored records in other tools' formats.

- `pytest-benchmark`: the JSON that `pytest-benchmark compare FILE...` reads (its storage format: one
  benchmark per configuration, processes pooled; `stats.data` holds the per-step seconds, `iterations`
  the steps per sample; quartiles are numpy's linear percentiles).
- `csv`, `parquet`: one row per case record (`xfbench.harness.results.load_frame`), as results.csv.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import statistics
from bisect import bisect_left, bisect_right
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XfbenchError
from ..results import RunDir, load_frame
from .build import collect_groups

FORMATS = ("pytest-benchmark", "csv", "parquet")
DEFAULT_NAMES = {"pytest-benchmark": "pytest-benchmark.json", "csv": "cases.csv", "parquet": "cases.parquet"}


class ExportError(XfbenchError, ValueError):
    """An export that cannot be written (unknown format, missing optional package)."""


def benchmark_stats(data: list[float]) -> dict[str, Any]:
    """pytest-benchmark's `stats` fields for per-iteration times in seconds."""
    s = sorted(data)
    mean = statistics.mean(s)
    std = statistics.stdev(s) if len(s) > 1 else 0.0
    q1, q3 = (float(q) for q in np.percentile(s, [25, 75]))
    iqr = q3 - q1
    lo = s[min(bisect_left(s, q1 - 1.5 * iqr), len(s) - 1)]
    hi = s[max(bisect_right(s, q3 + 1.5 * iqr) - 1, 0)]
    iqr_out = sum(v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr for v in s)
    std_out = sum(v < mean - std or v > mean + std for v in s)
    return {"min": s[0], "max": s[-1], "mean": mean, "stddev": std, "rounds": len(s),
            "median": statistics.median(s), "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_out,
            "stddev_outliers": std_out, "outliers": f"{std_out};{iqr_out}", "ld15iqr": lo, "hd15iqr": hi,
            "ops": 1 / mean, "total": sum(s), "data": list(data)}


def pytest_benchmark_json(run: RunDir) -> dict[str, Any]:
    meta, records = run.meta(), run.records()
    host = meta.host
    first = {}  # config id -> its first ok record (measurement options)
    for r in records:
        if r.ok:
            first.setdefault(r.config_id, r)
    benchmarks = []
    for g in collect_groups(records, host):
        group = g.title
        for c in g.configs:
            rec = first[c.config_id]
            param = f"{c.framework}-b{c.batch_size}"
            name = f"{g.model}_{g.mode}[{param}]"
            m = rec.case.measure
            stats = benchmark_stats(list(c.times_s))
            benchmarks.append({
                "group": group, "name": name, "fullname": f"xfbench/{meta.suite}::{group}::{name}",
                "params": {"framework": c.framework, "batch_size": c.batch_size}, "param": param,
                "extra_info": {"samples_per_s": c.samples_per_s, "samples_per_s_ci": list(c.ci),
                               "first_step_s": min(c.first_step_s), "processes": c.processes,
                               "warnings": list(c.warnings), "case_id": rec.case_id},
                "options": {"timer": "perf_counter_ns", "min_rounds": m.min_samples,
                            "max_time": m.max_time_s, "min_time": m.min_sample_s,
                            "warmup": m.warmup_steps, "disable_gc": False},
                "stats": {**stats, "iterations": rec.metrics.steps_per_sample or 1},
            })
    started = meta.started
    return {
        "machine_info": {"node": host.get("hostname", ""), "processor": host.get("cpu_model", ""),
                         "machine": host.get("os", ""), "python_implementation": "CPython",
                         "python_version": host.get("python", ""), "system": host.get("os", ""),
                         "cpu": {"brand_raw": host.get("cpu_model", ""), "count": host.get("cpu_count")}},
        "commit_info": {"id": host.get("git_commit") or "unknown", "project": "xfbench", "dirty": None,
                        "branch": None, "time": None},
        "benchmarks": benchmarks,
        "datetime": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat() if started else None,
        "version": _pytest_benchmark_version(),
    }


def _pytest_benchmark_version() -> str:
    try:
        return metadata.version("pytest-benchmark")
    except metadata.PackageNotFoundError:
        return "5.1.0"  # the format written here is the 4.x/5.x one


def export(run_path: Path, fmt: str, output: Path | None = None) -> tuple[Path, list[str]]:
    """Write the run in `fmt` to `output` (default: a file in the run directory).

    Returns the path and what reading the records skipped (`RunDir.reading_notes`).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run = RunDir(Path(run_path))
    run.meta()  # refuse anything that is not a run directory
    run.records()
    notes = run.reading_notes()
    out = Path(output) if output else run.path / DEFAULT_NAMES[fmt]
    if fmt == "pytest-benchmark":
        out.write_text(json.dumps(pytest_benchmark_json(run), indent=1) + "\n")
    elif fmt == "csv":
        load_frame(run.path).to_csv(out, index=False)
    else:
        if not (importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet")):
            raise ExportError("parquet export needs pyarrow or fastparquet: pip install pyarrow")
        load_frame(run.path).to_parquet(out, index=False)
    return out, notes
