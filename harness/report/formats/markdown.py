"""report.md: the Report rendered as GitHub-flavoured markdown (deterministic: golden-tested)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..model import Report, right_aligned

FILENAME = "report.md"


def _cell(v: object) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame, right: set[str] | None = None) -> list[str]:
    """A markdown table; the `right` columns (numbers) right-aligned, by default the report's (`right_aligned`)."""
    numeric = right_aligned if right is None else right.__contains__
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---:" if numeric(c) else "---" for c in df.columns) + "|"
    return [head, rule] + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]


def render(r: Report, run_path: Path | None = None) -> str:
    out = [f"![{r.glance_plot[0]}]({r.glance_plot[1]})", ""] if r.glance_plot else []  # the answer first
    out += [f"# {r.title}", ""]
    for line in r.intro:
        out += [line, ""]
    out += ["## Frameworks", ""] + md_table(r.frameworks) + [""]
    out += ["## Verdict: which toolbox is best?", "", r.verdict_method, ""]
    if len(r.verdict):
        out += md_table(r.verdict) + [""]
    out += [f"- **{q}:** {a}" for q, a in r.answers] + [""]
    if r.keras:
        out += [f"## {r.keras.title}", ""] + md_table(r.keras.table) + [""]
        out += [line for n in r.keras.notes for line in (n, "")]
    if r.by_host:
        out += [f"## {r.by_host.title}", ""] + md_table(r.by_host.table) + [""]
        out += [line for n in r.by_host.notes for line in (n, "")]
    if r.convergence:
        out += [f"## {r.convergence.title}", ""] + md_table(r.convergence.table) + [""]
        out += [line for n in r.convergence.notes for line in (n, "")]
        out += [f"![{cap}]({path})" for cap, path in r.convergence.plots] + [""]
    out += ["## Settings that differ between frameworks", ""]
    out += (md_table(r.settings) if len(r.settings) else ["None: every compared setting is the same."]) + [""]
    if r.roofline:
        out += [f"## {r.roofline.title}", ""] + md_table(r.roofline.table) + [""]
        out += [line for n in r.roofline.notes for line in (n, "")]
    out += ["## Results by job", "", r.method, ""]
    for s in r.sections:
        out += [f"### {s.title}", ""] + md_table(s.table) + [""]
        out += [n for n in s.notes] + ([""] if s.notes else [])
        out += [f"![{cap}]({path})" for cap, path in s.plots] + [""]
    if r.startup_plot:
        out += ["## Start-up", "", f"![{r.startup_plot[0]}]({r.startup_plot[1]})", ""]
    if r.warnings or r.not_measured or r.notes:
        out += ["## Warnings", ""]
        for heading, items in r.warnings:
            out += [f"### {heading}", ""] + [f"- ⚠ {i}" for i in items] + [""]
        for heading, df in r.not_measured:
            out += [f"### {heading}", ""] + md_table(df) + [""]
        out += [f"Note: {n}" for n in r.notes] + ([""] if r.notes else [])
    return "\n".join(out)
