"""Print the results part of tests/gpu/check.sh's one-screen summary (standard library only).

    python tests/gpu/summarize.py OUTDIR

Reads OUTDIR/cases.jsonl (case statuses; reasons of skipped and failed cases) and OUTDIR/report.md
(its "Results by job" tables, cut to the columns that fit a screen). Either may be missing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("framework", "batch", "samples/s", "rel. speed", "vs fastest", "first step s", "step memory")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def results_tables(report: str) -> list[str]:
    """The "Results by job" section of report.md: each job's heading and rows, cut to COLUMNS, aligned.

    The column header is printed once, and again only where a job's table has other columns.
    """
    groups: list[tuple[str, list[str], list[list[str]]]] = []
    in_results = False
    for line in report.splitlines():
        if line.startswith("## "):
            in_results = line.startswith("## Results")
        elif in_results and line.startswith("### "):
            groups.append((line[4:].strip(), [], []))
        elif in_results and line.startswith("|") and groups:
            cells, (_, header, rows) = _cells(line), groups[-1]
            if not header:
                header.extend(cells)
            elif not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
    tables = []
    for heading, header, rows in groups:
        keep = [header.index(c) for c in COLUMNS if c in header] or list(range(min(7, len(header))))
        tables.append((heading, [header[i] for i in keep],
                       [[r[i] if i < len(r) else "" for i in keep] for r in rows]))
    width: dict[int, int] = {}
    for _, head, rows in tables:
        for r in [head, *rows]:
            for j, v in enumerate(r):
                width[j] = max(width.get(j, 0), len(v))
    out, last_head = [], None
    for heading, head, rows in tables:
        if head != last_head:
            out.append("    " + "  ".join(v.ljust(width[j]) for j, v in enumerate(head)).rstrip())
            last_head = head
        out.append("  " + heading)
        for r in rows:
            out.append("    " + "  ".join(v.ljust(width[j]) for j, v in enumerate(r)).rstrip())
    return out


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else ".")
    cases, report = out / "cases.jsonl", out / "report.md"
    if cases.is_file():
        records = []
        for line in cases.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        counts: dict[str, int] = {}
        for r in records:
            counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
        print(f"cases: {len(records)} recorded: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        for r in records:
            if r.get("status") != "ok":
                c = r.get("case", {})
                label = (f"{c.get('framework')} {c.get('model')} {c.get('mode')} b={c.get('batch_size')} "
                         f"{c.get('device')} {c.get('precision')}")
                reason = (r.get("reason") or "").splitlines()[0][:160] if r.get("reason") else ""
                print(f"  {r.get('status')}: {label}: {reason}")
    else:
        print("cases: no cases.jsonl (the run recorded nothing)")
    if report.is_file():
        lines = results_tables(report.read_text(errors="replace"))
        print("results by job (report.md, columns cut to fit):" if lines else "report.md has no results tables")
        for line in lines:
            print(line)
    else:
        print("no report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
