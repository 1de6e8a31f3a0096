"""`bench`: a thin command-line shell over plain functions (click for parsing, rich for display)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .adapter import AdapterInfo, discover
from .case import DEVICES, MODES, Case
from .host import host_info
from .models import MODELS, SpecError, build_spec
from .optimizers import OPTIMIZERS
from .results import ResultsError, RunDir
from .runner import pending_cases, plan_for_meta, run_cases
from .suites import Overrides, SuiteError, available_suites, expand, find_suite, load_suite
from .validate import validation_lookup

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class BenchError(click.ClickException):
    """A one-line error about the user's input; exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        err_console.print(f"[bold red]error:[/] {self.format_message()}", soft_wrap=True)


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def plan(suite_name: str, *, frameworks: str | None = None, models: str | None = None, modes: str | None = None,
         batch_sizes: str | None = None, device: str | None = None, threads: int | None = None,
         registry: dict[str, AdapterInfo] | None = None) -> tuple[Any, list[Case]]:
    """Load a suite and narrow it by the command-line options; every input error is a BenchError."""
    registry = registry if registry is not None else discover()
    try:
        fws = _csv(frameworks)
        for fw in fws or []:
            if fw not in registry:
                raise BenchError(f"unknown framework {fw!r}; registered: {', '.join(registry)} "
                                 "(see `bench list frameworks`)")
        ms = _csv(models)
        for m in ms or []:
            if m not in MODELS:
                raise BenchError(f"unknown model {m!r}; choose one of {', '.join(MODELS)}")
        md = _csv(modes)
        for m in md or []:
            if m not in MODES:
                raise BenchError(f"unknown mode {m!r}; choose train or infer")
        bs = None
        if batch_sizes:
            try:
                bs = [int(b) for b in _csv(batch_sizes)]
            except ValueError:
                raise BenchError(f"--batch-sizes takes positive integers like 16,64; got {batch_sizes!r}") from None
            if any(b <= 0 for b in bs):
                raise BenchError(f"--batch-sizes must be positive integers; got {batch_sizes!r}")
        if threads is not None and threads < 0:
            raise BenchError("--threads must be >= 0 (0 means every available CPU)")
        suite = load_suite(suite_name, registry)
        over = Overrides(frameworks=fws, models=ms, modes=md, batch_sizes=bs, device=device, threads=threads)
        cases = expand(suite, registry, over)
        for c in cases:
            build_spec(c.model, **c.model_params)
    except (SuiteError, SpecError) as e:
        raise BenchError(str(e)) from None
    if not cases:
        raise BenchError(f"suite {suite_name!r} with these options has no case to run; widen the filters")
    return suite, cases


