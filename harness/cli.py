"""`bench`: a thin command-line shell over plain functions (click for parsing, rich for display)."""
from __future__ import annotations

import os
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import session
from .adapter import discover, discover_all
from .case import DEVICES, Case
from .errors import XfbenchError
from .measure.host import host_info
from .measure.runner import Progress as RunProgress
from .models import MODELS, build_spec
from .optimizers import OPTIMIZERS
from .plan.suites import SuiteError, available_suites, load_suite
from .records import Record

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class _Bench(click.Group):
    """The `bench` group: every `XfbenchError` becomes one line on stderr and exit code 2, here only."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except XfbenchError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            raise click.exceptions.Exit(2) from None


class RichProgress:
    """Live display: case i of N, the case running, elapsed and time left; one line per finished case."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task = progress.add_task("starting", total=None)

    def started(self, index: int, total: int, case: Case) -> None:
        self.progress.update(self.task, total=total, completed=index - 1, description=case.label())

    def finished(self, index: int, total: int, case: Case, record: Record) -> None:
        self.progress.update(self.task, completed=index)
        if record.ok and record.convergence is not None:  # a run to accuracy: its time to target
            conv = record.convergence
            note = (f"[green]{conv['target']:g} reached in {conv['time_to_target_s']:,.2f} s[/] of training "
                    f"({conv['steps_to_target']:,} steps)" if conv.get("time_to_target_s") is not None else
                    f"[yellow]{conv['target']:g} not reached[/] (final accuracy {conv['final_accuracy']:.3f})")
        elif record.ok:
            m = record.metrics
            lo, hi = m.samples_per_s_ci
            note = f"[green]{m.samples_per_s:,.1f}[/] samples/s (95% CI {lo:,.1f}–{hi:,.1f})"
        if record.ok:
            if record.warnings and record.convergence is None:
                note += f" [yellow]⚠ {escape(record.warnings[0])}[/]"
        else:
            colour = "yellow" if record.status == "skipped" else "red"
            note = f"[{colour}]{record.status}[/]: {escape(record.reason or '')}"
        self.progress.console.print(f"[{index}/{total}] {escape(case.label())}: {note}", soft_wrap=True)


def summary_table(records: list[Record]) -> Table:
    t = Table(title="xfbench results", show_lines=False)
    for col, just in (("framework", "left"), ("model", "left"), ("mode", "left"), ("batch", "right"),
                      ("samples/s", "right"), ("95% CI", "right")):
        t.add_column(col, justify=just)
    t.add_column("status", overflow="fold")  # a failure's reason wraps, never cut: it is what the user acts on
    for r in sorted(records, key=lambda r: (r.case.model, r.case.mode, r.case.batch_size, r.case.framework)):
        c, m = r.case, r.metrics
        t.add_row(escape(c.framework), c.model, c.mode, str(c.batch_size),
                  f"{m.samples_per_s:,.1f}" if r.ok else "-",
                  f"{m.samples_per_s_ci[0]:,.1f}–{m.samples_per_s_ci[1]:,.1f}" if r.ok else "-",
                  r.status if r.ok or not r.reason else escape(f"{r.status}: {r.reason.strip().splitlines()[0]}"))
    return t


@contextmanager
def _progress(show: bool) -> Iterator[RunProgress | None]:
    """The live display while cases run: case i of N, the case running, elapsed and time left."""
    if not show:
        yield None
        return
    columns = (TextColumn("case"), MofNCompleteColumn(), BarColumn(bar_width=20), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=True) as p:
        yield RichProgress(p)


