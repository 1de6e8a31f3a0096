"""Reliability, round two: markup in text, reports written safely, records read strictly, resume and retry."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fault_adapter
from xfbench.harness import session
from xfbench.harness.case import Case
from xfbench.harness.cli import main
from xfbench.harness.measure.runner import RunSummary, pending_cases, plan_for_meta, run_cases
from xfbench.harness.records import Record, RunMeta
from xfbench.harness.report.write import write_reports
from xfbench.harness.results import ResultsError, RunDir

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "run-small"
MARKUP = "[/bold] closes nothing, [red]opens[/red], [[cases]]"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, code=2):
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result.stderr


def copy_fixture(tmp_path) -> Path:
    return shutil.copytree(FIXTURE, tmp_path / "run")


# ---- 1. text is never read as rich markup ----

def test_an_adapter_error_in_markup_neither_aborts_the_run_nor_loses_a_record(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[defaults]\nframeworks = ["faulty"]\nthreads = 1\nmeasure = { warmup_steps = 1, warmup_s = 0.01, '
                     'min_sample_s = 0.002, min_samples = 3, max_time_s = 0.05 }\n'
                     '[[cases]]\nmodels = ["lenet5"]\nmodes = ["infer"]\nbatch_sizes = [2, 4]\n')
    environ = {**os.environ, "PYTHONPATH": fault_adapter.install(tmp_path / "dist"), "XFBENCH_FAULT": "markup@2",
               "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-m", "xfbench.harness.cli", "run", str(suite), "--out", str(tmp_path / "out")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=environ)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "[/bold] closes nothing" in p.stdout  # shown as text
    (run,) = (tmp_path / "out").iterdir()
    assert {r.case.batch_size: r.status for r in RunDir(run).records()} == {2: "failed", 4: "ok"}
    assert RunDir(run).meta().finished and (run / "report.md").exists()


def test_a_broken_progress_display_cannot_stop_a_run(tmp_path):
    class Broken:
        def started(self, *a):
            raise RuntimeError("display bug")

        def finished(self, *a):
            raise AssertionError("never called once the display failed")

    cases = [Case("faulty", "lenet5", "infer", b) for b in (1, 2)]
    run = RunDir.create(tmp_path, "t")
    summary = run_cases(cases, run, {}, Broken())
    assert [r.status for r in run.records()] == ["skipped", "skipped"]
    assert summary.display_error == "RuntimeError: display bug"


@pytest.mark.parametrize("args", [
    ["run", "smoke", "--frameworks", "tor[/]ch", "--dry-run"],
    ["report", "/tmp/x[/]"],
    ["compare", "/tmp/a[/b]", "/tmp/[bold]b"],
    ["run", "/tmp/we[bold]ird.toml", "--dry-run"],
])
def test_markup_in_arguments_is_shown_as_typed(args):
    err = one_line_error(invoke(*args))
    assert any(part in err for part in ("tor[/]ch", "/tmp/x[/]", "/tmp/a[/b]", "we[bold]ird"))


def test_suite_errors_show_brackets(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[cases]]\nmodels = ['lenet5']\nflux = 1\n")
    assert "[[cases]] #1: unknown key 'flux'" in one_line_error(invoke("run", bad, "--dry-run"))


# ---- 5. reports: written by rename, never through a link; errors keep the records ----

def test_reports_replace_a_symlink_instead_of_writing_through_it(tmp_path):
    run = copy_fixture(tmp_path)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (run / "report.md").symlink_to(victim)
    write_reports(run)
    assert victim.read_text() == "keep me"
    assert not (run / "report.md").is_symlink() and (run / "report.md").read_text().splitlines()[2].startswith("# xfbench report")  # after the heat map
    assert not [p for p in run.rglob(".*.tmp")]  # no temporary file left behind


def _fake_run(monkeypatch, reports_fail):
    """`bench run` over one planned case with the worker and the reports replaced."""
    def fake_run_cases(cases, run, registry, progress=None, validation=None, servers=None):
        rec = Record.of(cases[0], "skipped", "fake", 0.0, 1.0)
        run.append(rec)
        return RunSummary([rec])

    def fake_write_reports(path):
        assert RunDir(path)._lock_fd is None  # the run's own object holds the lock, not this one
        with pytest.raises(ResultsError, match="being written by another bench process"):
            RunDir(path).lock()  # item 8: the lock is still held while the reports are written
        raise reports_fail

    monkeypatch.setattr(session, "run_cases", fake_run_cases)
    monkeypatch.setattr(session, "run_peaks", lambda *a, **k: [])  # no roofline: nothing was measured
    monkeypatch.setattr(session, "write_reports", fake_write_reports)


def test_a_full_disk_while_writing_reports_says_the_records_are_safe(monkeypatch, tmp_path):
    _fake_run(monkeypatch, OSError(28, "No space left on device"))
    out = tmp_path / "my runs"
    r = invoke("run", "smoke", "--frameworks", "torch", "--models", "lenet5", "--modes", "infer", "--out", out)
    err = one_line_error(r, code=1)
    (run,) = out.iterdir()
    assert "No space left on device" in err and "the records are safe" in err
    assert f"bench report '{run}'" in err  # shell-quoted: the path has a space
    assert len(RunDir(run).records()) == 1


def test_ctrl_c_while_writing_reports_exits_130_with_the_hint(monkeypatch, tmp_path):
    _fake_run(monkeypatch, KeyboardInterrupt())
    r = invoke("run", "smoke", "--frameworks", "torch", "--models", "lenet5", "--modes", "infer", "--out", tmp_path)
    err = one_line_error(r, code=130)
    assert "interrupted while writing the reports" in err and "bench report" in err


def test_resume_retry_failed_runs_failed_cases_again_and_the_new_record_wins(tmp_path):
    cases = [Case("faulty", "lenet5", "infer", b) for b in (1, 2)]
    run = RunDir.create(tmp_path, "t")
    run.write_meta(RunMeta(suite="t", started=0.0, plan=plan_for_meta(cases)))
    run.append(Record.of(cases[0], "ok", None, 0.0, 1.0, metrics=_ok_metrics(), samples_s=(0.01, 0.011)))
    run.append(Record.of(cases[1], "failed", "OSError: [Errno 28] No space left on device", 0.0, 1.0))
    assert pending_cases(run) == ([], 2)
    assert pending_cases(run, retry_failed=True) == ([cases[1]], 2)
    run.append(Record.of(cases[1], "skipped", "retried", 2.0, 3.0))
    assert [r.reason for r in run.records()] == [None, "retried"]
    assert run.reading_notes() == ["Line(s) [2] of cases.jsonl: failed records replaced by a later retry."]
    r = invoke("run", "--retry-failed", "smoke")
    assert "--retry-failed goes with --resume" in one_line_error(r)


def _ok_metrics():
    from xfbench.harness.records import Metrics
    return Metrics(samples_per_s=100.0, samples_per_s_ci=(90.0, 110.0), step_s={"median": 0.01},
                   first_step_s=0.1, setup_s=0.1, parameters=61706)


# ---- 6, 7. records are read strictly; a duplicate is not pooled ----

def test_a_duplicated_record_line_is_read_once_and_noted(tmp_path):
    run = copy_fixture(tmp_path)
    lines = (run / "cases.jsonl").read_text().splitlines(keepends=True)
    (run / "cases.jsonl").write_text("".join(lines) + lines[0])
    recs = RunDir(run).records()
    assert len(recs) == len(lines)
    rd = RunDir(run)
    rd.records()
    assert rd.duplicates == [len(lines) + 1]
    write_reports(run)
    assert "a second record of a case already recorded (the first is kept)" in (run / "report.md").read_text()


@pytest.mark.parametrize("field, value", [
    ("case", {}), ("batch_size", "2"), ("first_step_s", "fast"), ("warnings", [1]),
    ("samples_s", [0.1, float("inf")]), ("framework", 3),
])
def test_a_damaged_nested_field_skips_that_record_with_a_note(tmp_path, field, value):
    run = copy_fixture(tmp_path)
    lines = (run / "cases.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    if field in ("batch_size", "framework"):
        rec["case"][field] = value
    elif field == "first_step_s":
        rec["metrics"][field] = value
    else:
        rec[field] = value
    (run / "cases.jsonl").write_text("\n".join([json.dumps(rec)] + lines[1:]) + "\n")
    for args in (["report", run], ["compare", run, FIXTURE], ["export", run, "--format", "csv"]):
        r = invoke(*args)
        assert r.exit_code == 0 and r.exception is None, (args, r.output)
    assert "Ignored line 1 of cases.jsonl: not a valid record" in (run / "report.md").read_text()
    assert "A: Ignored line 1" in invoke("compare", run, FIXTURE).output
    assert "Ignored line 1" in invoke("export", run, "--format", "csv").stderr


def test_a_run_json_whose_host_is_not_an_object_is_one_line(tmp_path):
    run = copy_fixture(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "host": "x"}))
    assert "'host' must be an object" in one_line_error(invoke("report", run))


def test_a_framework_name_in_tex_is_drawn_as_text(tmp_path):
    run = copy_fixture(tmp_path)
    text = (run / "cases.jsonl").read_text().replace('"framework": "jax"', '"framework": "$\\\\frac{$"')
    (run / "cases.jsonl").write_text(text)
    assert RunDir(run).records() and not RunDir(run).invalid_lines
    write_reports(run)
    assert "$\\frac{$" in (run / "report.md").read_text()


# ---- 10, 11. smaller ----

def test_a_tampered_plan_is_refused_with_one_line(tmp_path):
    run = copy_fixture(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    case = Case("torch", "lenet5", "infer", 1).to_dict()
    meta["plan"] = [{"case_id": "x-p0", "case": {**case, "process": "x"}}]
    (run / "run.json").write_text(json.dumps(meta))
    assert "planned case #1: 'process' must be an integer" in one_line_error(invoke("run", "--resume", run))


@pytest.mark.parametrize("args, message", [
    (["run", "smoke", "--frameworks", ",", "--dry-run"], "--frameworks ',' names nothing"),
    (["run", "smoke", "--models", " ", "--dry-run"], "--models ' ' names nothing"),
    (["run", str(ROOT / "suites"), "--dry-run"], "is a directory; give a suite file"),
])
def test_smaller_input_mistakes_are_one_line(args, message):
    assert message in one_line_error(invoke(*args))


@pytest.mark.parametrize("source, message", [
    ("[[cases]]\nmodels = ['lenet5']\nmeasure = {min_samples = 20, max_samples = 5}\n", "below min_samples=20"),
    ("x = " + "[" * 1000 + "]" * 1000 + "\n", "nested too deeply"),
    ("description = '" + "x" * 1_100_000 + "'\n", "a suite is at most"),
])
def test_contradictory_deep_or_huge_suites_are_refused(tmp_path, source, message):
    path = tmp_path / "s.toml"
    path.write_text(source)
    assert message in one_line_error(invoke("run", path, "--dry-run"))


# ---- the fuzz: damaged records through report, compare and export; markup and nesting in suites ----

json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
                           | st.text(max_size=8) | st.sampled_from([MARKUP, "$\\frac{$", "[[cases]]"]),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=8)
paths = st.sampled_from([("case",), ("case", "batch_size"), ("case", "framework"), ("case", "model_params"),
                         ("case", "measure"), ("case", "process"), ("metrics",), ("metrics", "samples_per_s"),
                         ("metrics", "step_s"), ("metrics", "samples_per_s_ci"), ("samples_s",), ("warnings",),
                         ("manifest",), ("manifest", "versions"), ("status",), ("reason",), ("validated",),
                         ("config_id",), ("schema",), ("started",)])


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(damage=st.lists(st.tuples(st.integers(0, 30), paths, json_values), min_size=1, max_size=3))
@example(damage=[(0, ("manifest", "versions"), None)])  # found by this fuzz: crashed `bench report`
@example(damage=[(0, ("manifest", "adapter_package"), {"package": ["x"], "source_sha256": 5}),
                 (1, ("manifest", "adapter_package"), "xfbench"), (2, ("validated",), {"status": "unverified"})])
def test_damaged_records_never_crash_report_compare_or_export(tmp_path_factory, damage):
    """Derandomized so that CI is stable; 200 random examples passed once it found `manifest.versions: null`."""
    run = copy_fixture(tmp_path_factory.mktemp("fuzz"))
    lines = [json.loads(line) for line in (run / "cases.jsonl").read_text().splitlines()]
    for index, path, value in damage:
        target = lines[index % len(lines)]
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target.get(key), dict) else target
        target[path[-1]] = value
    (run / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    for args in (["report", run], ["compare", FIXTURE, run], ["export", run, "--format", "pytest-benchmark"]):
        r = invoke(*args)
        assert r.exit_code in (0, 2), (args, r.output, r.exception)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