class RichProgress:
    """Live display: case i of N, the case running, elapsed and time left; one line per finished case."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task = progress.add_task("starting", total=None)

    def started(self, index: int, total: int, case: Case) -> None:
        self.progress.update(self.task, total=total, completed=index - 1, description=case.label())

    def finished(self, index: int, total: int, case: Case, record: dict[str, Any]) -> None:
        self.progress.update(self.task, completed=index)
        if record["status"] == "ok":
            m = record["metrics"]
            lo, hi = m["samples_per_s_ci"]
            note = f"[green]{m['samples_per_s']:,.1f}[/] samples/s (95% CI {lo:,.1f}–{hi:,.1f})"
            if record["warnings"]:
                note += f" [yellow]⚠ {record['warnings'][0]}[/]"
        else:
            colour = "yellow" if record["status"] == "skipped" else "red"
            note = f"[{colour}]{record['status']}[/]: {record['reason']}"
        self.progress.console.print(f"[{index}/{total}] {case.label()}: {note}", soft_wrap=True)


def summary_table(records: list[dict[str, Any]]) -> Table:
    t = Table(title="xfbench results", show_lines=False)
    for col, just in (("framework", "left"), ("model", "left"), ("mode", "left"), ("batch", "right"),
                      ("samples/s", "right"), ("95% CI", "right"), ("status", "left")):
        t.add_column(col, justify=just)
    for r in sorted(records, key=lambda r: (r["case"]["model"], r["case"]["mode"], r["case"]["batch_size"],
                                            r["case"]["framework"])):
        c, m = r["case"], r["metrics"]
        ok = r["status"] == "ok"
        t.add_row(c["framework"], c["model"], c["mode"], str(c["batch_size"]),
                  f"{m['samples_per_s']:,.1f}" if ok else "-",
                  f"{m['samples_per_s_ci'][0]:,.1f}–{m['samples_per_s_ci'][1]:,.1f}" if ok else "-",
                  r["status"] if ok or not r["reason"] else f"{r['status']}: {r['reason'][:60]}")
    return t


def execute(suite: Any, cases: list[Case], out: Path, registry: dict[str, AdapterInfo], argv: list[str],
            show_progress: bool = True, gate: dict[str, dict] | None = None) -> tuple[RunDir, Any]:
    """Create the run directory, run every case, write run.json and the reports."""
    from .report import write_reports

    try:
        run = RunDir.create(out, suite.name)
    except OSError as e:
        raise BenchError(f"cannot create a run directory under {out}: {e.strerror}; choose a writable --out") from None
    meta = {"suite": suite.name, "suite_path": str(suite.path), "description": suite.description,
            "command": argv, "started": time.time(), "finished": None, "interrupted": False,
            "planned_cases": len(cases), "plan": plan_for_meta(cases), "host": host_info()}
    try:
        run.write_meta(meta)
    except OSError as e:  # nothing half-written: a run directory without run.json is no run
        import shutil
        shutil.rmtree(run.path, ignore_errors=True)
        raise BenchError(f"cannot write {run.path / 'run.json'}: {e.strerror}; choose a writable --out") from None
    summary = _run_with_progress(cases, run, registry, show_progress, validation_lookup(out, registry, gate))
    meta.update(finished=time.time(), interrupted=summary.interrupted)
    run.write_meta(meta)
    write_reports(run.path)
    return run, summary


def _run_with_progress(cases: list[Case], run: RunDir, registry: dict[str, AdapterInfo], show_progress: bool,
                       validation: Any = None) -> Any:
    if not show_progress:
        return run_cases(cases, run, registry, validation=validation)
    columns = (TextColumn("case"), MofNCompleteColumn(), BarColumn(bar_width=20), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=True) as p:
        return run_cases(cases, run, registry, RichProgress(p), validation=validation)


def resume(run_path: Path, registry: dict[str, AdapterInfo], argv: list[str],
           show_progress: bool = True) -> tuple[RunDir, Any, int]:
    """Continue an interrupted run: keep its records, run its planned cases that have none, in order."""
    from .report import write_reports

    try:
        run = RunDir.open(run_path)
        run.lock()  # refuses a run that another bench process is still writing
        repaired = run.repair()
        cases, planned = pending_cases(run)
        meta = run.meta()
        meta.setdefault("resumed", []).append({"started": time.time(), "command": argv})
        meta.update(finished=None, interrupted=False)
        run.write_meta(meta)
    except (ResultsError, OSError) as e:
        raise BenchError(f"cannot resume {run_path}: {e}") from None
    if repaired:
        err_console.print(f"[yellow]repaired:[/] {repaired}", soft_wrap=True)
    console.print(f"resuming {run.path}: {planned - len(cases)} of {planned} cases recorded, {len(cases)} to run")
    summary = _run_with_progress(cases, run, registry, show_progress, validation_lookup(run.path.parent, registry))
    meta.update(finished=time.time(), interrupted=summary.interrupted)
    run.write_meta(meta)
    run.unlock()
    write_reports(run.path)
    return run, summary, planned


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xfbench")
def main() -> None:
    """xfbench: which deep-learning toolbox is best for this job? Measured, fairly."""


def _check_resume_alone(suite: str | None) -> None:
    """--resume continues a run as planned: a suite or a filter beside it is a mistake, not a wish."""
    ctx = click.get_current_context()
    given = ["SUITE"] if suite is not None else []
    given += [f"--{p.name.replace('_', '-')}" for p in ctx.command.params
              if p.name not in ("suite", "resume_dir")
              and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise BenchError(f"--resume continues the run as it was planned; drop {', '.join(given)}")


@main.command()
@click.argument("suite", required=False)
@click.option("--frameworks", help="Comma-separated adapter names (replaces the suite's).")
@click.option("--models", help="Comma-separated models to keep.")
@click.option("--modes", help="train, infer or both (comma-separated) to keep.")
@click.option("--batch-sizes", help="Comma-separated batch sizes (replaces the suite's).")
@click.option("--device", type=click.Choice(DEVICES), help="Device for every case.")
@click.option("--threads", type=int, help="CPU threads per worker (0 = all available).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"),
              show_default=True, help="Directory that receives the run directory.")
@click.option("--dry-run", is_flag=True, help="List the cases in run order; run nothing.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue the interrupted run in this directory: keep its records, run the rest.")
@click.option("--validate", "validate_first", is_flag=True,
              help="Check each adapter's float32 forward against the NumPy reference first; time only those that pass.")
def run(suite: str | None, frameworks: str | None, models: str | None, modes: str | None, batch_sizes: str | None,
        device: str | None, threads: int | None, out: Path, dry_run: bool, resume_dir: Path | None,
        validate_first: bool) -> None:
    """Run SUITE (a name in suites/ or a path to a .toml file; default: quick)."""
    registry = discover()
    t0 = time.perf_counter()
    if resume_dir is not None:
        _check_resume_alone(suite)
        run_dir, summary, total = resume(resume_dir, registry, sys.argv)
        records = run_dir.records()
    else:
        suite_obj, cases = plan(suite or "quick", frameworks=frameworks, models=models, modes=modes,
                                batch_sizes=batch_sizes, device=device, threads=threads, registry=registry)
        if dry_run:
            for i, c in enumerate(cases, 1):
                console.print(f"{i:4d}  {c.label()}")
            console.print(f"{len(cases)} cases from {suite_obj.path}")
            return
        gate = None
        if validate_first:
            from .validate import forward_gate
            console.print("checking the float32 forward of each adapter against the NumPy reference ...")
            gate = forward_gate(cases, registry)
            for key, v in sorted(gate.items()):
                if v["status"] == "failed":
                    err_console.print(f"[red]{key.rsplit('/', 1)[0]} failed validation[/] ({v['failed_check']}); "
                                      "its cases are not timed", soft_wrap=True)
        run_dir, summary = execute(suite_obj, cases, out, registry, sys.argv, gate=gate)
        records, total = summary.records, len(cases)
    if summary.orphans_killed:
        err_console.print(f"killed {len(summary.orphans_killed)} process(es) left behind by an interrupted run")
    console.print(summary_table(records))
    bad = [r for r in records if r["status"] in ("failed", "timeout")]
    console.print(f"{len(records)} of {total} cases recorded ({len(summary.records)} in "
                  f"{time.perf_counter() - t0:.0f} s); report: {run_dir.path / 'report.md'}")
    if summary.interrupted:
        err_console.print(f"interrupted: {len(records)} finished cases kept in {run_dir.path}; "
                          f"continue with: bench run --resume {run_dir.path}", soft_wrap=True)
        sys.exit(130)
    if bad:
        err_console.print(f"[red]{len(bad)} case(s) failed or timed out[/]; reasons in {run_dir.path / 'report.md'}")
        sys.exit(1)


@main.command()
@click.option("--models", help="Comma-separated models (default: all).")
@click.option("--frameworks", help="Comma-separated adapters (default: every installed framework and numpy).")
@click.option("--optimizers", help="Comma-separated optimizers for the 3-step check (default: all six).")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path),
              help="Write weights.npz, inputs.npz and <framework>.npz per model here, and curves.png.")
@click.option("--tiny", is_flag=True, help="Tiny model sizes (seconds) instead of the spec's defaults.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True,
              help="Directory whose .validation.json remembers the outcome for `bench run`.")
def validate(models: str | None, frameworks: str | None, optimizers: str | None, artifacts: Path | None,
             tiny: bool, out: Path) -> None:
    """Check that every framework computes the same numbers (SPEC section 6); exit 1 on any failure."""
    from .validate import CACHE_FILE, ValidateError, describe_failure, validate as validate_fn, write_cache
    from .validate_report import WIDTH, curve_table, matrix_table, plot_curves

    registry = discover()
    t0 = time.perf_counter()
    try:
        result = validate_fn(registry=registry, models=_csv(models), frameworks=_csv(frameworks),
                             optimizers=_csv(optimizers), artifacts=artifacts, tiny=tiny)
    except (ValidateError, SpecError) as e:
        raise BenchError(str(e)) from None
    except OSError as e:
        raise BenchError(f"cannot write the validation files: {e}") from None
    for fw, why in result.skipped.items():
        err_console.print(f"[yellow]skipped {fw}[/]: {why}")
    wide = Console(highlight=False, width=max(console.width, WIDTH))  # the matrix is wider than a pipe's 80
    wide.print(matrix_table(result))
    if result.curves:
        wide.print(curve_table(result))
    if artifacts and plot_curves(result, artifacts / "curves.png"):
        console.print(f"artifacts and curves.png in {artifacts}")
    write_cache(out / CACHE_FILE, result, registry, "tiny" if tiny else "default")
    console.print(f"{'passed' if result.passed else 'FAILED'} in {time.perf_counter() - t0:.0f} s")
    if not result.passed:
        for c in result.checks:
            if not c.passed:
                err_console.print(f"[red]{c.model} {c.framework}[/] {describe_failure(c)}", soft_wrap=True)
        sys.exit(1)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
def report(run_dir: Path) -> None:
    """Regenerate the reports of RUN_DIR from its stored records."""
    from .report import write_reports

    try:
        paths = write_reports(run_dir)
    except (ResultsError, OSError) as e:
        raise BenchError(str(e)) from None
    console.print("\n".join(str(p) for p in paths.values()), soft_wrap=True)


@main.command()
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--fail-above", type=float, metavar="PCT",
              help="Exit 1 if any significant slowdown of B against A exceeds PCT percent (a regression gate).")
def compare(run_a: Path, run_b: Path, fail_above: float | None) -> None:
    """Compare every case measured in both RUN_A and RUN_B (B against A), from stored records."""
    from .compare import CompareError, compare as compare_fn

    if fail_above is not None and fail_above < 0:
        raise BenchError(f"--fail-above takes a percentage >= 0; got {fail_above:g}")
    try:
        text, code = compare_fn(run_a, run_b, fail_above=fail_above)
    except (ResultsError, CompareError, OSError) as e:
        raise BenchError(str(e)) from None
    click.echo(text, nl=False)
    sys.exit(code)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["pytest-benchmark", "csv", "parquet"]), required=True,
              help="pytest-benchmark: JSON for `pytest-benchmark compare`; csv, parquet: one row per case record.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: pytest-benchmark.json, cases.csv or cases.parquet in RUN_DIR).")
def export(run_dir: Path, fmt: str, output: Path | None) -> None:
    """Export RUN_DIR's stored records for other tools."""
    from .export import ExportError, export as export_fn

    try:
        path = export_fn(run_dir, fmt, output)
    except (ResultsError, ExportError, OSError) as e:
        raise BenchError(str(e)) from None
    console.print(str(path), soft_wrap=True)