@click.group(cls=_Bench, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xfbench")
def main() -> None:
    """xfbench: which deep-learning toolbox is best for this job? Measured, fairly."""


def _check_resume_alone(suite: str | None) -> None:
    """--resume continues a run as planned: a suite or a filter beside it is a mistake, not a wish."""
    ctx = click.get_current_context()
    given = ["SUITE"] if suite is not None else []
    given += [f"--{p.name.replace('_', '-')}" for p in ctx.command.params
              if p.name not in ("suite", "resume_dir", "retry_failed", "address")  # a cluster can move
              and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise session.InputError(f"--resume continues the run as it was planned; drop {', '.join(given)}")


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
@click.option("--retry-failed", is_flag=True,
              help="With --resume: also run again the cases that failed or timed out (a full disk, a killed worker).")
@click.option("--forward-check", "--validate", "forward_check", is_flag=True,
              help="Check each adapter's float32 forward against the NumPy reference first; time only those that "
                   "pass (--validate is the older name).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the cases run: this machine, or a Ray cluster (one case per node at a time; docs/cluster.md).")
@click.option("--address", help="With --executor ray: the cluster's address (ray start --head prints it); "
                                "default: a Ray instance started on this machine.")
@click.option("--gpu-type", help="With --executor ray: the GPU type CUDA cases ask for (Ray's accelerator_type, "
                                 "e.g. H100).")
def run(suite: str | None, frameworks: str | None, models: str | None, modes: str | None, batch_sizes: str | None,
        device: str | None, threads: int | None, out: Path, dry_run: bool, resume_dir: Path | None,
        retry_failed: bool, forward_check: bool, executor: str, address: str | None, gpu_type: str | None) -> None:
    """Run SUITE (a name in suites/ or a path to a .toml file; default: quick)."""
    registry = discover()
    t0 = time.perf_counter()
    if resume_dir is None and executor == "local" and (address or gpu_type):
        raise session.InputError(f"{'--address' if address else '--gpu-type'} goes with --executor ray; add it, "
                                 "or drop the option")

    def warn_line(line: str) -> None:
        err_console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)

    if resume_dir is not None:
        _check_resume_alone(suite)
        state = session.reopen(resume_dir, sys.argv, retry_failed=retry_failed)
        if state.repaired:
            err_console.print(f"[yellow]repaired:[/] {escape(state.repaired)}", soft_wrap=True)
        console.print(f"resuming {escape(str(state.run.path))}: {state.planned - len(state.cases)} of "
                      f"{state.planned} cases recorded, {len(state.cases)} to run", soft_wrap=True)
        _warn_if_not_validated(state.cases, registry)
        with _progress(True) as progress:
            outcome = session.resume(state, registry, progress, address=address, warn=warn_line)
        total = state.planned
        records = outcome.run.records()
    else:
        if retry_failed:
            raise session.InputError("--retry-failed goes with --resume RUN_DIR: it runs that run's failed cases again")
        suite_obj, cases = session.plan(suite or "quick", frameworks=frameworks, models=models, modes=modes,
                                        batch_sizes=batch_sizes, device=device, threads=threads, registry=registry)
        if dry_run:
            for i, c in enumerate(cases, 1):
                console.print(f"{i:4d}  {escape(c.label())}", soft_wrap=True)
            console.print(f"{len(cases)} cases from {escape(str(suite_obj.path))}", soft_wrap=True)
            return
        gate = None
        if forward_check:
            from .validate.matrix import forward_gate
            console.print("checking the float32 forward of each adapter against the NumPy reference ...")
            gate = forward_gate(cases, registry)
            for key, v in sorted(gate.items()):
                if v["status"] == "failed":
                    err_console.print(f"[red]{escape(key.rsplit('/', 1)[0])} failed validation[/] "
                                      f"({escape(v['failed_check'])}); its cases are not timed", soft_wrap=True)
        def warn(_run) -> None:  # once the run directory exists: a run that cannot start says only why
            if executor == "local":  # on a cluster, each node's own contention checks speak in its records
                _warn_if_busy(cases)
                _warn_if_gpu_busy(cases)
            _warn_if_not_validated(cases, registry)

        with _progress(True) as progress:
            outcome = session.execute(suite_obj, cases, out=out, registry=registry, argv=sys.argv,
                                      progress=progress, gate=gate, started=warn, warn=warn_line,
                                      executor=session.Executor(executor, address, gpu_type))
        records, total = outcome.summary.records, len(cases)
    sys.exit(_conclude(outcome, records, total, time.perf_counter() - t0))


def _warn_if_busy(cases: list) -> None:
    """One line before a CPU run when other processes already hold CPUs the cases will pin (issue: contention)."""
    from .measure.contention import busy_cpus_now, busy_machine_warning

    threads = max((c.threads for c in cases if c.device == "cpu"), default=0)
    if not threads:
        return
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = None
    line = busy_machine_warning(threads, busy_cpus_now(0.5), load)
    if line:
        err_console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)


