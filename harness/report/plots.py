"""Report figures (matplotlib, Agg backend): drawn from report Groups, never from a measurement."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..results import write_atomic

if TYPE_CHECKING:
    from .model import Group

PLOTS_DIR = "plots"


def plot_paths(group: "Group") -> list[tuple[str, str]]:
    """(caption, path relative to the run directory) of the figures drawn for one comparison."""
    out = [(f"{group.title}: samples/s per framework (95% CI)", f"{PLOTS_DIR}/throughput-{group.slug}.png")]
    if len(group.batches()) > 1:
        out.append((f"{group.title}: samples/s against batch size", f"{PLOTS_DIR}/batch-{group.slug}.png"))
    return out


def startup_path(groups: Sequence["Group"]) -> tuple[str, str] | None:
    return ("First-step time (tracing, compilation) per framework", f"{PLOTS_DIR}/first-step.png") if groups else None


def _frameworks(groups: Sequence["Group"]) -> list[str]:
    return sorted({c.framework for g in groups for c in g.configs})


def _colours(frameworks: list[str]) -> dict[str, str]:
    palette = [f"C{i}" for i in range(10)]
    return {fw: palette[i % len(palette)] for i, fw in enumerate(frameworks)}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:  # no version stamp: same records, same bytes
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}))
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
    return path


def _throughput(group: "Group", colours: dict[str, str], path: Path) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np

    fws = sorted({c.framework for c in group.configs})
    batches = group.batches()
    fig, ax = plt.subplots(figsize=(min(10.0, max(4.0, 1.2 * len(batches) * len(fws) + 1.5)), 3.2))
    width = 0.8 / len(fws)
    for i, fw in enumerate(fws):
        xs, ys, lo, hi = [], [], [], []
        for j, b in enumerate(batches):
            for c in group.at(b):
                if c.framework == fw:
                    xs.append(j - 0.4 + width * (i + 0.5))
                    ys.append(c.samples_per_s)
                    lo.append(c.samples_per_s - c.ci[0])
                    hi.append(c.ci[1] - c.samples_per_s)
        ax.bar(xs, ys, width, yerr=np.array([lo, hi]), capsize=3, label=fw, color=colours[fw])
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("samples/s")
    ax.set_title(group.title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _batch_sweep(group: "Group", colours: dict[str, str], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for fw in sorted({c.framework for c in group.configs}):
        cs = [c for c in group.configs if c.framework == fw]
        ax.errorbar([c.batch_size for c in cs], [c.samples_per_s for c in cs],
                    yerr=[[c.samples_per_s - c.ci[0] for c in cs], [c.ci[1] - c.samples_per_s for c in cs]],
                    marker="o", capsize=3, label=fw, color=colours[fw])
    ax.set_xscale("log", base=2)
    ax.set_xticks(group.batches(), [str(b) for b in group.batches()])
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.set_ylabel("samples/s")
    ax.set_title(group.title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _first_step(groups: Sequence["Group"], colours: dict[str, str], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fws = _frameworks(groups)
    labels = [f"{g.model} {g.mode}" + ("" if len(g.batches()) == 1 else f" b={g.batches()[0]}")
              + (f" on {g.host}" if g.host else "") for g in groups]
    fig, ax = plt.subplots(figsize=(min(12.0, max(5.0, 0.5 * len(groups) * len(fws) + 1.5)), 3.4))
    width = 0.8 / len(fws)
    for i, fw in enumerate(fws):
        xs, ys = [], []
        for j, g in enumerate(groups):
            cs = [c for c in g.at(g.batches()[0]) if c.framework == fw]
            if cs:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(min(cs[0].first_step_s))
        ax.bar(xs, ys, width, label=fw, color=colours[fw])
    ax.set_xticks(range(len(groups)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("first step (s, log scale)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_plots(run_path: Path, groups: Sequence["Group"]) -> list[Path]:
    """Draw every figure that `plot_paths` and `startup_path` name; return the files written."""
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # names come from records: "$\\frac{$" is text, not TeX

    colours = _colours(_frameworks(groups))
    written = []
    for g in groups:
        for _, rel in plot_paths(g):
            draw = _batch_sweep if Path(rel).name.startswith("batch-") else _throughput
            written.append(draw(g, colours, run_path / rel))
    start = startup_path(groups)
    if start:
        written.append(_first_step(groups, colours, run_path / start[1]))
    return written
