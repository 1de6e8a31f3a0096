"""`bench compare RUN_A RUN_B`: every configuration measured in both runs, B against A, from stored records.

A configuration is matched on its case config without the measurement knobs (`measure`,
`case_timeout_s`), the process index and how the process started (`process_start`); its processes are pooled.
An adapter that a run holds in one framework environment only is matched on its own name (`torch@torch-2-12`
in A against `torch` in B: "did the upgrade make my model slower?"), and versions that differ are listed. Significance follows
`xfbench.harness.analysis.significance` (Mann-Whitney U p < 0.05 and non-overlapping 95% CIs of the medians).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.significance import Comparison, compare_times, geomean_speedup
from ..analysis.stats import floor_ci, grouped_median_ci, median_floor, process_spread
from ..envs import split
from ..errors import XfbenchError
from ..records import Record
from ..results import RunDir
from .formats.markdown import md_table

# process_start too, as in Case.config_id: a forked and an exec'd process (a Ray run's) measure the same case.
IGNORED_CASE_KEYS = ("measure", "case_timeout_s", "process", "process_start")


class CompareError(XfbenchError, ValueError):
    """Two runs that cannot be compared (nothing measured in both)."""


@dataclass(frozen=True)
class CaseDiff:
    label: str
    a_per_s: float  # samples/s in run A
    b_per_s: float
    a_times_s: tuple[float, ...]
    b_times_s: tuple[float, ...]
    comparison: Comparison  # B against A
    a_groups: tuple[tuple[float, ...], ...]  # the times split by worker process
    b_groups: tuple[tuple[float, ...], ...]
    floors: tuple[float | None, float | None] = (None, None)  # stats.median_floor of A's and B's median

    @property
    def slowdown_pct(self) -> float:
        """How much longer a step takes in B than in A, in percent (negative: B is faster)."""
        return (1 / self.comparison.speedup - 1) * 100


@dataclass
class RunComparison:
    a: str
    b: str
    diffs: list[CaseDiff]
    only_a: list[str]
    only_b: list[str]
    notes: list[str] = field(default_factory=list)  # lines of either run that were skipped
    spreads: dict[str, float | None] = field(default_factory=dict)  # device -> pooled process spread

    def regressions(self, pct: float) -> list[CaseDiff]:
        """Significant slowdowns of more than `pct` percent."""
        return [d for d in self.diffs if d.comparison.significant and d.slowdown_pct > pct]


def _identity(rec: Record, alone: set[str] = frozenset()) -> str:
    """The configuration, as JSON; an adapter of `alone` (the only one of its name in its run) without `@env`."""
    d = {k: v for k, v in rec.case.to_dict().items() if k not in IGNORED_CASE_KEYS}
    if d["framework"] in alone:
        d["framework"] = split(d["framework"])[0]
    return json.dumps(d, sort_keys=True)


def _alone(records: list[Record]) -> set[str]:
    """Adapters the run holds in one environment only (`torch@x` without `torch` or `torch@y` beside it)."""
    by_base: dict[str, set[str]] = {}
    for r in records:
        by_base.setdefault(split(r.case.framework)[0], set()).add(r.case.framework)
    return {next(iter(names)) for names in by_base.values() if len(names) == 1}


def _versions(records: list[Record], alone: set[str]) -> dict[str, str]:
    """adapter (as matched) -> its versions and environment, as its first ok record says."""
    out: dict[str, str] = {}
    for r in records:
        key = split(r.case.framework)[0] if r.case.framework in alone else r.case.framework
        if key not in out:
            env = (r.manifest.get("environment") or {}).get("name")
            out[key] = ", ".join(f"{k} {v}" for k, v in (r.manifest.get("versions") or {}).items() if v) \
                + (f" (environment {env})" if env and env != "main" else "")
    return out


def _pooled(run: RunDir, versions: dict[str, str] | None = None) -> dict[str, tuple[str, int, tuple[tuple[float, ...], ...]]]:
    """identity -> (label, batch size, per-step times of each ok process); fills `versions` (_versions)."""
    out: dict[str, tuple[str, int, tuple[tuple[float, ...], ...]]] = {}
    records = [r for r in run.records() if r.ok and r.samples_s]
    alone = _alone(records)
    if versions is not None:
        versions.update(_versions(records, alone))
    for r in records:
        key = _identity(r, alone)
        label, b, groups = out.get(key, (r.case.label(), r.case.batch_size, ()))
        out[key] = (label, b, groups + (tuple(r.samples_s),))
    return out


def compare_runs(run_a: Path, run_b: Path) -> RunComparison:
    a, b = RunDir(Path(run_a)), RunDir(Path(run_b))
    a.meta(), b.meta()  # refuse anything that is not a run directory
    va: dict[str, str] = {}
    vb: dict[str, str] = {}
    pa, pb = _pooled(a, va), _pooled(b, vb)
    # The process-to-process spread per device, pooled over every configuration of both runs
    # (stats.process_spread): no CI is narrower than it allows, however closely a configuration's own
    # two processes agreed.
    spreads = {}
    for key in pa.keys() | pb.keys():
        spreads.setdefault(json.loads(key)["device"], []).extend(p[key][2] for p in (pa, pb) if key in p)
    spread = {device: process_spread(groups) for device, groups in spreads.items()}
    diffs = []
    for key in sorted(pa.keys() & pb.keys(), key=lambda k: pa[k][0]):
        label, batch, ga = pa[key]
        gb = pb[key][2]
        device_spread = spread[json.loads(key)["device"]]
        ta, tb = tuple(t for g in ga for t in g), tuple(t for g in gb for t in g)
        # Several processes: the CIs resample processes first, so process-to-process spread counts.
        floors = median_floor(device_spread, len(ga)), median_floor(device_spread, len(gb))
        ci_a = floor_ci(float(np.median(ta)), grouped_median_ci(ga), floors[0])
        ci_b = floor_ci(float(np.median(tb)), grouped_median_ci(gb), floors[1])
        comparison = compare_times(ta, tb, ci_a=ci_a, ci_b=ci_b)
        diffs.append(CaseDiff(label, batch / float(pd.Series(ta).median()), batch / float(pd.Series(tb).median()),
                              ta, tb, comparison, ga, gb, floors))
    if not diffs:
        raise CompareError(f"no configuration was measured in both {a.path} and {b.path}; "
                           "compare runs of the same suite")
    notes = [f"{name}: {n}" for name, run in (("A", a), ("B", b)) for n in run.reading_notes()]
    compared = {json.loads(k)["framework"] for k in pa.keys() & pb.keys()}
    notes += [f"Versions of {fw}: A {va[fw] or '?'}; B {vb[fw] or '?'}."
              for fw in sorted(compared) if va.get(fw) != vb.get(fw)]
    return RunComparison(str(a.path), str(b.path), diffs, sorted(pa[k][0] for k in pa.keys() - pb.keys()),
                         sorted(pb[k][0] for k in pb.keys() - pa.keys()), notes, spread)


def _when(run: str) -> str:
    started = RunDir(Path(run)).meta().started
    return dt.datetime.fromtimestamp(started, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if started else "?"


def render_comparison(rc: RunComparison, fail_above: float | None = None) -> str:
    """Markdown: one row per configuration, a summary line and, with `fail_above`, the gate's result."""
    rows = [{"case": d.label, "A samples/s": f"{d.a_per_s:,.1f}", "B samples/s": f"{d.b_per_s:,.1f}",
             "B vs A": d.comparison.label(), "p": f"{d.comparison.p_value:.3g}"} for d in rc.diffs]
    lines = [f"A: {rc.a} ({_when(rc.a)})", f"B: {rc.b} ({_when(rc.b)})", ""]
    lines += md_table(pd.DataFrame(rows), right={"A samples/s", "B samples/s", "p"})
    faster = sum(d.comparison.significant and d.comparison.speedup >= 1 for d in rc.diffs)
    slower = sum(d.comparison.significant and d.comparison.speedup < 1 for d in rc.diffs)
    geo, lo, hi = geomean_speedup([(d.a_groups, d.b_groups) for d in rc.diffs], floors=[d.floors for d in rc.diffs])
    lines += ["", f"{len(rc.diffs)} configurations in both runs: {faster} faster in B, {slower} slower in B, "
              f"{len(rc.diffs) - faster - slower} not significant (Mann-Whitney U p < 0.05 and non-overlapping "
              f"95% CIs of the medians). Geometric mean speed of B relative to A: {geo:.2f}x "
              f"(95% CI {lo:.2f}–{hi:.2f})."]
    spreads = [f"{s:.1%} ({device})" for device, s in sorted(rc.spreads.items()) if s is not None]
    if spreads:
        lines.append("Process-to-process spread, pooled over every configuration of both runs: " + ", ".join(spreads)
                     + " (SD of the log of a process's median step time); no CI is narrower than it allows.")
    for name, only in (("A", rc.only_a), ("B", rc.only_b)):
        if only:
            lines.append(f"Only in {name} ({len(only)}): " + "; ".join(only) + ".")
    lines += rc.notes
    if fail_above is not None:
        bad = rc.regressions(fail_above)
        lines.append(f"Regression gate (--fail-above {fail_above:g}%): " + (
            "passed, no significant slowdown above it." if not bad else
            f"FAILED, {len(bad)} significant slowdown(s): "
            + "; ".join(f"{d.label} ({d.slowdown_pct:.1f}% slower)" for d in bad) + "."))
    return "\n".join(lines) + "\n"


def compare(run_a: Path, run_b: Path, *, fail_above: float | None = None) -> tuple[str, int]:
    """The `bench compare` command as a function: (text, exit code: 1 when the gate fails, else 0)."""
    rc = compare_runs(run_a, run_b)
    return render_comparison(rc, fail_above), 1 if fail_above is not None and rc.regressions(fail_above) else 0