def _warn_if_not_validated(cases: list, registry: dict) -> None:
    """One line per adapter to be timed whose numbers no `bench validate` still vouches for, and why."""
    from .validate.cache import uncertified

    for line in uncertified(cases, registry):
        err_console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)


def _warn_if_gpu_busy(cases: list) -> None:
    """One line before a GPU run when other processes already use the GPU its cases run on (NVML)."""
    if not any(c.device == "cuda" for c in cases):
        return
    from .measure.gpu_contention import busy_gpu_line, other_gpu_processes

    line = busy_gpu_line(other_gpu_processes(0))  # every case runs on CUDA device 0
    if line:
        err_console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)


def _conclude(outcome: session.Outcome, records: list[Record], total: int, seconds: float) -> int:
    """Print the end of a run; its exit code: 130 interrupted, 1 failed cases or no reports, else 0."""
    summary, path = outcome.summary, outcome.run.path
    here = escape(shlex.quote(str(path)))
    if summary.orphans_killed:
        err_console.print(f"killed {len(summary.orphans_killed)} process(es) left behind by an interrupted run")
    if summary.display_error:
        err_console.print(f"[yellow]the progress display failed and went quiet[/] ({escape(summary.display_error)}); "
                          "every case was still run and recorded", soft_wrap=True)
    console.print(summary_table(records))
    console.print(f"{len(records)} of {total} cases recorded ({len(summary.records)} in {seconds:.0f} s); "
                  f"report: {escape(str(path / 'report.md'))}", soft_wrap=True)
    for note in outcome.roofline_notes:
        err_console.print(f"[yellow]{escape(note)}[/]; the report's roofline leaves it out", soft_wrap=True)
    if outcome.reports_interrupted or outcome.reports_error:
        why = "interrupted while writing the reports" if outcome.reports_interrupted else \
            f"the reports could not be written ({escape(outcome.reports_error or '')})"
        err_console.print(f"[red]{why}[/]: the records are safe in {escape(str(path))}; write the reports with: "
                          f"bench report {here}", soft_wrap=True)
    if summary.interrupted or outcome.reports_interrupted:
        if summary.interrupted:
            err_console.print(f"interrupted: {len(records)} finished cases kept in {escape(str(path))}; "
                              f"continue with: bench run --resume {here}", soft_wrap=True)
        return 130
    bad = [r for r in records if r.status in ("failed", "timeout")]
    if bad:
        err_console.print(f"[red]{len(bad)} case(s) failed or timed out[/]; reasons in "
                          f"{escape(str(path / 'report.md'))}; run them again with: "
                          f"bench run --resume {here} --retry-failed", soft_wrap=True)
    return 1 if bad or outcome.reports_error else 0


@main.command()
@click.option("--models", help="Comma-separated models (default: all).")
@click.option("--frameworks", help="Comma-separated adapters (default: every installed framework); the numpy "
                                   "reference is always added.")
@click.option("--optimizers", help="Comma-separated optimizers for the 3-step check (default: all six).")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path),
              help="Write weights.npz, inputs.npz and <framework>.npz per model here, and curves.png.")
