"""Write a run's reports: every format of `xfbench.harness.report.formats`, results.csv and plots/*.png."""
from __future__ import annotations

from pathlib import Path

from ..results import RunDir, load_frame, write_atomic, write_text_atomic
from . import formats, plots
from .build import build_report
from .convergence import write_convergence_plots
from .glance import draw_glance


def write_reports(run_path: Path) -> dict[str, Path]:
    """Write every report format, results.csv and the plots into the run directory; return their paths."""
    run = RunDir(Path(run_path))
    report = build_report(run)
    written = plots.write_plots(run.path, report.groups)
    if report.convergence is not None:
        written += write_convergence_plots(run.path, run.records())
    if report.glance is not None and report.glance_plot is not None:
        written.append(draw_glance(report.glance, run.path / report.glance_plot[1]))
    for stale in set((run.path / plots.PLOTS_DIR).glob("*.png")) - set(written):
        stale.unlink()  # a figure of a comparison no longer in the records
    out = {}
    for fmt in formats.available():
        out[fmt.FILENAME] = run.path / fmt.FILENAME
        write_text_atomic(out[fmt.FILENAME], fmt.render(report, run.path))
    out["results.csv"] = run.path / "results.csv"
    frame = load_frame(run.path)
    write_atomic(out["results.csv"], lambda tmp: frame.to_csv(tmp, index=False))
    out.update({f"{plots.PLOTS_DIR}/{p.name}": p for p in written})
    return out
