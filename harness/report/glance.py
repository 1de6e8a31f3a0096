"""The answer at a glance: a heat map, one row per job and one column per framework, drawn first in
every report format.

`at_a_glance` is pure (records and report Groups in, a `Glance` of numbers and marks out); `draw_glance`
draws it with matplotlib like xfbench.harness.report.plots. A cell is the framework's throughput over the
fastest framework's on the same job (the "rel. speed" of the tables, from `vs_fastest`), marked "tied"
where the report calls it tied with the fastest (the fastest too, when something ties with it),
"contended" where its record warns of other processes on its CPUs or GPU, "1 process" where its CI
omits process-to-process spread; a case that failed, timed out or was skipped is a grey cell saying so.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..records import Record
from .hosts import host_labels
from .model import Glance, GlanceCell, GlanceRow, Group, group_key
from .plots import PLOTS_DIR, _save
from .verdict import CONTENDED_PREFIX, vs_fastest

GLANCE_FILE = f"{PLOTS_DIR}/at-a-glance.png"
GLANCE_CAPTION = "At a glance: each framework's speed relative to the fastest, per job (1.00 = fastest)"
NOT_MEASURED = {"failed": "failed", "timeout": "timed out", "skipped": "skipped"}  # status -> cell text, first first


def _row(group: Group, batch: int) -> dict[str, GlanceCell]:
    """The measured cells of one job: framework -> cell."""
    first = {}
    for c in group.at(batch):  # sorted fastest first: one config per framework, its fastest
        first.setdefault(c.framework, c)
    labels = {fw: vs_fastest(group, c) for fw, c in first.items()}
    tie = any(label == "tied" for _, label in labels.values())  # then the fastest is tied too
    cells = {}
    for fw, c in sorted(first.items()):
        speed, label = labels[fw]
        marks = (["only one"] if label == "only one measured" else
                 ["tied"] if label == "tied" or (label == "fastest" and tie) else [])
        if any(w.startswith(CONTENDED_PREFIX) for w in c.warnings):
            marks.append("contended")
        if c.processes == 1:
            marks.append("1 process")
        cells[fw] = GlanceCell(speed, tuple(marks))
    return cells


def at_a_glance(groups: Sequence[Group], records: Sequence[Record],
                run_host: Mapping[str, Any] | None = None) -> Glance:
    """One row per job (a comparison at one batch size, in the report's order), one cell per framework.

    Where the records come from several hosts a job is one host's (the groups are: `collect_groups` with
    the same `run_host`), so a row never compares frameworks measured on different machines.
    """
    titles = {g.key: g.title for g in groups}
    jobs: dict[tuple, dict[str, GlanceCell]] = {}
    order = list(NOT_MEASURED.values())
    for r, host in zip(records, host_labels(records, run_host)):  # the cases without a number keep their row
        if r.ok:
            continue
        key = group_key(r.case, host)
        titles.setdefault(key, Group(*key).title)
        cells = jobs.setdefault((key, r.case.batch_size), {})
        status = NOT_MEASURED.get(r.status, r.status)
        old = cells.get(r.case.framework)
        if old is None or order.index(status) < order.index(old.status):
            cells[r.case.framework] = GlanceCell(None, (), status)
    for g in groups:
        for b in g.batches():  # a measured process outweighs a failed one of the same case
            jobs.setdefault((g.key, b), {}).update(_row(g, b))
    frameworks = sorted({fw for cells in jobs.values() for fw in cells})
    rows = tuple(GlanceRow(f"{titles[key]} · batch {b}", dict(sorted(jobs[(key, b)].items())))
                 for key, b in sorted(jobs))
    return Glance(tuple(frameworks), rows)


def draw_glance(glance: Glance, path: Path) -> Path:
    """The heat map as a PNG: a sequential colour scale with 1.00 darkest, grey where nothing was measured."""
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # job and framework names come from records
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import Normalize

    fws, rows = list(glance.frameworks), list(glance.rows)
    # "1 process" on every measured cell says nothing per cell: the footnote says it once instead.
    measured = [c for r in rows for c in r.cells.values() if c.speed is not None]
    everywhere_one = bool(measured) and all("1 process" in c.marks for c in measured)
    cmap, norm = plt.get_cmap("YlGn").with_extremes(bad="#f6f6f6"), Normalize(vmin=0.0, vmax=1.0)  # linear: 0.5 is half the fastest's speed
    values = np.array([[r.cells[fw].speed if fw in r.cells and r.cells[fw].speed is not None else np.nan
                        for fw in fws] for r in rows], dtype=float)
    height = 1.9 + 0.36 * len(rows)
    fig, ax = plt.subplots(figsize=(4.4 + 1.45 * len(fws), height))
    image = ax.imshow(values, cmap=cmap, norm=norm, aspect="auto")
    for i, r in enumerate(rows):
        for j, fw in enumerate(fws):
            cell = r.cells.get(fw)
            if cell is None:  # the job was never planned for this framework
                ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="#999999")
                continue
            if cell.speed is None:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color="#d0d0d0"))
                ax.text(j, i, cell.status, ha="center", va="center", fontsize=7.5, style="italic", color="#444444")
                continue
            marks = [m for m in cell.marks if not (everywhere_one and m == "1 process")]
            dark = norm(cell.speed) > 0.6
            ax.text(j, i, f"{cell.speed:.2f}" + ("\n" + ", ".join(marks) if marks else ""), ha="center",
                    va="center", fontsize=7.5 if marks else 8.5, linespacing=1.1,
                    color="white" if dark else "black", fontweight="bold" if cell.speed == 1.0 else "normal")
    ax.set_xticks(range(len(fws)), fws, fontsize=9)
    ax.xaxis.tick_top()
    if len(rows) > 25:  # a tall map names its columns at the foot too
        ax.tick_params(labelbottom=True)
    ax.set_yticks(range(len(rows)), [r.job for r in rows], fontsize=8)
    ax.set_xticks(np.arange(-0.5, len(fws)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="both", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title("Speed relative to the fastest framework on each job (1.00 = fastest)", fontsize=10, pad=8)
    bar = fig.colorbar(image, ax=ax, shrink=min(1.0, 4.0 / height), pad=0.02, ticks=[0, 0.25, 0.5, 0.75, 1.0])
    bar.ax.tick_params(labelsize=8)
    bar.set_label("throughput / the fastest's", fontsize=8)
    notes = ("tied: not significantly different from the fastest (Mann-Whitney U p ≥ 0.05 or overlapping 95% CIs); "
             "contended: other processes used the case's CPUs or GPU; "
             + ("every case ran in 1 worker process, so its CI omits process-to-process spread"
                if everywhere_one else "1 process: the CI omits process-to-process spread")
             + "; grey: no number (failed, timed out or skipped); –: not in the run.")
    ax.xaxis.set_label_position("bottom")
    ax.set_xlabel(textwrap.fill(notes, max(60, int(1.45 * len(fws) * 18))), fontsize=7, color="#444444",
                  loc="left", labelpad=8)
    return _save(fig, path)