@click.option("--tiny", is_flag=True, help="Tiny model sizes (seconds) instead of the spec's defaults.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help="Device every adapter computes on (the NumPy reference always runs on the CPU).")
def validate(models: str | None, frameworks: str | None, optimizers: str | None, artifacts: Path | None,
             tiny: bool, device: str) -> None:
    """Check that every framework computes the same numbers (docs/spec.md section 6); exit 1 on any failure.

    The NumPy reference is always compared; outcomes are remembered in the per-user validation cache.
    """
    from .validate import describe_failure, validate as validate_fn
    from .validate.cache import write_cache
    from .validate.tables import WIDTH, curve_table, matrix_table, plot_curves

    registry = discover()
    t0 = time.perf_counter()
    try:
        # On a GPU the workers get every CPU: XLA and inductor compile there, and host threads feed the device.
        threads = 1 if device == "cpu" else len(os.sched_getaffinity(0))
        result = validate_fn(registry=registry, models=session.split_csv(models),
                             frameworks=session.split_csv(frameworks), optimizers=session.split_csv(optimizers),
                             artifacts=artifacts, tiny=tiny, device=device, threads=threads)
    except OSError as e:
        raise session.InputError(f"cannot write the validation files: {e}") from None
    for fw, why in result.skipped.items():
        err_console.print(f"[yellow]skipped {escape(fw)}[/]: {escape(why)}", soft_wrap=True)
    if not result.references:
        err_console.print("[yellow]no reference adapter ran[/]: outcomes are remembered as unverified, never passed",
                          soft_wrap=True)
    for fw, why in result.inference_only.items():
        err_console.print(f"[yellow]inference only[/]: {escape(fw)}: {escape(why)}; its forward was compared",
                          soft_wrap=True)
    alone = result.forward_only()
    if alone:
        err_console.print(f"[yellow]forward only[/]: {escape(', '.join(alone))}: no other training adapter ran, so "
                          "gradients, optimizer steps and curves were compared with nothing; add one, e.g. "
                          f"bench validate --frameworks {escape(','.join([*alone, 'torch']))}", soft_wrap=True)
    wide = Console(highlight=False, width=max(console.width, WIDTH))  # the matrix is wider than a pipe's 80
    wide.print(matrix_table(result))
    if result.curves:
        wide.print(curve_table(result))
    if artifacts and plot_curves(result, artifacts / "curves.png"):
        console.print(f"artifacts and curves.png in {artifacts}")
    sizes = ("tiny" if tiny else "default") + ("" if device == "cpu" else f" {device}")
    try:
        where = write_cache(result, registry, sizes)
    except OSError as e:
        raise session.InputError(f"cannot write the validation cache: {e}; set XFBENCH_CACHE_DIR") from None
    console.print(f"remembered in {escape(str(where))}", soft_wrap=True)
    verdict = "FAILED" if not result.passed else "passed" if result.references else "unverified (no reference)"
    console.print(f"{verdict} in {time.perf_counter() - t0:.0f} s")
    if not result.passed:
        for c in result.checks:
            if not c.passed:
                err_console.print(f"[red]{c.model} {escape(c.framework)}[/] {escape(describe_failure(c))}",
                                  soft_wrap=True)
        sys.exit(1)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
def report(run_dir: Path) -> None:
    """Regenerate the reports of RUN_DIR from its stored records."""
    from .report.write import write_reports

    try:
        paths = write_reports(run_dir)
    except OSError as e:
        raise session.InputError(str(e)) from None
    console.print(escape("\n".join(str(p) for p in paths.values())), soft_wrap=True)


@main.command()
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--fail-above", type=float, metavar="PCT",
              help="Exit 1 if any significant slowdown of B against A exceeds PCT percent (a regression gate).")
def compare(run_a: Path, run_b: Path, fail_above: float | None) -> None:
    """Compare every case measured in both RUN_A and RUN_B (B against A), from stored records."""
    from .report.compare import compare as compare_fn

    if fail_above is not None and fail_above < 0:
        raise session.InputError(f"--fail-above takes a percentage >= 0; got {fail_above:g}")
    try:
        text, code = compare_fn(run_a, run_b, fail_above=fail_above)
    except OSError as e:
        raise session.InputError(str(e)) from None
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
    from .report.export import export as export_fn

    try:
        path, notes = export_fn(run_dir, fmt, output)
    except OSError as e:
        raise session.InputError(str(e)) from None
    for note in notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    console.print(escape(str(path)), soft_wrap=True)


@main.command("list")
@click.argument("what", type=click.Choice(["suites", "models", "frameworks", "optimizers"]), default="frameworks")
@click.option("--check", is_flag=True, help="frameworks: import each installed adapter's class in a worker of its "
                                            "own and say which fail and why; exit 1 if any does.")