@main.command("list")
@click.argument("what", type=click.Choice(["suites", "models", "frameworks", "optimizers"]), default="frameworks")
def list_(what: str) -> None:
    """List suites, models, frameworks (adapters) or optimizers."""
    t = Table(box=None)
    if what == "frameworks":
        for col in ("adapter", "framework", "installed", "versions", "about"):
            t.add_column(col)
        for name, info in discover().items():
            missing = info.missing()
            t.add_row(name, info.framework, "yes" if not missing else f"no ({', '.join(missing)} missing)",
                      ", ".join(f"{k} {v}" for k, v in info.versions().items()) or "-", info.summary)
    elif what == "models":
        for col in ("model", "parameters", "forward GFLOP/sample", "hyper-parameters", "about"):
            t.add_column(col)
        for name, mdef in MODELS.items():
            spec = build_spec(name)
            t.add_row(name, f"{spec.parameter_count():,}", f"{spec.forward_flops() / 1e9:.4f}",
                      ", ".join(f"{k}={v}" for k, v in mdef.defaults.items()), mdef.summary)
    elif what == "optimizers":
        t.add_column("optimizer")
        t.add_column("defaults")
        for name, params in OPTIMIZERS.items():
            t.add_row(name, ", ".join(f"{k}={v}" for k, v in params.items()))
    else:
        t.add_column("suite")
        t.add_column("description")
        from .suites import load_suite as _load
        for name in available_suites():
            try:
                desc = _load(name, discover()).description
            except SuiteError as e:
                desc = f"(invalid: {e})"
            t.add_row(name, desc)
    console.print(t)


@main.command()
def env() -> None:
    """Show the host and the frameworks this machine can run."""
    for k, v in host_info().items():
        console.print(f"{k:16s} {v}")
    for name, info in discover().items():
        missing = info.missing()
        state = ", ".join(f"{k} {v}" for k, v in info.versions().items()) if not missing else "not installed"
        console.print(f"{'adapter ' + name:16s} {state}")


if __name__ == "__main__":  # pragma: no cover
    main()
