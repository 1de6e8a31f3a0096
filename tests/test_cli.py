"""The `bench` command end to end, in subprocesses, as a user runs it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(*args, cwd=ROOT, timeout=600):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "xfbench.harness.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.slow
def test_run_smoke_writes_records_meta_and_report(tmp_path):
    pytest.importorskip("torch")
    p = bench("run", "smoke", "--frameworks", "torch", "--models", "lenet5,gru", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    (run,) = tmp_path.iterdir()
    records = [json.loads(line) for line in (run / "cases.jsonl").read_text().splitlines()]
    assert sorted((r["case"]["model"], r["case"]["mode"]) for r in records) == [
        ("gru", "infer"), ("gru", "train"), ("lenet5", "infer"), ("lenet5", "train")]
    assert {r["status"] for r in records} == {"ok"}
    meta = json.loads((run / "run.json").read_text())
    assert meta["suite"] == "smoke" and meta["finished"] and not meta["interrupted"]
    assert meta["host"]["cpus_available"] >= 1 and meta["host"]["python"]
    report = (run / "report.md").read_text()
    assert "## lenet5 · train (sgd) · cpu · fp32" in report and "| torch | 2 |" in report
    assert (run / "results.csv").read_text().count("\n") == 5
    assert "report:" in p.stdout and "xfbench results" in p.stdout


@pytest.mark.slow
def test_a_validation_done_anywhere_is_seen_by_a_run_with_any_out(tmp_path):
    """One cache per user: `bench validate` in one directory certifies `bench run --out X` in another."""
    pytest.importorskip("torch")
    here, there, runs = tmp_path / "here", tmp_path / "there", tmp_path / "runs"
    here.mkdir()
    there.mkdir()

    def run():
        p = bench("run", "smoke", "--frameworks", "torch", "--models", "lenet5", "--modes", "infer", "--out", str(runs),
                  cwd=there)
        assert p.returncode == 0, p.stderr
        newest = max(runs.iterdir(), key=lambda d: d.stat().st_mtime_ns)
        return p, json.loads((newest / "cases.jsonl").read_text().splitlines()[0]), newest

    p, record, _ = run()
    assert "not validated: torch (lenet5): never validated here; run: bench validate --frameworks torch" in p.stderr
    assert "validated" not in record
    assert record["manifest"]["adapter_package"]["package"] == "xfbench"
    assert len(record["manifest"]["adapter_package"]["source_sha256"]) == 12
    v = bench("validate", "--tiny", "--models", "lenet5", "--frameworks", "torch", "--optimizers", "sgd", cwd=here)
    assert v.returncode == 0, v.stdout + v.stderr
    assert not (here / "results").exists() and "remembered in" in v.stdout
    p, record, newest = run()
    assert "not validated" not in p.stderr
    assert record["validated"] == {"status": "passed", "against": "numpy", "scope": "forward only", "sizes": "tiny"}
    assert "passed (vs numpy; forward only)" in (newest / "report.md").read_text()
    assert " · adapter xfbench " in (newest / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["run", "nosuch"], "unknown suite 'nosuch'"),
    (["run", "smoke", "--models", "resnet"], "unknown model 'resnet'"),
    (["run", "smoke", "--frameworks", "mxnet"], "unknown framework 'mxnet'"),
    (["run", "smoke", "--modes", "fit"], "unknown mode 'fit'"),
    (["run", "smoke", "--batch-sizes", "0"], "--batch-sizes must be positive"),
    (["run", "smoke", "--batch-sizes", "a,b"], "--batch-sizes takes positive integers"),
    (["run", "smoke", "--threads", "999"], "threads=999"),
    (["report", "/nonexistent/run"], "not an xfbench run directory"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    p = bench(*args)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_malformed_suite_file_names_the_file_and_key(tmp_path):
    suite = tmp_path / "bad.toml"
    suite.write_text('[[cases]]\nmodels = ["lenet5"]\nbatchsize = [4]\n')
    p = bench("run", str(suite))
    assert p.returncode == 2 and f"{suite}" in p.stderr and "unknown key 'batchsize'" in p.stderr


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    p = bench("run", "smoke", "--frameworks", "torch", "--models", "lenet5", "--out", str(blocker / "sub"))
    assert p.returncode == 2 and "choose a writable --out" in p.stderr


def test_dry_run_lists_cases_and_runs_nothing(tmp_path):
    p = bench("run", "quick", "--dry-run", "--frameworks", "torch,jax", "--out", str(tmp_path))
    assert p.returncode == 0
    assert "32 cases from" in p.stdout and not list(tmp_path.iterdir())  # 2 processes per case


def test_list_commands():
    p = bench("list", "frameworks")
    assert p.returncode == 0 and "torch-compile" in p.stdout
    p = bench("list", "models")
    assert "61,100,840" in p.stdout and "14,448,400" in p.stdout
    assert "adadelta" in bench("list", "optimizers").stdout
    assert "quick" in bench("list", "suites").stdout
    assert "cpus_available" in bench("env").stdout


def test_parent_never_imports_a_framework():
    code = ("import sys; from xfbench.harness.cli import main; from xfbench.harness.session import plan;"
            "import xfbench.harness.report.write, xfbench.harness.validate.matrix;"
            "plan('quick', frameworks='torch,jax,tensorflow');"
            "from xfbench.harness.adapter import discover; [i.source_hash() for i in discover().values()];"
            "bad = [m for m in ('torch', 'tensorflow', 'jax', 'keras', 'flax') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_summary_table_shows_a_failure_reason_whole_and_wrapped():
    from rich.console import Console

    from xfbench.harness.case import Case
    from xfbench.harness.cli import summary_table
    from xfbench.harness.records import Record

    why = ("ModuleNotFoundError: No module named 'xfbench_demo.adaptr' (target xfbench_demo.adaptr:DemoAdapter of "
           "the adapter 'demo'; check its AdapterInfo)")
    case = Case(framework="demo", model="lenet5", mode="infer", batch_size=2)
    console = Console(width=80, record=True)
    console.print(summary_table([Record.of(case, "failed", why + "\nTraceback (most recent call last):", 0.0, 1.0)]))
    flat = "".join(console.export_text().replace("│", " ").split())
    assert "".join(f"failed: {why}".split()) in flat and "Traceback" not in flat and "…" not in flat