def list_(what: str, check: bool) -> None:
    """List suites, models, frameworks (adapters) or optimizers."""
    t = Table(box=None)
    failed = False
    if check and what != "frameworks":
        raise session.InputError(f"--check goes with `bench list frameworks`, not {what}")
    if what == "frameworks":
        t, failed = _frameworks_table(check)
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
        for name in available_suites():
            try:
                desc = load_suite(name, discover()).description
            except SuiteError as e:
                desc = f"(invalid: {e})"
            t.add_row(escape(name), escape(desc))
    console.print(t)
    if failed:
        sys.exit(1)


@main.command("new-adapter")
@click.argument("name")
@click.option("--base", type=click.Choice(["torch", "tensorflow", "jax", "none"]), default="none", show_default=True,
              help="The framework the adapter runs: its imports, dependencies and per-method hints.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder in which to write the package folder xfbench-NAME.")
def new_adapter(name: str, base: str, parent: Path) -> None:
    """Write a ready adapter package for NAME: pyproject.toml, AdapterInfo, skeleton, conformance test."""
    from .scaffold import Names, new_adapter as write_package

    root = write_package(name, base, parent)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    console.print(f"wrote {escape(str(root))}: {escape(', '.join(files))}", soft_wrap=True)
    console.print("next:", soft_wrap=True)
    for line in (f"pip install -e {shlex.quote(str(root))}", "bench list frameworks --check",
                 f"pytest {shlex.quote(str(root / 'tests'))}",
                 f"  (fill in src/{Names.of(name).package}/adapter.py until the kit passes)",
                 f"bench validate --tiny --frameworks {name}", f"bench run smoke --frameworks {name}"):
        console.print(f"  {escape(line)}", soft_wrap=True)


def _frameworks_table(check: bool) -> tuple[Table, bool]:
    """The registered adapters; with `check`, whether each one's class loads (in a worker), instead of versions
    and summaries, so that a whole reason fits beside it. Also whether any adapter is broken or fails."""
    from .measure.host import has_nvidia_gpu

    gpu = has_nvidia_gpu()  # nothing about CUDA on a host without an NVIDIA GPU
    t = Table(box=None)
    t.add_column("adapter", no_wrap=True)  # names are what the user types: never cut
    t.add_column("framework", no_wrap=True)
    cols = ("installed", "check") if check else ("installed", "versions", "about")
    for col in cols[:1] + (("cuda",) if gpu else ()) + cols[1:]:
        t.add_column(col, overflow="fold")  # a reason wraps, never cut: it says what to fix
    working, broken = discover_all()
    checked: dict[str, str | None] = {}
    cuda: dict[str, str | None] = {}
    if check:
        from .resolve import check_cuda, check_targets

        checked = check_targets({n: info for n, info in working.items() if not info.missing()})
        if gpu:  # a tiny CUDA case in each adapter whose class loads: the proof that the install sees the GPU
            cuda = check_cuda({n: info for n, info in working.items()
                               if not info.missing() and n in checked and checked[n] is None and not info.reference})
    for name, info in working.items():
        missing = info.missing()
        cells = [name, info.framework, "yes" if not missing else f"no ({', '.join(missing)} missing)"]
        if gpu:
            static = None if missing else info.cpu_only()
            cells.append("-" if missing else (cuda[name] or "ok") if name in cuda
                         else f"cpu only: {static}" if static else "yes")
        if check:
            cells.append("-" if name not in checked else checked[name] or "ok")
        else:
            cells += [", ".join(f"{k} {v}" for k, v in info.versions().items()) or "-", info.summary]
        t.add_row(*map(escape, cells))  # a plugin's names and summary are text, not markup
    for name, why in broken.items():  # listed, never fatal: only a suite that names it fails
        cells = [name, "?", "broken", why] if check else [name, "?", f"broken: {why}", "-", ""]
        t.add_row(*map(escape, cells[:3] + (["-"] if gpu else []) + cells[3:]))
    failed_cuda = any(why is not None and not why.startswith("cpu only") for why in cuda.values())
    return t, check and (bool(broken) or any(why is not None for why in checked.values()) or failed_cuda)


