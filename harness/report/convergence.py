"""The "Time to accuracy" section: runs to a target test accuracy (mode "converge"), one job per model, data set
and target, one row per framework over its seeds (the configuration's processes; docs/spec.md section 5.12).

Time to target is the training time (input pipeline included, evaluations excluded) at the first evaluation
whose test accuracy reached the target; its 95% CI is a bootstrap of the median over seeds. Parity: the
frameworks start from the same weights and see the same batches in the same order, so their test-loss
curves should stay together; the largest gap along them is reported, and a framework whose final accuracy
differs from the others' by more than the seed-to-seed spread is flagged.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..analysis.stats import median_ci
from ..records import Record
from .model import Section

TITLE = "Time to accuracy"


@dataclass(frozen=True)
class Job:
    """Records of one run-to-accuracy configuration, all frameworks: model, params, data set, target, batch."""

    model: str
    params: str
    dataset: str
    target: float
    batch_size: int
    optimizer: str
    device: str
    precision: str
    threads: int

    @property
    def title(self) -> str:
        extra = f" {self.params}" if self.params != "{}" else ""
        return (f"{self.model}{extra} on {self.dataset} to {self.target:g} · b={self.batch_size} · {self.optimizer} · "
                f"{self.device} · {self.precision} · {self.threads} thread{'s' if self.threads != 1 else ''}")

    @property
    def slug(self) -> str:
        tag = hashlib.sha1(self.title.encode()).hexdigest()[:6]
        return re.sub(r"[^a-z0-9]+", "-", f"{self.model}-{self.dataset}".lower()).strip("-") + f"-{tag}"


def _job(r: Record) -> Job:
    c, conv = r.case, r.case.convergence
    opt = c.optimizer + (f" {json.dumps(c.optimizer_params, sort_keys=True)}" if c.optimizer_params else "")
    return Job(c.model, json.dumps(c.model_params, sort_keys=True), conv.dataset, conv.target, c.batch_size, opt,
               c.device, c.precision, c.threads)


def jobs(records: Sequence[Record]) -> dict[Job, dict[str, list[Record]]]:
    """Job -> framework -> its ok run-to-accuracy records (one per seed), in seed order."""
    out: dict[Job, dict[str, list[Record]]] = {}
    for r in records:
        if r.ok and r.convergence is not None and r.case.convergence is not None:
            out.setdefault(_job(r), {}).setdefault(r.case.framework, []).append(r)
    for fws in out.values():
        for recs in fws.values():
            recs.sort(key=lambda r: r.case.process)
    return dict(sorted(out.items(), key=lambda kv: kv[0].title))


def _secs(x: float) -> str:
    return f"{x:,.1f}" if x >= 10 else f"{x:.2f}"


@dataclass(frozen=True)
class Row:
    framework: str
    seeds: int
    times: tuple[float, ...]  # time to target of the seeds that reached it
    steps: tuple[int, ...]
    final: tuple[float, ...]  # final test accuracy per seed
    input_share: tuple[float, ...]

    @property
    def reached_all(self) -> bool:
        return len(self.times) == self.seeds

    def time_ci(self) -> tuple[float, float, float] | None:
        if not self.reached_all:
            return None
        lo, hi = median_ci(list(self.times)) if len(self.times) > 1 else (self.times[0], self.times[0])
        return float(np.median(self.times)), lo, hi


def _rows(fws: dict[str, list[Record]]) -> list[Row]:
    rows = []
    for fw, recs in fws.items():
        conv = [r.convergence for r in recs]
        rows.append(Row(fw, len(recs), tuple(c["time_to_target_s"] for c in conv if c.get("time_to_target_s") is not None),
                        tuple(c["steps_to_target"] for c in conv if c.get("steps_to_target") is not None),
                        tuple(c["final_accuracy"] for c in conv), tuple(c["input_share"] or 0.0 for c in conv)))
    rank = {r.framework: (0, r.time_ci()[0]) if r.time_ci() else (1, -len(r.times)) for r in rows}
    return sorted(rows, key=lambda r: (rank[r.framework], r.framework))


def largest_gap(fws: dict[str, list[Record]]) -> tuple[float, int, str, str] | None:
    """The largest difference of test loss between two frameworks at one evaluation of the same seed:
    (gap, step, framework a, framework b); None with fewer than two frameworks."""
    best = None
    by_seed: dict[int, dict[str, dict[int, float]]] = {}
    for fw, recs in fws.items():
        for r in recs:
            by_seed.setdefault(r.case.process, {})[fw] = {p["step"]: p["test_loss"] for p in r.convergence["curve"]}
    for curves in by_seed.values():
        names = sorted(curves)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for step in sorted(set(curves[a]) & set(curves[b])):
                    gap = abs(curves[a][step] - curves[b][step])
                    if best is None or gap > best[0]:
                        best = (gap, step, a, b)
    return best


def outliers(rows: Sequence[Row]) -> tuple[list[str], float | None]:
    """Frameworks whose median final accuracy differs from the frameworks' common level (the median of every
    framework's median: one outlier cannot move it) by more than the seed-to-seed spread (the largest range of
    final accuracy over one framework's seeds), and that spread; none can be flagged without two seeds."""
    ranges = [max(r.final) - min(r.final) for r in rows if len(r.final) > 1]
    if not ranges or len(rows) < 2:
        return [], None
    spread = max(ranges)
    level = float(np.median([float(np.median(r.final)) for r in rows]))
    return [r.framework for r in rows if abs(float(np.median(r.final)) - level) > spread], spread


