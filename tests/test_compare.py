"""`bench compare`: run-to-run comparison from stored records, and its exit codes as a regression gate."""
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from xfbench.harness.cli import main
from xfbench.harness.report.compare import CompareError, compare, compare_runs

FIXTURE = Path(__file__).parent / "fixtures" / "run-small"


def variant(tmp_path, name, scale=None, drop=None):
    """A copy of the fixture run with `scale[framework]` applied to its step times and `drop` models removed."""
    out = tmp_path / name
    shutil.copytree(FIXTURE, out)
    lines = []
    for line in (out / "cases.jsonl").read_text().splitlines():
        r = json.loads(line)
        if drop and r["case"]["model"] == drop:
            continue
        f = (scale or {}).get(r["case"]["framework"], 1.0)
        r["samples_s"] = [t * f for t in r["samples_s"]]
        lines.append(json.dumps(r))
    (out / "cases.jsonl").write_text("\n".join(lines) + "\n")
    return out


def bench(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_same_run_is_not_significant_everywhere():
    text, code = compare(FIXTURE, FIXTURE, fail_above=0)
    assert code == 0
    rows = [l for l in text.splitlines() if l.startswith("| torch ") or l.startswith("| jax ")]
    assert rows and all("| not significant |" in l for l in rows)
    assert "17 configurations" not in text  # pooled: 16 configurations (one has 2 processes)
    assert "16 configurations in both runs: 0 faster in B, 0 slower in B, 16 not significant" in text
    assert "Geometric mean speed of B relative to A: 1.00x" in text
    assert "Regression gate (--fail-above 0%): passed" in text


def test_a_forked_run_and_an_execd_one_compare_case_for_case(tmp_path):
    """A Ray run's processes are exec'd, a quick run's forked: how a process started is not the case."""
    b = variant(tmp_path, "exec")
    lines = [json.loads(line) for line in (b / "cases.jsonl").read_text().splitlines()]
    for r in lines:
        r["case"]["process_start"] = "exec"
    a = variant(tmp_path, "fork")
    for r in (rs := [json.loads(line) for line in (a / "cases.jsonl").read_text().splitlines()]):
        r["case"]["process_start"] = "fork"
    (a / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    (b / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    text, code = compare(a, b, fail_above=None)
    assert "16 configurations in both runs: 0 faster in B, 0 slower in B, 16 not significant" in text


def test_slowdown_and_speedup_are_reported_with_their_size(tmp_path):
    b = variant(tmp_path, "b", scale={"torch": 1.25, "jax": 0.5})
    rc = compare_runs(FIXTURE, b)
    labels = {d.label.split(" ")[0]: d.comparison.label() for d in rc.diffs}
    assert labels["torch"] == "1.25x slower" and labels["jax"] == "2.00x faster"
    assert labels["tensorflow"] == "not significant"
    torch = [d for d in rc.diffs if d.label.startswith("torch ")]
    assert all(d.slowdown_pct == pytest.approx(25.0) for d in torch)


def test_fail_above_exit_codes(tmp_path):
    b = variant(tmp_path, "b", scale={"torch": 1.25})
    res = bench("compare", FIXTURE, b, "--fail-above", 10)
    assert res.exit_code == 1, res.output
    assert "FAILED, 6 significant slowdown(s)" in res.output and "(25.0% slower)" in res.output
    assert bench("compare", FIXTURE, b, "--fail-above", 30).exit_code == 0
    assert bench("compare", FIXTURE, b).exit_code == 0  # no gate: report only
    assert bench("compare", b, FIXTURE, "--fail-above", 10).exit_code == 0  # B faster: no regression


def test_cases_in_one_run_only_are_listed(tmp_path):
    b = variant(tmp_path, "b", drop="gru")
    text, _ = compare(FIXTURE, b)
    assert "Only in A (4): jax gru infer b=8 cpu fp32 t=2;" in text
    assert "12 configurations in both runs" in text


def test_input_errors_exit_2(tmp_path):
    res = bench("compare", FIXTURE, tmp_path / "missing")
    assert res.exit_code == 2 and "not an xfbench run directory" in res.output
    empty = variant(tmp_path, "e", drop="lenet5")
    other = variant(tmp_path, "o", drop="gru")
    with pytest.raises(CompareError):
        compare_runs(empty, other)
    assert bench("compare", empty, other).exit_code == 2
    assert bench("compare", FIXTURE, FIXTURE, "--fail-above", -1).exit_code == 2


def two_processes(tmp_path, name, apart, shift=None):
    """The fixture run with every ok configuration in 2 processes: process 1's times `apart[framework]` x
    process 0's, and every time of framework f scaled by `shift[f]` (one process per config to begin with)."""
    out = tmp_path / name
    shutil.copytree(FIXTURE, out)
    lines = []
    for line in (out / "cases.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["status"] != "ok" or r["case"]["process"] != 0:
            continue
        fw = r["case"]["framework"]
        r["samples_s"] = [t * (shift or {}).get(fw, 1.0) for t in r["samples_s"]]
        second = json.loads(json.dumps(r))
        second["case"]["process"], second["case_id"] = 1, r["config_id"] + "-p1"
        second["samples_s"] = [t * apart.get(fw, 1.0) for t in r["samples_s"]]
        lines += [json.dumps(r), json.dumps(second)]
    (out / "cases.jsonl").write_text("\n".join(lines) + "\n")
    return out


def test_process_spread_pooled_over_both_runs_keeps_a_lucky_pair_from_being_called_different(tmp_path):
    """jax's two processes agree exactly in both runs, and B's jax is 12% faster. Alone, its CIs are a single
    process's and the shift looks significant; beside torch and tensorflow, whose processes are 25% apart in
    both runs, the pooled spread says a 12% shift is within what a rerun gives."""
    quiet = {"jax": 1.0, "torch": 1.0, "tensorflow": 1.0}
    a, b = two_processes(tmp_path, "a", quiet), two_processes(tmp_path, "b", quiet, shift={"jax": 1 / 1.12})
    jax_only = {d.label: d.comparison for d in compare_runs(a, b).diffs if d.label.startswith("jax ")}
    assert all(c.significant and c.label() == "1.12x faster" for c in jax_only.values())
    spread = {"jax": 1.0, "torch": 1.25, "tensorflow": 0.8}
    a, b = two_processes(tmp_path, "a2", spread), two_processes(tmp_path, "b2", spread, shift={"jax": 1 / 1.12})
    rc = compare_runs(a, b)
    assert rc.spreads["cpu"] > 0.1 and not any(d.comparison.significant for d in rc.diffs)
    assert "Process-to-process spread, pooled over every configuration of both runs: " in compare(a, b)[0]