@main.group(invoke_without_command=True)
@click.pass_context
def env(ctx: click.Context) -> None:
    """Show the host and the frameworks this machine can run; `bench env create|list|check|remove` manage
    framework environments (a framework in an interpreter of its own: docs/gpu.md, docs/spec.md 5.13)."""
    if ctx.invoked_subcommand is not None:
        return
    for k, v in host_info().items():
        console.print(escape(f"{k:16s} {v}"), soft_wrap=True)
    working, broken = discover_all()
    for name, info in working.items():
        missing = info.missing()
        state = ", ".join(f"{k} {v}" for k, v in info.versions().items()) if not missing else "not installed"
        console.print(escape(f"{'adapter ' + name:16s} {state}"), soft_wrap=True)
    for name, why in broken.items():
        console.print(escape(f"{'adapter ' + name:16s} broken: {why}"), soft_wrap=True)


@env.command("create")
@click.argument("name")
@click.argument("packages", nargs=-1)
@click.option("--default-for", "default_for", default="",
              help="Comma-separated adapters this environment runs instead of bench's own interpreter, e.g. "
                   "tensorflow,keras-tensorflow (else only as ADAPTER@NAME).")
@click.option("--python", "python", help="The interpreter to make the venv with (default: the one running bench).")
@click.option("--index-url", help="pip's --index-url, e.g. a PyTorch wheel index for a CUDA build.")
@click.option("--extra-index-url", multiple=True, help="pip's --extra-index-url (repeatable).")
@click.option("--force", is_flag=True, help="Make it again if it exists.")
def env_create(name: str, packages: tuple[str, ...], default_for: str, python: str | None, index_url: str | None,
               extra_index_url: tuple[str, ...], force: bool) -> None:
    """Make framework environment NAME: a venv with PACKAGES and xfbench, one `pip install`.

    Its adapters run as ADAPTER@NAME (e.g. `bench env create torch-2-12 torch==2.12.0`, then
    `bench run smoke --frameworks torch,torch@torch-2-12`).
    """
    from . import envs

    pip_args = [*(["--index-url", index_url] if index_url else []),
                *(a for url in extra_index_url for a in ("--extra-index-url", url))]
    t0 = time.perf_counter()
    made = envs.create(name, list(packages), default_for=_names(default_for), python=python, pip_args=pip_args,
                       force=force, echo=lambda s: err_console.print(escape(s), soft_wrap=True))
    offered = ", ".join(f"{a}@{name}" for a in sorted(made.adapters())) or "no adapter"
    console.print(escape(f"made {name} in {time.perf_counter() - t0:.0f} s ({made.path}): {offered}; "
                         + ", ".join(f"{k} {v}" for k, v in made.versions().items())), soft_wrap=True)


@env.command("list")
def env_list() -> None:
    """The framework environments: their adapters, versions and what they are the default for."""
    from . import envs

    t = Table(box=None)
    for col in ("environment", "python", "adapters", "default for", "versions", "packages"):
        t.add_column(col, overflow="fold")
    made = envs.environments()
    for e in made.values():
        t.add_row(*map(escape, [e.name, e.probe.get("python", "?"), ", ".join(sorted(e.adapters())) or "-",
                                ", ".join(e.default_for) or "-", ", ".join(f"{k} {v}" for k, v in e.versions().items()),
                                " ".join(e.packages)]))
    for name in envs.unfinished():
        t.add_row(escape(name), "-", "-", "-", "-", escape(f"unfinished: bench env create {name} --force ..."))
    if not made and not envs.unfinished():
        console.print(escape(f"no framework environments in {envs.envs_dir()}; every adapter runs with "
                             f"{sys.executable} (make one: bench env create NAME PACKAGE...)"), soft_wrap=True)
        return
    console.print(t)


@env.command("check")
@click.argument("name")
def env_check(name: str) -> None:
    """Ask environment NAME again what it offers (after installing into it by hand)."""
    from . import envs

    e = envs.check(name)
    console.print(escape(f"{name}: " + (", ".join(f"{a}@{name}" for a in sorted(e.adapters())) or "no adapter")
                         + "; " + ", ".join(f"{k} {v}" for k, v in e.versions().items())), soft_wrap=True)