def fastest(rows: Sequence[Row]) -> tuple[str | None, str]:
    """The framework fastest to target on a job, and the sentence: a winner only when its CI overlaps no other's."""
    timed = [(r, r.time_ci()) for r in rows if r.time_ci()]
    if not timed:
        return None, "no framework reached the target in every seed"
    timed.sort(key=lambda t: t[1][0])
    (win, (med, lo, hi)), rest = timed[0], timed[1:]
    clear = all(hi < other[1] for _, other in rest)
    text = f"{win.framework} in {_secs(med)} s (95% CI {_secs(lo)}–{_secs(hi)} s, {win.seeds} seed{'s' if win.seeds > 1 else ''})"
    if not rest:
        return win.framework, text + "; the only framework that reached it in every seed"
    if clear:
        return win.framework, text + f"; next {rest[0][0].framework} in {_secs(rest[0][1][0])} s"
    return None, "no clear winner: " + "; ".join(f"{r.framework} {_secs(ci[0])} s ({_secs(ci[1])}–{_secs(ci[2])})"
                                                  for r, ci in timed) + " overlap"


def convergence_section(records: Sequence[Record]) -> tuple[Section | None, list[tuple[str, str]]]:
    """The section (None where the run has no run to accuracy) and the verdict's answers, one per job."""
    found = jobs(records)
    if not found:
        return None, []
    table, notes, answers, plots_ = [], [], [], []
    for job, fws in found.items():
        rows = _rows(fws)
        for r in rows:
            ci = r.time_ci()
            table.append({
                "job": job.title, "framework": r.framework, "seeds": r.seeds,
                "reached": f"{len(r.times)} of {r.seeds}",
                "time to target s": _secs(ci[0]) if ci else "-",
                "95% CI": f"{_secs(ci[1])}–{_secs(ci[2])}" if ci else "-",
                "steps to target": f"{np.median(r.steps):,.0f}" if r.steps else "-",
                "final accuracy": f"{np.median(r.final):.3f}",
                "input share": f"{np.median(r.input_share):.1%}",
            })
        _, answer = fastest(rows)
        answers.append((f"Fastest to target accuracy ({job.title})", answer))
        gap = largest_gap(fws)
        flagged, spread = outliers(rows)
        text = f"{job.title}: "
        text += (f"the largest test-loss gap between two frameworks on the same seed was {gap[0]:.3g} "
                 f"({gap[2]} vs {gap[3]} at step {gap[1]:,})" if gap else "one framework: no curves to compare")
        if spread is None:
            text += "; with one seed, no final accuracy can be told apart from seed-to-seed spread."
        elif flagged:
            text += (f"; ⚠ final accuracy of {', '.join(flagged)} differs from the frameworks' common level by "
                     f"more than the seed-to-seed spread ({spread:.3f}).")
        else:
            text += f"; every framework's final accuracy is within the seed-to-seed spread ({spread:.3f}) of the others'."
        notes.append(text)
        plots_ += [(f"{job.title}: test accuracy against training time", f"plots/convergence-{job.slug}-time.png"),
                   (f"{job.title}: test accuracy against steps", f"plots/convergence-{job.slug}-steps.png")]
    notes.insert(0, "Each framework trains from the canonical initial weights on the same examples in the same order "
                 "(seeded; one seed per worker process), with its own input pipeline (named in the manifest), and "
                 "is evaluated on the held-out set every eval_every steps. time to target is the training time at "
                 "the first evaluation that reached the target: the input pipeline is inside it, the evaluations "
                 "outside; its 95% CI is a bootstrap of the median over seeds. input share is the part of the "
                 "training time spent waiting for the next batch. A framework that missed the target in some seed "
                 "has no time (\"reached\" says how often it got there).")
    return Section(TITLE, pd.DataFrame(table), notes, plots_), answers


def write_convergence_plots(run_path: Path, records: Sequence[Record]) -> list[Path]:
    """Accuracy against training time and against steps, one line per framework and seed (seeds dotted)."""
    from . import plots
    import matplotlib.pyplot as plt
    written = []
    for job, fws in jobs(records).items():
        colours = plots._colours(sorted(fws))
        for axis, key, label in (("time", "train_s", "training time (s)"), ("steps", "step", "steps")):
            fig, ax = plt.subplots(figsize=(6, 3.4))
            for fw, recs in sorted(fws.items()):
                for r in recs:
                    curve = r.convergence["curve"]
                    ax.plot([p[key] for p in curve], [p["test_accuracy"] for p in curve], color=colours[fw],
                            linestyle="-" if r.case.process == 0 else ":", marker=".",
                            label=fw if r.case.process == 0 else None)
            ax.axhline(job.target, color="grey", linewidth=0.8, linestyle="--")
            ax.set_xlabel(label)
            ax.set_ylabel("test accuracy")
            ax.set_title(job.title, fontsize=8)
            ax.legend(fontsize=7)
            written.append(plots._save(fig, run_path / f"plots/convergence-{job.slug}-{axis}.png"))
    return written