@env.command("remove")
@click.argument("name")
def env_remove(name: str) -> None:
    """Delete environment NAME (its folder)."""
    from . import envs

    console.print(escape(f"removed {envs.remove(name)}"), soft_wrap=True)


def _names(csv: str) -> list[str]:
    return [n.strip() for n in csv.split(",") if n.strip()]


@main.command()
@click.option("--frameworks", help="Comma-separated adapters (default: every registered one but the numpy reference).")
@click.option("--threads", type=int, default=0, show_default=True,
              help="CPU threads per worker, pinned as a suite's (0 = all available).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--size", type=int, default=2048, show_default=True, help="n of the n x n float32 GEMM.")
@click.option("--copy-mib", type=float, default=256, show_default=True, help="MiB of the float32 array copied.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the peaks as JSON: adapter -> peak, the format of a run's peak.json.")
def peak(frameworks: str | None, threads: int, device: str, size: int, copy_mib: float, out: Path | None) -> None:
    """Measure this host's practical peak with each framework: float32 GEMM GFLOP/s and copy GB/s (the roofline)."""
    from .adapter import why_broken
    from .measure.peak import measure_peaks
    from .results import write_json_atomic

    registry, allowed = discover(), len(os.sched_getaffinity(0))
    names = session.split_csv(frameworks) or [n for n, info in registry.items() if not info.reference]
    for name in names:
        if name not in registry:
            raise session.InputError(why_broken(name) or f"unknown framework {name!r}; registered: "
                                     f"{', '.join(registry)} (see `bench list frameworks`)")
    if not 0 <= threads <= allowed or size < 1 or copy_mib * 2**20 < 4:
        raise session.InputError(f"--threads takes 0 to {allowed}, --size a positive n and --copy-mib a positive "
                                 f"size; got {threads}, {size} and {copy_mib:g}")
    outcome = measure_peaks({n: registry[n] for n in names}, device=device, threads=threads or allowed, n=size,
                            nbytes=int(copy_mib * 2**20) // 4 * 4,
                            started=lambda name: console.print(f"measuring {escape(name)} ...", soft_wrap=True))
    for name, why in outcome.skipped.items():
        err_console.print(f"[yellow]skipped {escape(name)}[/]: {escape(why)}", soft_wrap=True)
    for name, why in outcome.failed.items():
        err_console.print(f"[red]{escape(name)} failed[/]: {escape(why)}", soft_wrap=True)
    if outcome.peaks:
        console.print(peak_table(outcome.peaks))
        for name, p in outcome.peaks.items():
            for w in p["warnings"]:
                err_console.print(f"[yellow]⚠ {escape(name)}[/] {escape(w)}", soft_wrap=True)
    if out is not None and outcome.peaks:
        write_json_atomic(out, outcome.peaks)
        console.print(f"written: {escape(str(out))}", soft_wrap=True)
    sys.exit(0 if outcome.peaks else 1)


def peak_table(peaks: dict[str, dict]) -> Table:
    """One row per framework: GEMM GFLOP/s and copy GB/s with their 95% CIs, and the threads."""
    first = next(iter(peaks.values()))
    t = Table(title=f"float32 GEMM n={first['gemm_n']}; copy of {first['copy_bytes'] / 2**20:g} MiB, read + write "
                    f"counted; {first['device']}", show_edge=False)  # fits 80 columns with "tensorflow-xla"
    for col in ("framework", "GEMM GFLOP/s", "95% CI", "copy GB/s", "95% CI ", "threads"):
        t.add_column(col, justify="left" if col == "framework" else "right", no_wrap=True)
    for name, p in peaks.items():
        t.add_row(escape(name), f"{p['gemm_gflops']:,.1f}", "–".join(f"{v:,.1f}" for v in p["gemm_gflops_ci"]),
                  f"{p['copy_gbs']:,.1f}", "–".join(f"{v:,.1f}" for v in p["copy_gbs_ci"]), str(p["threads"]))
    return t


if __name__ == "__main__":  # pragma: no cover
    main()
